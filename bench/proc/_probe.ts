// Where a round trip's time goes, for the `proc_pingpong_64B_js_path` row: the JavaScript that
// runs between a read's completion and the next write call, in each process of a ping-pong.
// The network's part of a round trip (syscalls, the kernel's loopback, waking the other
// process) is the same for raw TCP and heartline; what differs is this code path, so the row
// says how much of the p50 gap it explains and what a ratio target leaves for it.

import { type Link, type Listener, mapLinks, type Transport } from "../../transports/types.ts";

/**
 * Timestamps of one process's reads and writes. Each figure is taken with `performance.now()`
 * (about 0.08 us here), the same number of times per message on raw's side and on heartline's.
 */
export class PathProbe {
  /** When the last chunk was handed to its reader (0: none since the last write). */
  lastRead = 0;
  /** Set by the pinger just before it calls send() (0: not sending). */
  sendStart = 0;
  /** us from a read's completion to the next write call (the echo's reply). */
  readToWrite: number[] = [];
  /** us from the pinger's send() to its write call. */
  sendToWrite: number[] = [];
  /** us from a read's completion to the reply in the pinger's hands. */
  readToReply: number[] = [];

  /** A chunk has been read. */
  read(): void {
    this.lastRead = performance.now();
  }

  /** A write is about to be issued. */
  write(): void {
    const now = performance.now();
    if (this.lastRead > 0) this.readToWrite.push((now - this.lastRead) * 1000);
    if (this.sendStart > 0) this.sendToWrite.push((now - this.sendStart) * 1000);
    this.lastRead = 0;
    this.sendStart = 0;
  }

  /** The pinger has its reply. */
  replied(): void {
    if (this.lastRead > 0) this.readToReply.push((performance.now() - this.lastRead) * 1000);
  }

  /** Median of each figure over the second half of its samples (the first warms up), in us. */
  medians(): { readToWrite?: number; sendToWrite?: number; readToReply?: number } {
    const med = (xs: number[]) => {
      if (xs.length === 0) return undefined;
      const rest = xs.slice(Math.floor(xs.length / 2)).sort((a, b) => a - b);
      return rest[Math.floor(rest.length / 2)];
    };
    return {
      readToWrite: med(this.readToWrite),
      sendToWrite: med(this.sendToWrite),
      readToReply: med(this.readToReply),
    };
  }
}

/** A link that tells `probe` of each chunk it hands on and each write it is given. */
class ProbedLink implements Link {
  #inner: Link;
  #probe: PathProbe;
  // The reader gives readThen the same callback each time: its wrapper is made once.
  #onChunk: ((chunk: Uint8Array | null) => void) | null = null;
  #probedOnChunk: (chunk: Uint8Array | null) => void = () => {};

  constructor(inner: Link, probe: PathProbe) {
    if (!inner.readThen || !inner.writeThen) {
      throw new Error("The path probe wraps links with readThen and writeThen (TCP)");
    }
    this.#inner = inner;
    this.#probe = probe;
  }

  get localAddr(): string {
    return this.#inner.localAddr;
  }

  get remoteAddr(): string {
    return this.#inner.remoteAddr;
  }

  get integrity(): boolean | undefined {
    return this.#inner.integrity;
  }

  async read(): Promise<Uint8Array | null> {
    const chunk = await this.#inner.read();
    this.#probe.read();
    return chunk;
  }

  readThen(onChunk: (chunk: Uint8Array | null) => void, onError: (error: unknown) => void): void {
    if (onChunk !== this.#onChunk) {
      this.#onChunk = onChunk;
      this.#probedOnChunk = (chunk) => {
        this.#probe.read();
        onChunk(chunk);
      };
    }
    this.#inner.readThen!(this.#probedOnChunk, onError);
  }

  write(chunks: Uint8Array[]): Promise<void> {
    this.#probe.write();
    return this.#inner.write(chunks);
  }

  writeThen(chunks: Uint8Array[], onWritten: () => void, onError: (error: unknown) => void): void {
    this.#probe.write();
    this.#inner.writeThen!(chunks, onWritten, onError);
  }

  largeFrames(): void {
    this.#inner.largeFrames?.();
  }

  flush(): Promise<void> {
    return this.#inner.flush?.() ?? Promise.resolve();
  }

  close(): void {
    this.#inner.close();
  }
}

/** Wraps `inner` so every link it dials or accepts reports to `probe`. */
export function probedTransport(inner: Transport, probe: PathProbe): Transport {
  const wrap = (link: Link) => new ProbedLink(link, probe);
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
