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
 * Free lists of buffers in power-of-two sizes from `min` to `max` bytes, up to `keepPerClass`
 * of each size: a buffer taken is exactly of its size class, so a small need never holds a large
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

  /**
   * Classes from `min` to `max` bytes, both powers of two. Each class keeps up to
   * `keepPerClass` free buffers (default 8).
   */
  constructor(readonly min: number, readonly max: number, readonly keepPerClass = MAX_FREE) {}

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
    if (free.length < this.keepPerClass) free.push(buf);
  }
}

/**
 * Chunks that lossless replay buffers copy written frames into (see
 * src/session/replay_buffer.ts), 4 to 256 KiB: given back once everything in them is
 * acknowledged. Up to 32 of each size are kept: a full replay buffer's worth of the largest
 * (8 MiB by default). An ack frees many chunks at once, and with 8 kept a 64 B lossless
 * stream allocated a fresh, zeroed 256 KiB chunk at more than half of its takes (632 of
 * 1,154 for 4 M messages); the sender spent about 6 % less CPU with 32. At most about 16 MiB
 * is held free in all.
 */
export const replayChunks: SizeClassPool = new SizeClassPool(4 * 1024, 256 * 1024, 32);

const NO_BYTES = new Uint8Array(0);

/**
 * Hands out small pieces of shared buffers, each piece once, at 8-byte-aligned offsets: a new
 * ArrayBuffer costs about 400 ns in Deno 2.9 while a view of one costs 20 to 40, so many small
 * buffers (received bodies, control frames) are carved from one. A piece is fresh (zeroed) and
 * never handed out again; a piece that is kept pins its whole buffer.
 *
 * Buffers start at `minBytes` and each new one doubles, up to `growToBytes`, so a busy user
 * gets large buffers and an occasional one small ones; a piece larger than the next buffer
 * gets a buffer of its own size. `release()` lets go of the buffer and starts over small, as
 * does a buffer whose owner transferred it (it reads as empty).
 *
 * @example
 * ```ts
 * import { Arena } from "./_buffer_pool.ts";
 * const arena = new Arena(256, 8192);
 * const a = arena.take(5), b = arena.take(3);
 * if (a.buffer !== b.buffer || b.byteOffset !== 8) throw new Error("packed, aligned");
 * const c = arena.take(250); // no room left: a new buffer, twice as large
 * if (c.buffer === a.buffer || c.buffer.byteLength !== 512) throw new Error("grown");
 * if (arena.take(9000).buffer.byteLength !== 9000) throw new Error("a large piece, its size");
 * ```
 */
export class Arena {
  #buf = NO_BYTES; // none until the first piece: an idle user holds no buffer
  #pos = 0;
  /** Size of the next buffer, unless a piece needs more. */
  #nextBytes: number;

  /** Buffers of `minBytes` at first, each new one twice the last, up to `growToBytes`. */
  constructor(readonly minBytes: number, readonly growToBytes: number = minBytes) {
    this.#nextBytes = minBytes;
  }

  /** A fresh piece of `bytes`. */
  take(bytes: number): Uint8Array {
    if (this.#buf.length - this.#pos < bytes) {
      // No buffer (the first piece, or after release()), or one its owner transferred (it
      // reads as empty): start over small.
      if (this.#buf.length === 0) this.#nextBytes = this.minBytes;
      this.#buf = new Uint8Array(Math.max(this.#nextBytes, bytes));
      this.#pos = 0;
      this.#nextBytes = Math.min(this.#nextBytes * 2, this.growToBytes);
    }
    const piece = this.#buf.subarray(this.#pos, this.#pos + bytes);
    this.#pos = (this.#pos + bytes + 7) & ~7;
    return piece;
  }

  /** Lets go of the current buffer (pieces handed out keep it alive) and starts over small. */
  release(): void {
    this.#buf = NO_BYTES;
    this.#pos = 0;
  }
}

/**
 * Small control frames (heartbeats, acks), which live until their write: pieces of 8 KiB
 * buffers instead of an ArrayBuffer each.
 */
export const frameArena: Arena = new Arena(8 * 1024);
