// Shared test helpers: loggers that capture, event waits, and messenger pairs on any transport.

import { type Message, Messenger, type MessengerEvent, type MessengerOptions } from "../mod.ts";
import type { LogLevel } from "../src/log.ts";

/** A logger that records lines instead of printing them. */
export function captureLogger(): { lines: string[]; log: (l: LogLevel, m: string) => void } {
  const lines: string[] = [];
  return { lines, log: (level, message) => lines.push(`${level}: ${message}`) };
}

/** Resolves with the first event of `messenger` that matches `pred` (subscribe before acting). */
export function waitEvent<K extends MessengerEvent["kind"]>(
  messenger: Messenger,
  kind: K,
  pred: (e: Extract<MessengerEvent, { kind: K }>) => boolean = () => true,
): Promise<Extract<MessengerEvent, { kind: K }>> {
  const iter = messenger.events()[Symbol.asyncIterator]();
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

/** Takes `n` messages from `messenger`. */
export async function take(messenger: Messenger, n: number): Promise<Message[]> {
  const out: Message[] = [];
  if (n === 0) return out;
  for await (const m of messenger.messages()) {
    out.push(m);
    if (out.length === n) break;
  }
  return out;
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
