// Internal: write buffers shared by every session of the process. A writer takes one for a
// write pass and gives it back when the pass ends, so a lone message (a ping, a reply) is
// encoded without allocating a buffer, and an idle session holds none.

/** Smallest buffer handed out: a lone small message gets room for a batch of them. */
const MIN_BYTES = 4 * 1024;
/** Free buffers kept at most. */
const MAX_FREE = 8;
/** Largest buffer kept (the writer's largest batch and a little more). */
const MAX_KEPT_BYTES = 512 * 1024;

/**
 * A free list of byte buffers.
 *
 * @example
 * ```ts
 * import { BufferPool } from "./_buffer_pool.ts";
 * const pool = new BufferPool();
 * const a = pool.take(100);
 * pool.give(a);
 * if (pool.take(50) !== a) throw new Error("reused");
 * ```
 */
export class BufferPool {
  #free: Uint8Array[] = [];

  /** A buffer of at least `bytes` (its contents are whatever its last user left). */
  take(bytes: number): Uint8Array {
    const free = this.#free;
    for (let i = free.length - 1; i >= 0; i--) {
      if (free[i].length < bytes) continue;
      const buf = free[i];
      free[i] = free[free.length - 1];
      free.pop();
      return buf;
    }
    return new Uint8Array(Math.max(bytes, MIN_BYTES));
  }

  /** Returns a buffer nothing refers to any more; kept if the pool has room for it. */
  give(buf: Uint8Array): void {
    if (this.#free.length < MAX_FREE && buf.length <= MAX_KEPT_BYTES) this.#free.push(buf);
  }
}

/** The process's pool of write buffers. */
export const writeBuffers: BufferPool = new BufferPool();

/**
 * Free lists of buffers in power-of-two sizes from `min` to `max` bytes, up to MAX_FREE of
 * each size: a buffer taken is exactly of its size class, so a small need never holds a large
 * buffer, and a buffer given back is taken again by the next need of its size.
 *
 * @example
 * ```ts
 * import { SizeClassPool } from "./_buffer_pool.ts";
 * const pool = new SizeClassPool(4096, 65536);
 * const a = pool.take(5000);
 * if (a.length !== 8192) throw new Error("rounded up to its class");
 * pool.give(a);
 * if (pool.take(6000) !== a || pool.take(3000).length !== 4096) throw new Error("reused");
 * ```
 */
export class SizeClassPool {
  #free = new Map<number, Uint8Array[]>();

  /** Classes from `min` to `max` bytes, both powers of two. */
  constructor(readonly min: number, readonly max: number) {}

  /** A buffer of the class that holds `bytes` (at most `max`; more gets exactly `bytes`). */
  take(bytes: number): Uint8Array {
    if (bytes > this.max) return new Uint8Array(bytes);
    let size = this.min;
    while (size < bytes) size *= 2;
    return this.#free.get(size)?.pop() ?? new Uint8Array(size);
  }

  /** Returns a buffer nothing refers to any more; kept if it is of a class with room. */
  give(buf: Uint8Array): void {
    const size = buf.length;
    if (size < this.min || size > this.max || (size & (size - 1)) !== 0) return;
    let free = this.#free.get(size);
    if (free === undefined) this.#free.set(size, free = []);
    if (free.length < MAX_FREE) free.push(buf);
  }
}

/**
 * Chunks that lossless replay buffers copy written frames into (see
 * src/session/replay_buffer.ts), 4 to 256 KiB: given back once everything in them is
 * acknowledged.
 */
export const replayChunks: SizeClassPool = new SizeClassPool(4 * 1024, 256 * 1024);
