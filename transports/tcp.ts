/**
 * TCP transport on `Deno.listen` / `Deno.connect`, with Nagle off and each batch written as
 * one buffer. Addresses: `tcp://127.0.0.1:6800`, `tcp://[::1]:6800`.
 *
 * @module
 */

import { TransportError } from "../src/errors.ts";
import {
  concatChunks,
  formatHostPort,
  type Link,
  type Listener,
  parseHostPort,
  type Transport,
} from "./types.ts";

/** Size of each read buffer. */
const READ_BUFFER_BYTES = 64 * 1024;

class TcpLink implements Link {
  readonly localAddr: string;
  readonly remoteAddr: string;
  #conn: Deno.TcpConn;
  #closed = false;
  #readBuffer = new Uint8Array(READ_BUFFER_BYTES);

  constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
    conn.setNoDelay(true);
    const l = conn.localAddr, r = conn.remoteAddr;
    this.localAddr = formatHostPort("tcp", l.hostname, l.port);
    this.remoteAddr = formatHostPort("tcp", r.hostname, r.port);
  }

  async read(): Promise<Uint8Array | null> {
    if (this.#closed) return null;
    // One buffer for the life of the link: a chunk is valid until the next read() (the
    // contract of Link.read), and the frame decoder copies whatever it keeps.
    const buf = this.#readBuffer;
    let n: number | null;
    try {
      n = await this.#conn.read(buf);
    } catch (cause) {
      if (this.#closed) return null;
      throw new TransportError(`TCP read failed: ${(cause as Error).message}`, { cause });
    }
    return n === null ? null : buf.subarray(0, n);
  }

  async write(chunks: Uint8Array[]): Promise<void> {
    if (this.#closed) throw new TransportError("TCP link is closed");
    const data = concatChunks(chunks);
    try {
      let at = 0;
      while (at < data.length) at += await this.#conn.write(data.subarray(at));
    } catch (cause) {
      throw new TransportError(`TCP write failed: ${(cause as Error).message}`, { cause });
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed by the peer or the runtime
    }
  }
}

/** First wait after a failed accept; it doubles while accepts keep failing. */
const ACCEPT_BACKOFF_MS = 5;
/** Longest wait between failed accepts (at the file-descriptor limit, say). */
const ACCEPT_BACKOFF_MAX_MS = 1000;

class TcpListener implements Listener {
  readonly addr: string;
  #listener: Deno.TcpListener;

  constructor(listener: Deno.TcpListener) {
    this.#listener = listener;
    this.addr = formatHostPort("tcp", listener.addr.hostname, listener.addr.port);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Link> {
    let backoff = 0;
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted) {
          return;
        }
        // A failed accept (a peer that reset before we took it, or no file descriptor left)
        // does not end the listener; repeated failures back off instead of spinning a core.
        backoff = Math.min(ACCEPT_BACKOFF_MAX_MS, backoff ? backoff * 2 : ACCEPT_BACKOFF_MS);
        await new Promise((resolve) => setTimeout(resolve, backoff));
        continue;
      }
      backoff = 0;
      yield new TcpLink(conn);
    }
  }

  close(): void {
    try {
      this.#listener.close();
    } catch {
      // already closed
    }
  }
}

/**
 * The TCP transport.
 *
 * @example
 * ```ts
 * import { TcpTransport } from "./tcp.ts";
 * const tcp = new TcpTransport();
 * const listener = await tcp.listen("tcp://127.0.0.1:0");
 * if (!listener.addr.startsWith("tcp://127.0.0.1:")) throw new Error(listener.addr);
 * listener.close();
 * ```
 */
export class TcpTransport implements Transport {
  /** Serves `tcp://` addresses. */
  readonly schemes = ["tcp"] as const;

  /** Binds a TCP listener. */
  listen(addr: string): Promise<Listener> {
    const { hostname, port } = parseHostPort(addr, "tcp");
    return Promise.resolve(new TcpListener(Deno.listen({ hostname, port, transport: "tcp" })));
  }

  /** Dials a TCP peer. */
  async connect(addr: string, options: { signal?: AbortSignal } = {}): Promise<Link> {
    const { hostname, port } = parseHostPort(addr, "tcp");
    try {
      const conn = await Deno.connect({ hostname, port, transport: "tcp", signal: options.signal });
      return new TcpLink(conn);
    } catch (cause) {
      throw new TransportError(`TCP connect to ${addr} failed: ${(cause as Error).message}`, {
        cause,
      });
    }
  }
}
