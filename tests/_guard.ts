// Process-wide guards for the test suite, installed by importing this module (every test file
// does, directly or through _helpers.ts):
// - an unhandled promise rejection is reported with its stack and fails the run (it is never
//   swallowed: heartline must not leave a promise without a handler);
// - every test is bounded: one that has not finished within its time fails with a message
//   naming it, instead of hanging the whole CI run.

/** Bound of one test, in ms: a test still running after it fails, naming itself. */
export const TEST_TIMEOUT_MS = 120_000;

/** Unhandled rejections seen by the guard (a test may assert this stays empty). */
export const unhandledRejections: unknown[] = [];

const GUARD = Symbol.for("heartline.test.guard");
const g = globalThis as unknown as Record<symbol, boolean>;

if (!g[GUARD]) {
  g[GUARD] = true;
  globalThis.addEventListener("unhandledrejection", (event) => {
    unhandledRejections.push(event.reason);
    const reason = event.reason as Error | undefined;
    console.error(`Unhandled rejection (test guard): ${reason?.stack ?? reason}`);
    // Not prevented: Deno fails the test module, and so the run.
  });

  const original = Deno.test;
  const wrap =
    (name: string, fn: (t: Deno.TestContext) => void | Promise<void>) =>
    async (t: Deno.TestContext) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const bound = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`Test "${name}" did not finish within ${TEST_TIMEOUT_MS} ms`)),
          TEST_TIMEOUT_MS,
        );
      });
      try {
        await Promise.race([fn(t), bound]);
      } finally {
        clearTimeout(timer);
      }
    };
  // Every overload of Deno.test ends up as a definition with a name and a function.
  const patched = (...args: unknown[]): void => {
    let def: Deno.TestDefinition;
    if (typeof args[0] === "string" || typeof args[0] === "function") {
      const name = typeof args[0] === "string" ? args[0] : args[0].name;
      const fn = args.find((a) => typeof a === "function") as Deno.TestDefinition["fn"];
      const opts = (typeof args[1] === "object" ? args[1] : {}) as Partial<Deno.TestDefinition>;
      def = { ...opts, name, fn };
    } else {
      def = args[0] as Deno.TestDefinition;
    }
    original({ ...def, fn: wrap(def.name, def.fn) });
  };
  Object.assign(patched, original);
  (Deno as { test: unknown }).test = patched;
}
