/**
 * The transport interface: the small seam between heartline's sessions and the bytes below.
 * Transports know nothing of frames; they move batches of byte chunks in order.
 *
 * @module
 */

/**
 * One established, ordered, reliable byte link between two nodes (a TCP connection, a QUIC
 * stream, a WebSocket, an in-memory pipe).
 */
export interface Link {
  /** Address of this end, in the transport's URL form. */
  readonly localAddr: string;
  /** Address of the other end, in the transport's URL form. */
  readonly remoteAddr: string;
  /**
   * True when the link itself protects integrity (TLS, QUIC): if the other end's link does too,
   * frames may skip their checksum (docs/protocol.md, Frames).
   */
  readonly integrity?: boolean;
  /**
   * Resolves with the next chunk of bytes, or `null` at an orderly end of stream. Rejects with
   * a `TransportError` when the link fails. Only one read may be outstanding at a time. The
   * chunk may be a view of a buffer the transport reuses: it is valid until the next `read()`,
   * so a caller that keeps bytes must copy them.
   */
  read(): Promise<Uint8Array | null>;
  /**
   * Optional: `read()` with callbacks instead of a promise. Reads the next chunk and calls
   * `onChunk` with it (or `null` at the end of the stream, or once the link is closed), or
   * `onError` with the failure: one of them, once, never during the call to `readThen` or to
   * `close()`; if `onChunk` throws, `onError` then gets what it threw. Only one read may be
   * outstanding (a second gets a TypeError through its `onError`). A reader that has it (the
   * sessions' does) allocates no promise per read: what an idle connection leaves behind each
   * heartbeat.
   */
  readThen?(onChunk: (chunk: Uint8Array | null) => void, onError: (error: unknown) => void): void;
  /**
   * Told by the reader, for each frame larger than a Messages frame (a single large message),
   * that large frames arrive: a transport that sizes its reads may then read more at once (TCP
   * grows its read buffer to 256 KiB instead of 64 KiB; a TLS read returns one record, at most
   * 16 KiB, whatever the buffer). Optional.
   */
  largeFrames?(): void;
  /**
   * Writes a batch of chunks in order as one unit (transports coalesce them into as few writes
   * as they can). Resolves when the bytes are handed to the layer below, so a peer that does
   * not read makes this wait: that is the back-pressure the sessions rely on. The chunks are
   * the caller's again once it settles (a session encodes its next batch into the same
   * buffer): a transport that hands them on later must copy them first. A chunk is a view of
   * a larger buffer that holds other sessions' frames too (pooled write buffers, shared
   * control frames): write the view's bytes only, never its whole `buffer`, and never
   * transfer it.
   */
  write(chunks: Uint8Array[]): Promise<void>;
  /**
   * Optional: `write()` with callbacks instead of a promise. Calls `onWritten` once the batch
   * is handed to the layer below, or `onError` with the failure: one of them, once, never
   * during the call to `writeThen` or to `close()`, and in the order of the writes. A writer
   * that has it (the sessions' does) allocates no promise per write: with `readThen`, what an
   * idle connection leaves behind each heartbeat.
   */
  writeThen?(
    chunks: Uint8Array[],
    onWritten: () => void,
    onError: (error: unknown) => void,
  ): void;
  /**
   * The first half of an orderly close, awaited (bounded) before `close()` while the session
   * still reads: resolves once what was written can no longer be lost by closing, or the link
   * failed. A WebSocket waits until its `bufferedAmount` has left the process, a QUIC stream
   * until it is finished; TCP and TLS half-close and wait for the peer's end of stream, since
   * closing with unread bytes sends an RST that makes the peer drop what it had not yet read.
   * Without it, a process that exits right after `close()` could lose its last frames.
   */
  flush?(): Promise<void>;
  /** Closes both directions; pending reads resolve `null`, pending writes reject. */
  close(): void;
}

/** A bound listener that yields each accepted link. */
export interface Listener extends AsyncIterable<Link> {
  /** The bound address (with the real port when `:0` was asked for). */
  readonly addr: string;
  /** Stops accepting; the iterator ends. Established links are not affected. */
  close(): void;
}

/** A transport: one scheme (`tcp`, `mem`, `quic`, `ws`), two methods. */
export interface Transport {
  /** URL schemes this transport serves, without the colon (`["tcp"]`). */
  readonly schemes: readonly string[];
  /** Binds `addr` and returns the listener. */
  listen(addr: string): Promise<Listener>;
  /** Dials `addr`. */
  connect(addr: string, options?: { signal?: AbortSignal }): Promise<Link>;
}

/** Splits `scheme://host:port` into its parts; IPv6 hosts are written in brackets. */
export function parseHostPort(addr: string, scheme: string): { hostname: string; port: number } {
  let url: URL;
  try {
    url = new URL(addr);
  } catch (cause) {
    throw new TypeError(`Invalid address: ${addr}`, { cause });
  }
  if (url.protocol !== `${scheme}:`) {
    throw new TypeError(`Address scheme must be ${scheme}: ${addr}`);
  }
  const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
  if (!hostname) throw new TypeError(`Address has no host: ${addr}`);
  const port = url.port === "" ? NaN : Number(url.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new TypeError(`Address needs a port: ${addr}`);
  }
  return { hostname, port };
}

/** Formats a host and port as `scheme://host:port`, bracketing IPv6 hosts. */
export function formatHostPort(scheme: string, hostname: string, port: number): string {
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  return `${scheme}://${host}:${port}`;
}

/**
 * A chunk at least this large is written on its own instead of being joined (copied) with its
 * neighbours. A session's batch is nearly always one chunk; a body of GATHER_MIN_BYTES (128
 * KiB) or more comes as a chunk of its own after the head its frame starts with.
 */
export const GATHER_WRITE_MIN_BYTES = 16 * 1024;

/**
 * The writes of a batch for a byte stream: each run of chunks under
 * {@linkcode GATHER_WRITE_MIN_BYTES} joined into one buffer, each larger chunk as it is.
 *
 * @example
 * ```ts
 * import { gatherWrites } from "./types.ts";
 * const big = new Uint8Array(20_000);
 * const writes = gatherWrites([new Uint8Array(3), new Uint8Array(4), big, new Uint8Array(1)]);
 * if (writes.length !== 3 || writes[0].length !== 7 || writes[1] !== big) throw new Error();
 * ```
 */
export function gatherWrites(chunks: Uint8Array[]): Uint8Array[] {
  if (chunks.length === 1) return chunks; // the common case: nothing to join
  const writes: Uint8Array[] = [];
  let from = 0;
  for (let i = 0; i <= chunks.length; i++) {
    if (i < chunks.length && chunks[i].length < GATHER_WRITE_MIN_BYTES) continue;
    if (i > from) writes.push(concatChunks(chunks.slice(from, i)));
    if (i < chunks.length) writes.push(chunks[i]);
    from = i + 1;
  }
  return writes;
}

/**
 * Calls `fn(value)`, and what it throws goes nowhere: for a reader's callbacks called from an
 * event handler, a microtask or a promise handler, where a throw would crash the process or
 * reject unhandled.
 */
export function guarded<T>(fn: (value: T) => void, value: T): void {
  try {
    fn(value);
  } catch { /* nothing left to tell */ }
}

/** Joins a batch of chunks into one buffer (returns the chunk itself when there is one). */
export function concatChunks(chunks: Uint8Array[]): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  let size = 0;
  for (const c of chunks) size += c.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * A link that passes everything to `inner`: the base of wrappers that watch or reshape a link
 * (splitting its reads, recording or timing its traffic), which override what they change.
 * It has no `readThen` or `writeThen` of its own, so a session reads and writes it through
 * `read()` and `write()` unless a wrapper adds them.
 *
 * @example
 * ```ts
 * import { ForwardingLink } from "./types.ts";
 * import { MemoryTransport } from "./memory.ts";
 * class CountingLink extends ForwardingLink {
 *   writes = 0;
 *   override write(chunks: Uint8Array[]): Promise<void> {
 *     this.writes++;
 *     return super.write(chunks);
 *   }
 * }
 * const net = new MemoryTransport();
 * const listener = await net.listen("mem://f");
 * const link = new CountingLink(await net.connect("mem://f"));
 * await link.write([new Uint8Array([1])]);
 * if (link.writes !== 1 || link.remoteAddr !== "mem://f") throw new Error("forwarded");
 * link.close();
 * listener.close();
 * ```
 */
export class ForwardingLink implements Link {
  /** The link everything is passed to. */
  protected readonly inner: Link;

  /** A link over `inner`. */
  constructor(inner: Link) {
    this.inner = inner;
  }

  /** The inner link's. */
  get localAddr(): string {
    return this.inner.localAddr;
  }

  /** The inner link's. */
  get remoteAddr(): string {
    return this.inner.remoteAddr;
  }

  /** The inner link's. */
  get integrity(): boolean | undefined {
    return this.inner.integrity;
  }

  /** The inner link's next chunk. */
  read(): Promise<Uint8Array | null> {
    return this.inner.read();
  }

  /** Passed on, if the inner link sizes its reads. */
  largeFrames(): void {
    this.inner.largeFrames?.();
  }

  /** Written by the inner link. */
  write(chunks: Uint8Array[]): Promise<void> {
    return this.inner.write(chunks);
  }

  /** The inner link's graceful close, if it has one (a wrapper must not lose it). */
  flush(): Promise<void> {
    return this.inner.flush?.() ?? Promise.resolve();
  }

  /** Closes the inner link. */
  close(): void {
    this.inner.close();
  }
}

/**
 * A transport whose links, dialed or accepted, are `inner`'s wrapped by `wrap` (under the same
 * schemes and addresses).
 *
 * @example
 * ```ts
 * import { ForwardingLink, mapTransportLinks } from "./types.ts";
 * import { MemoryTransport } from "./memory.ts";
 * const net = mapTransportLinks(new MemoryTransport(), (link) => new ForwardingLink(link));
 * const listener = await net.listen("mem://w");
 * const link = await net.connect("mem://w");
 * if (!(link instanceof ForwardingLink)) throw new Error("wrapped");
 * link.close();
 * listener.close();
 * ```
 */
export function mapTransportLinks(inner: Transport, wrap: (link: Link) => Link): Transport {
  return {
    schemes: inner.schemes,
    async listen(addr: string): Promise<Listener> {
      return mapLinks(await inner.listen(addr), wrap);
    },
    async connect(addr: string, options?: { signal?: AbortSignal }): Promise<Link> {
      return wrap(await inner.connect(addr, options));
    },
  };
}

/**
 * A listener that hands out `wrap(link)` for each link `inner` accepts (a wrapping transport,
 * such as one that splits reads or records links, keeps the inner listener's address and close).
 *
 * @example
 * ```ts
 * import { mapLinks } from "./types.ts";
 * import { MemoryTransport } from "./memory.ts";
 * const net = new MemoryTransport();
 * const seen: string[] = [];
 * const listener = mapLinks(await net.listen("mem://m"), (l) => (seen.push(l.remoteAddr), l));
 * await net.connect("mem://m");
 * for await (const _ of listener) break;
 * if (seen.length !== 1) throw new Error("wrapped");
 * listener.close();
 * ```
 */
export function mapLinks(inner: Listener, wrap: (link: Link) => Link): Listener {
  return {
    get addr() {
      return inner.addr;
    },
    close: () => inner.close(),
    async *[Symbol.asyncIterator]() {
      for await (const link of inner) yield wrap(link);
    },
  };
}

/**
 * Resolves as `pending` does, or rejects with `signal.reason` as soon as it aborts; a result
 * that arrives after the abort is handed to `discard` (so a late connection gets closed), and a
 * late failure is absorbed. For calls that take no signal of their own.
 *
 * @example
 * ```ts
 * import { abortable } from "./types.ts";
 * const gone = new AbortController();
 * const late = new Promise<string>((r) => setTimeout(() => r("late"), 10));
 * const p = abortable(late, gone.signal, () => {});
 * gone.abort(new Error("gave up"));
 * try { await p; throw new Error("not aborted"); } catch (e) {
 *   if ((e as Error).message !== "gave up") throw e;
 * }
 * await late;
 * ```
 */
export function abortable<T>(
  pending: Promise<T>,
  signal: AbortSignal | undefined,
  discard: (late: T) => void,
): Promise<T> {
  if (!signal) return pending;
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      reject(signal.reason);
      pending.then(discard, () => {});
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    pending.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        if (signal.aborted) discard(value);
        else resolve(value);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
