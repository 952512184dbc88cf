/**
 * In-memory transport for tests: in-process links with fault hooks (cut, stall reads, corrupt
 * bytes). Addresses: `mem://name`. Each `MemoryTransport` instance is its own little network;
 * share one instance between the messengers that should reach each other.
 *
 * @module
 */

import { TransportError } from "../src/errors.ts";
import { concatChunks, type Link, type Listener, type Transport } from "./types.ts";

/** Unread bytes a link buffers before `write()` waits (back-pressure). */
export const MEMORY_LINK_HIGH_WATER = 1024 * 1024;

/** One direction of a pipe: a byte queue with a reader waiting on it. */
class Pipe {
  chunks: Uint8Array[] = [];
  bytes = 0;
  ended = false;
  error: Error | null = null;
  stalled = false;
  corruptNext = 0;
  #readerWake: (() => void) | null = null;
  #writerWakes: (() => void)[] = [];

  wakeReader(): void {
    const wake = this.#readerWake;
    this.#readerWake = null;
    wake?.();
  }

  wakeWriters(): void {
    const wakes = this.#writerWakes;
    this.#writerWakes = [];
    for (const w of wakes) w();
  }

  waitReadable(): Promise<void> {
    return new Promise((resolve) => this.#readerWake = resolve);
  }

  waitWritable(): Promise<void> {
    return new Promise((resolve) => this.#writerWakes.push(resolve));
  }
}

/** An in-memory link end, with hooks for fault injection. */
export class MemoryLink implements Link {
  /** This end's address. */
  readonly localAddr: string;
  /** The other end's address. */
  readonly remoteAddr: string;
  #in: Pipe;
  #out: Pipe;
  /** The other end of this link (set when the pair is made). */
  peer!: MemoryLink;
  /** Whether this link claims to protect integrity (see `MemoryTransport`'s options). */
  integrity = false;

  /** @internal use {@linkcode MemoryTransport} */
  constructor(localAddr: string, remoteAddr: string, incoming: Pipe, outgoing: Pipe) {
    this.localAddr = localAddr;
    this.remoteAddr = remoteAddr;
    this.#in = incoming;
    this.#out = outgoing;
  }

  /** Reads the next chunk. */
  async read(): Promise<Uint8Array | null> {
    const pipe = this.#in;
    for (;;) {
      if (pipe.error) throw pipe.error;
      if (!pipe.stalled && pipe.chunks.length > 0) {
        const chunk = pipe.chunks.shift()!;
        pipe.bytes -= chunk.length;
        pipe.wakeWriters();
        return chunk;
      }
      if (pipe.ended) return null;
      await pipe.waitReadable();
    }
  }

  /** Writes a batch; waits while the other end has more than the high-water mark unread. */
  async write(chunks: Uint8Array[]): Promise<void> {
    const pipe = this.#out;
    while (!pipe.error && !pipe.ended && pipe.bytes > MEMORY_LINK_HIGH_WATER) {
      await pipe.waitWritable();
    }
    if (pipe.error) throw pipe.error;
    if (pipe.ended) throw new TransportError("Memory link is closed");
    // Copy: the writer may reuse its buffers, a real socket would have copied too.
    const data = concatChunks(chunks).slice();
    if (pipe.corruptNext > 0 && data.length > 0) {
      data[data.length >> 1] ^= 0xff;
      pipe.corruptNext--;
    }
    pipe.chunks.push(data);
    pipe.bytes += data.length;
    pipe.wakeReader();
  }

  /** Orderly close of both directions. */
  close(): void {
    for (const pipe of [this.#in, this.#out]) {
      pipe.ended = true;
      pipe.wakeReader();
      pipe.wakeWriters();
    }
  }

  /** Fault: cuts the link; both ends' pending and later reads and writes fail. */
  cut(): void {
    const error = new TransportError("Memory link cut");
    for (const pipe of [this.#in, this.#out]) {
      pipe.error = error;
      pipe.wakeReader();
      pipe.wakeWriters();
    }
  }

  /** Fault: while stalled, this end reads nothing (its peer's writes back up). */
  stallReads(stalled: boolean): void {
    this.#in.stalled = stalled;
    if (!stalled) {
      this.#in.wakeReader();
    }
  }

  /** Fault: flips a byte in each of the next `count` batches this end writes. */
  corruptWrites(count = 1): void {
    this.#out.corruptNext += count;
  }

  /** Unread bytes waiting for this end. */
  get unreadBytes(): number {
    return this.#in.bytes;
  }
}

class MemoryListener implements Listener {
  readonly addr: string;
  #pending: MemoryLink[] = [];
  #wake: (() => void) | null = null;
  #closed = false;
  #onClose: () => void;

  constructor(addr: string, onClose: () => void) {
    this.addr = addr;
    this.#onClose = onClose;
  }

  offer(link: MemoryLink): void {
    this.#pending.push(link);
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  get closed(): boolean {
    return this.#closed;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Link> {
    for (;;) {
      while (this.#pending.length > 0) yield this.#pending.shift()!;
      if (this.#closed) return;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#onClose();
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}

/**
 * The in-memory transport. Every link it makes is kept in {@linkcode MemoryTransport.links} so
 * tests can inject faults.
 *
 * @example
 * ```ts
 * import { MemoryTransport } from "./memory.ts";
 * const net = new MemoryTransport();
 * const listener = await net.listen("mem://a");
 * const link = await net.connect("mem://a");
 * await link.write([new Uint8Array([1])]);
 * for await (const accepted of listener) {
 *   const chunk = await accepted.read();
 *   if (chunk?.[0] !== 1) throw new Error("lost byte");
 *   break;
 * }
 * listener.close();
 * ```
 */
export class MemoryTransport implements Transport {
  /** Serves `mem://` addresses. */
  readonly schemes = ["mem"] as const;
  #listeners = new Map<string, MemoryListener>();
  #dials = 0;
  #integrity: boolean;
  /** Every link dialed through this transport (the dialing end), oldest first. */
  readonly links: MemoryLink[] = [];

  /**
   * A memory transport. With `integrity: true` its links claim to protect integrity as TLS and
   * QUIC links do, so that sessions over it skip frame checksums (for tests of that mode).
   */
  constructor(options: { integrity?: boolean } = {}) {
    this.#integrity = options.integrity ?? false;
  }

  /** Binds `mem://name`. */
  listen(addr: string): Promise<Listener> {
    const name = parseMemAddr(addr);
    if (this.#listeners.has(name)) {
      return Promise.reject(new TransportError(`Address in use: ${addr}`));
    }
    const listener = new MemoryListener(`mem://${name}`, () => this.#listeners.delete(name));
    this.#listeners.set(name, listener);
    return Promise.resolve(listener);
  }

  /** Dials `mem://name`; an aborted signal rejects with its reason. */
  connect(addr: string, options: { signal?: AbortSignal } = {}): Promise<Link> {
    if (options.signal?.aborted) return Promise.reject(options.signal.reason);
    const name = parseMemAddr(addr);
    const listener = this.#listeners.get(name);
    if (!listener || listener.closed) {
      return Promise.reject(new TransportError(`Connection refused: ${addr}`));
    }
    const clientAddr = `mem://${name}/client-${++this.#dials}`;
    const toServer = new Pipe(), toClient = new Pipe();
    const client = new MemoryLink(clientAddr, `mem://${name}`, toClient, toServer);
    const server = new MemoryLink(`mem://${name}`, clientAddr, toServer, toClient);
    client.peer = server;
    server.peer = client;
    client.integrity = server.integrity = this.#integrity;
    this.links.push(client);
    listener.offer(server);
    return Promise.resolve(client);
  }
}

function parseMemAddr(addr: string): string {
  const match = /^mem:\/\/([A-Za-z0-9._-]+)$/.exec(addr);
  if (!match) throw new TypeError(`Invalid memory address: ${addr}`);
  return match[1];
}
