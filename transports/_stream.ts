// Internal: links and listeners over Deno's byte-stream connections, shared by the TCP and TLS
// transports.

import { Deferred } from "../src/_deferred.ts";
import { TransportError } from "../src/errors.ts";
import { CallbackLink, nothing } from "./_callback_link.ts";
import { formatHostPort, gatherWrites, guarded, type Link, type Listener } from "./types.ts";

/**
 * Smallest read buffer: what an idle link holds while its read waits (a keepalive heartbeat
 * is 38 bytes; a larger arrival fills it, and the next read gets twice as much). Small
 * matters here: raw Deno connections with a read pending into 128 bytes held 0.6-1.2 KB less
 * resident memory each than with 512 (docs/benchmarks.md, stop 25). The price: a frame over 128
 * bytes that arrives more than 32 reads after the last one (a large OOB part on a slow interval
 * among keepalives) is split across two reads and grows the buffer again, about two small
 * allocations each time.
 */
export const READ_BUFFER_MIN_BYTES = 128;
/**
 * Largest read buffer: what a busy link that carries large frames grows to (see
 * `Link.largeFrames`). A 64 KiB message and its header arrive in one read rather than two or
 * three, and a stream of them takes a quarter of the reads.
 */
export const READ_BUFFER_MAX_BYTES = 256 * 1024;
/**
 * Largest read buffer while frames are small (a Messages frame is at most 64 KiB): a larger
 * read only delivers more messages at once, which the application then holds at once (a 1 KiB
 * stream's receiver was 20-40 MB larger with 256 KiB reads, and no faster).
 */
export const READ_BUFFER_SMALL_FRAMES_BYTES = 64 * 1024;
/** Reads in a row that each fill less than a quarter of the buffer before it shrinks. */
const SHRINK_AFTER_READS = 32;
/** Reads without news of a large frame after which the buffer is held to 64 KiB again. */
const LARGE_FRAMES_FOR_READS = 64;

/**
 * A read buffer that follows the traffic. A read that fills it doubles it, up to
 * {@linkcode READ_BUFFER_SMALL_FRAMES_BYTES}, or {@linkcode READ_BUFFER_MAX_BYTES} while it is
 * told of large frames (within the last 64 reads; after that it goes back to 64 KiB at once).
 * A run of reads that each use less than a quarter of it shrinks it at once to twice the
 * largest of them (down to {@linkcode READ_BUFFER_MIN_BYTES}), so a link that was busy and
 * now carries heartbeats goes from 256 KiB to 128 bytes in one step, not eleven. An idle
 * link's pending read then holds 128 bytes, not 256 KiB, so ten thousand idle connections
 * cost 1.3 MB of read buffers rather than 2.5 GiB.
 */
export class AdaptiveReadBuffer {
  #buf = new Uint8Array(READ_BUFFER_MIN_BYTES);
  #small = 0;
  /** The largest of the current run of small reads. */
  #largest = 0;
  /** Reads left before the buffer is held to 64 KiB again (0: it is). */
  #largeFor = 0;

  /** Large frames arrive: it may grow to {@linkcode READ_BUFFER_MAX_BYTES} for a while. */
  largeFrames(): void {
    this.#largeFor = LARGE_FRAMES_FOR_READS;
  }

  /** The buffer for the next read (valid until the read after it). */
  get buffer(): Uint8Array {
    return this.#buf;
  }

  /** Records that the last read returned `n` bytes, and sizes the next buffer. */
  filled(n: number): void {
    const size = this.#buf.length;
    if (this.#largeFor > 0 && --this.#largeFor === 0 && size > READ_BUFFER_SMALL_FRAMES_BYTES) {
      // No large frame for a while: back to the small frames' limit at once.
      this.#buf = new Uint8Array(READ_BUFFER_SMALL_FRAMES_BYTES);
      this.#small = this.#largest = 0;
      return;
    }
    const max = this.#largeFor > 0 ? READ_BUFFER_MAX_BYTES : READ_BUFFER_SMALL_FRAMES_BYTES;
    if (n === size && size < max) {
      this.#buf = new Uint8Array(size * 2);
      this.#small = this.#largest = 0;
    } else if (n < size / 4 && size > READ_BUFFER_MIN_BYTES) {
      if (n > this.#largest) this.#largest = n;
      if (++this.#small >= SHRINK_AFTER_READS) {
        let next = READ_BUFFER_MIN_BYTES;
        while (next < 2 * this.#largest && next < max) next *= 2;
        this.#buf = new Uint8Array(next); // under half the size: the reads took under a quarter
        this.#small = this.#largest = this.#largeFor = 0; // large frames must say so again
      }
    } else {
      this.#small = this.#largest = 0;
    }
  }
}

/**
 * A link over a byte-stream connection (TCP, or TLS over TCP): a read buffer sized to the
 * traffic, each batch written as one buffer.
 */
export class StreamLink extends CallbackLink {
  readonly localAddr: string;
  readonly remoteAddr: string;
  /** TLS protects integrity; plain TCP does not. */
  readonly integrity: boolean;
  #conn: Deno.Conn<Deno.NetAddr>;
  #closed = false;
  #readBuffer = new AdaptiveReadBuffer();
  #what: string;
  /** Settles when a read sees the end of the stream or fails. */
  #ended = new Deferred<void>();

  /** A link over `conn`, with addresses in `scheme` form. */
  constructor(conn: Deno.Conn<Deno.NetAddr>, scheme: string) {
    super();
    this.#conn = conn;
    this.#what = scheme.toUpperCase();
    this.integrity = scheme === "tls";
    const l = conn.localAddr, r = conn.remoteAddr;
    this.localAddr = formatHostPort(scheme, l.hostname, l.port);
    this.remoteAddr = formatHostPort(scheme, r.hostname, r.port);
  }

  largeFrames(): void {
    this.#readBuffer.largeFrames();
  }

  readThen(onChunk: (chunk: Uint8Array | null) => void, onError: (error: unknown) => void): void {
    if (this.#reading) {
      return this.refuseSecondRead(onError);
    }
    this.#reading = true;
    this.#onChunk = onChunk;
    this.#onReadError = onError;
    if (this.#closed) return queueMicrotask(this.#endAfterClose);
    // One promise per read (the runtime's), with handlers made once per link. A chunk is
    // valid until the next read (the contract of Link.read), and the frame decoder copies
    // whatever it keeps, so the buffer may be reused or replaced after it.
    this.#conn.read(this.#readBuffer.buffer).then(this.#readThenDone, this.#readThenFailed);
  }

  /** A readThen is under way (its callbacks not yet called). */
  #reading = false;

  // readThen's callbacks (set per read: the reader gives the same two each time).
  #onChunk: (chunk: Uint8Array | null) => void = nothing;
  #onReadError: (error: unknown) => void = nothing;
  #endAfterClose = (): void => this.#hand(null);
  #readThenDone = (n: number | null): void => this.#hand(this.#afterRead(n));
  #readThenFailed = (cause: unknown): void => {
    let chunk: Uint8Array | null;
    try {
      chunk = this.#readFailed(cause);
    } catch (error) {
      this.#reading = false;
      return guarded(this.#onReadError, error);
    }
    this.#hand(chunk);
  };
  /** Hands a chunk on; what the reader throws goes to its error callback, never unhandled. */
  #hand(chunk: Uint8Array | null): void {
    this.#reading = false;
    try {
      this.#onChunk(chunk);
    } catch (error) {
      guarded(this.#onReadError, error); // (what onChunk threw: its read ends in a failure)
    }
  }

  #afterRead(n: number | null): Uint8Array | null {
    if (this.#closed) return null; // a read that completed as the link closed hands nothing
    if (n === null) {
      this.#ended.resolve();
      return null;
    }
    const buf = this.#readBuffer.buffer;
    this.#readBuffer.filled(n);
    return buf.subarray(0, n);
  }

  #readFailed(cause: unknown): null {
    this.#ended.resolve();
    if (this.#closed) return null;
    throw new TransportError(`${this.#what} read failed: ${(cause as Error).message}`, { cause });
  }

  writeThen(
    chunks: Uint8Array[],
    onWritten: () => void,
    onError: (error: unknown) => void,
  ): void {
    // One write at a time, the next when it has settled: two writes under way at once could
    // interleave their bytes (a socket that takes part of one, then part of the other). A
    // write after close() fails in its turn too, after those issued before it.
    if (this.#writeBusy) return void this.#writesWaiting.push({ chunks, onWritten, onError });
    if (this.#closed) {
      const error = new TransportError(`${this.#what} link is closed`);
      return queueMicrotask(() => guarded(onError, error));
    }
    this.#startWrite(chunks, onWritten, onError);
  }

  /** A write is under way; those issued meanwhile wait in order. */
  #writeBusy = false;
  #writesWaiting: {
    chunks: Uint8Array[];
    onWritten: () => void;
    onError: (error: unknown) => void;
  }[] = [];
  /** The chunk of the one-chunk write in progress. */
  #writing: Uint8Array | null = null;
  // The callbacks of the write in progress (a session's writer gives the same two each time).
  #onWritten: () => void = nothing;
  #onWriteError: (error: unknown) => void = nothing;

  #startWrite(chunks: Uint8Array[], onWritten: () => void, onError: (e: unknown) => void): void {
    this.#writeBusy = true;
    this.#onWritten = onWritten;
    this.#onWriteError = onError;
    let written: Promise<number>;
    try {
      if (chunks.length !== 1) {
        // Small chunks are joined into one write; a large one (a body written in place) goes
        // as its own write rather than being copied: Deno has no writev.
        this.#writeChunks(gatherWrites(chunks)).then(this.#wroteAll, this.#writeFailed);
        return;
      }
      // One chunk, as a session's batch nearly always is: the runtime's promise and handlers
      // made once per link, nothing else per write.
      written = this.#conn.write(chunks[0]);
    } catch (cause) {
      // Settled in a microtask: never during writeThen().
      return void Promise.reject(cause).catch(this.#writeFailed);
    }
    this.#writing = chunks[0];
    written.then(this.#wroteOne, this.#writeFailed);
  }

  #wroteOne = (n: number): void => {
    const data = this.#writing!;
    this.#writing = null;
    // The rest, rarely: a socket buffer that took part of it.
    if (n < data.length) this.#writeAll(data.subarray(n)).then(this.#wroteAll, this.#writeFailed);
    else this.#settleWrite(null);
  };
  #wroteAll = (): void => this.#settleWrite(null);
  #writeFailed = (cause: unknown): void => {
    this.#writing = null;
    this.#settleWrite(
      new TransportError(`${this.#what} write failed: ${(cause as Error).message}`, { cause }),
    );
  };

  /** The write under way settled: the next waiting one starts, then this one's callback. */
  #settleWrite(error: Error | null): void {
    const onWritten = this.#onWritten, onError = this.#onWriteError;
    this.#writeBusy = false;
    const next = this.#writesWaiting.shift();
    if (next !== undefined) {
      if (this.#closed) this.#failWaitingWrites(next);
      else this.#startWrite(next.chunks, next.onWritten, next.onError);
    }
    if (error) guarded(onError, error);
    else guarded(onWritten, undefined);
  }

  /** The link closed: `first` and every other waiting write fail, in order. */
  #failWaitingWrites(first: { onError: (error: unknown) => void }): void {
    const error = new TransportError(`${this.#what} link is closed`);
    const all = [first, ...this.#writesWaiting.splice(0)];
    queueMicrotask(() => {
      for (const w of all) guarded(w.onError, error);
    });
  }

  async #writeChunks(writes: Uint8Array[]): Promise<void> {
    for (const data of writes) await this.#writeAll(data);
  }

  async #writeAll(data: Uint8Array): Promise<void> {
    let at = await this.#conn.write(data); // nearly always all of it: no view needed
    while (at < data.length) at += await this.#conn.write(data.subarray(at));
  }

  /**
   * A lingering close's first half: sends our FIN and resolves once the peer has closed its
   * side (while the session keeps reading). Closing with unread bytes in the receive buffer
   * makes the kernel send RST, and an RST makes the peer's kernel drop whatever it had
   * received and not yet handed to the peer: the last messages of a close would be lost.
   */
  async flush(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.#conn.closeWrite();
    } catch {
      return; // the link is gone already
    }
    await this.#ended.promise;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#ended.resolve();
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

/** A listener whose accepted connections become links through `wrap`. */
export class StreamListener<C extends Deno.Conn<Deno.NetAddr>> implements Listener {
  readonly addr: string;
  #listener: Deno.Listener<C, Deno.NetAddr>;
  #wrap: (conn: C) => Link;

  /** Accepts from `listener`, naming its address in `scheme` form. */
  constructor(listener: Deno.Listener<C, Deno.NetAddr>, scheme: string, wrap: (conn: C) => Link) {
    this.#listener = listener;
    this.#wrap = wrap;
    this.addr = formatHostPort(scheme, listener.addr.hostname, listener.addr.port);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Link> {
    let backoff = 0;
    for (;;) {
      let conn: C;
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
      yield this.#wrap(conn);
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
