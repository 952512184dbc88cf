// Line-based talk between a harness and its node processes (the chaos harness and
// `bench:cluster --netns`): commands go to a child's stdin, answers come from its stdout.

/** The lines of a byte stream as they complete, trimmed. Ends when the stream ends. */
export async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let nl: number;
    while ((nl = rest.indexOf("\n")) >= 0) {
      yield rest.slice(0, nl).trim();
      rest = rest.slice(nl + 1);
    }
  }
}

/**
 * A child process spoken to in lines. Every stdout line goes to `onLine` first; the lines it
 * does not consume (returns false) wait for {@linkcode LineChild.take}.
 */
export class LineChild {
  readonly #lines: string[] = [];
  #wake: (() => void) | null = null;

  /** Starts reading `child`'s stdout (until it ends or the process dies; never rejects). */
  constructor(readonly child: Deno.ChildProcess, onLine: (line: string) => boolean = () => false) {
    (async () => {
      try {
        for await (const line of lines(child.stdout)) {
          if (!onLine(line)) this.#lines.push(line);
          this.#wake?.();
        }
      } catch { /* the process died */ }
    })();
  }

  /** The first line starting with `prefix`, waiting at most `ms` (then rejects, naming `who`). */
  async take(prefix: string, ms: number, who = "a node"): Promise<string> {
    const until = Date.now() + ms;
    for (;;) {
      const i = this.#lines.findIndex((l) => l.startsWith(prefix));
      if (i >= 0) return this.#lines.splice(i, 1)[0];
      if (Date.now() > until) throw new Error(`${who}: no "${prefix}" within ${ms} ms`);
      await Promise.race([
        new Promise<void>((r) => this.#wake = r),
        new Promise((r) => setTimeout(r, 200)),
      ]);
    }
  }

  /** Writes one command line to the child's stdin. */
  async send(command: string): Promise<void> {
    const w = this.child.stdin.getWriter();
    try {
      await w.write(new TextEncoder().encode(command + "\n"));
    } finally {
      w.releaseLock();
    }
  }
}
