// Shared test helpers: loggers that capture, bounded event waits, and messenger pairs on any
// transport. Importing this module installs the suite's guards (see _guard.ts).

import "./_guard.ts";
import {
  type Message,
  Messenger,
  type MessengerEvent,
  type MessengerOptions,
  PROTOCOL_VERSION,
} from "../mod.ts";
import { ManualClock, MemoryTransport } from "../testing.ts";
import type { Hello } from "../src/protocol/handshake.ts";
import type { LogLevel } from "../src/log.ts";

/** A logger that records lines instead of printing them. */
export function captureLogger(): { lines: string[]; log: (l: LogLevel, m: string) => void } {
  const lines: string[] = [];
  return { lines, log: (level, message) => lines.push(`${level}: ${message}`) };
}

/** How long a helper waits on I/O before it fails the test, by default: 30 s. */
export const WAIT_MS = 30_000;

/**
 * Resolves as `promise` does, or rejects after `ms` with an error naming `what` was awaited:
 * every wait on I/O in a test has a bound that fails it with a message.
 */
export async function deadline<T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Resolves with the first event of `messenger` that matches `pred` (subscribe before acting);
 * fails after `ms` naming the event it waited for.
 */
export function waitEvent<K extends MessengerEvent["kind"]>(
  messenger: Messenger,
  kind: K,
  pred: (e: Extract<MessengerEvent, { kind: K }>) => boolean = () => true,
  ms = WAIT_MS,
): Promise<Extract<MessengerEvent, { kind: K }>> {
  const iter = messenger.events()[Symbol.asyncIterator]();
  return deadline(waitFor(iter, kind, pred), `a ${kind} event on ${messenger.name}`, ms)
    .finally(() => iter.return?.());
}

function waitFor<K extends MessengerEvent["kind"]>(
  iter: AsyncIterator<MessengerEvent>,
  kind: K,
  pred: (e: Extract<MessengerEvent, { kind: K }>) => boolean,
): Promise<Extract<MessengerEvent, { kind: K }>> {
  return (async () => {
    try {
      for (;;) {
        const r = await iter.next();
        if (r.done) throw new Error(`Event stream ended before a ${kind} event`);
        const e = r.value as MessengerEvent;
        if (e.kind === kind && pred(e as Extract<MessengerEvent, { kind: K }>)) {
          return e as Extract<MessengerEvent, { kind: K }>;
        }
      }
    } finally {
      await iter.return?.();
    }
  })();
}

/** Takes `n` messages from `messenger`; fails after `ms` saying how many came. */
export async function take(messenger: Messenger, n: number, ms = WAIT_MS): Promise<Message[]> {
  const out: Message[] = [];
  if (n === 0) return out;
  const taking = (async () => {
    for await (const m of messenger.messages()) {
      out.push(m);
      if (out.length === n) break;
    }
    return out;
  })();
  try {
    return await deadline(taking, `${n} messages on ${messenger.name}`, ms);
  } catch (error) {
    throw new Error(`${(error as Error).message} (${out.length} came)`);
  }
}

/** Two messengers, `server` listening on `addr`, `client` connected to it. */
export async function pair(addr: string, options: MessengerOptions = {}) {
  const server = new Messenger({ name: "server", logger: captureLogger().log, ...options });
  const client = new Messenger({ name: "client", logger: captureLogger().log, ...options });
  const bound = await server.listen(addr);
  const accepted = waitEvent(server, "accept");
  const conn = await client.connect(bound);
  const serverConn = (await accepted).connection;
  return {
    server,
    client,
    conn,
    serverConn,
    addr: bound,
    async [Symbol.asyncDispose]() {
      await client.close();
      await server.close();
    },
  };
}

/** Bytes `[0, 1, 2, ...]` of length n, tagged by `seed` in the first byte. */
export function bytes(n: number, seed = 0): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i + seed) & 0xff;
  return b;
}

/** A hello with the default settings, as a raw peer (or a codec test) would send it. */
export function rawHello(overrides: Partial<Hello> = {}): Hello {
  return {
    version: PROTOCOL_VERSION,
    name: "raw",
    nonce: "00",
    policy: "lossyClient",
    cluster: "heartline",
    // A messenger that never listens or dials holds no resources: a way to read the defaults.
    heartbeat: { ...new Messenger({ logger: () => {} }).heartbeat },
    ...overrides,
  };
}

/** Moves a manual clock `ms` forward in steps, letting in-memory I/O settle after each. */
export async function advanceSettling(clock: ManualClock, ms: number, step: number): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    clock.advance(Math.min(step, ms - t));
    await settle();
  }
}

/** Lets in-memory I/O (promise chains, no timers) run to quiescence. */
export function settle(): Promise<void> {
  return new Promise((r) => setTimeout(r, 0));
}

/**
 * Two messengers on an in-memory network driven by one manual clock: `server` (named by
 * `names[1]`) listens, `client` (`names[0]`) is connected. `run(ms, step)` moves virtual time
 * and lets I/O settle after each step; disposing closes both, moving the clock past any close
 * timeout a stalled link needs.
 */
export async function manualPair(
  options: MessengerOptions = {},
  names: [string, string] = ["client", "server"],
  start = 0,
) {
  const clock = new ManualClock(start);
  const net = new MemoryTransport();
  const log = captureLogger();
  const common = { clock, transports: [net], ...options };
  const server = new Messenger({ name: names[1], logger: log.log, ...common });
  const client = new Messenger({ name: names[0], logger: captureLogger().log, ...common });
  await server.listen(`mem://${names[1]}`);
  const accepted = waitEvent(server, "accept");
  const conn = await client.connect(`mem://${names[1]}`);
  const serverConn = (await accepted).connection;
  return {
    clock,
    net,
    log,
    server,
    client,
    conn,
    serverConn,
    run: (ms: number, step = 100) => advanceSettling(clock, ms, step),
    async [Symbol.asyncDispose]() {
      let done = false;
      const closing = Promise.all([client.close(), server.close()]).then(() => done = true);
      for (let i = 0; i < 200 && !done; i++) {
        clock.advance(100);
        await settle();
      }
      await closing;
    },
  };
}

/**
 * Runs `deno <args>` in the project root as a child process, bounded: past `ms` it gets
 * SIGTERM (harnesses clean up on it), 10 s later SIGKILL, and the test fails. Returns the
 * exit code, stdout and stderr as text, and the child's pid.
 */
export async function runDeno(
  args: string[],
  ms: number,
): Promise<{ code: number; stdout: string; stderr: string; pid: number }> {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: new URL("../", import.meta.url),
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const term = setTimeout(() => {
    timedOut = true;
    child.kill("SIGTERM");
  }, ms);
  const kill = setTimeout(() => child.kill("SIGKILL"), ms + 10_000);
  try {
    const out = await child.output();
    const text = (b: Uint8Array) => new TextDecoder().decode(b);
    if (timedOut) throw new Error(`deno ${args.join(" ")} ran past ${ms} ms\n${text(out.stderr)}`);
    return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr), pid: child.pid };
  } finally {
    clearTimeout(term);
    clearTimeout(kill);
  }
}
