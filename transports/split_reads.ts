/**
 * A transport wrapper for tests: every link it makes hands its reader the bytes in pieces cut
 * at random (seeded) boundaries, the way real TCP and QUIC do, instead of one piece per write.
 *
 * @module
 */

import { ForwardingLink, type Link, mapTransportLinks, type Transport } from "./types.ts";

/** Options of {@linkcode splitReads}. */
export interface SplitReadsOptions {
  /** Seed of the boundaries, so a failing run can be repeated. Default 1. */
  seed?: number;
  /** Largest piece handed to a reader, in bytes (the smallest is 1). Default 4096. */
  maxPiece?: number;
}

/**
 * A small seeded PRNG (mulberry32): deterministic, fast, good enough for test schedules.
 *
 * @example
 * ```ts
 * import { seededRandom } from "./split_reads.ts";
 * const a = seededRandom(7), b = seededRandom(7);
 * if (a() !== b()) throw new Error("same seed, same sequence");
 * ```
 */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return function next(): number {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 0x1_0000_0000;
  };
}

/** A link whose reads return the inner link's bytes in random pieces. */
class SplitLink extends ForwardingLink {
  #random: () => number;
  #maxPiece: number;
  #rest: Uint8Array | null = null;

  constructor(inner: Link, random: () => number, maxPiece: number) {
    super(inner);
    this.#random = random;
    this.#maxPiece = maxPiece;
  }

  override async read(): Promise<Uint8Array | null> {
    let chunk = this.#rest;
    this.#rest = null;
    if (chunk === null || chunk.length === 0) {
      const read = await this.inner.read();
      if (read === null) return null;
      chunk = read.slice(); // the inner buffer may be reused on its next read
    }
    // Pieces of every size class: often a few bytes (splitting preambles and headers),
    // sometimes up to maxPiece.
    const r = this.#random();
    const limit = Math.min(r < 0.3 ? 16 : r < 0.6 ? 300 : this.#maxPiece, this.#maxPiece);
    const size = 1 + Math.floor(this.#random() * Math.min(limit, chunk.length));
    if (size < chunk.length) this.#rest = chunk.subarray(size);
    return chunk.subarray(0, size);
  }
}

/**
 * Wraps `inner` so every link it dials or accepts splits its reads at random boundaries
 * (1 byte up to `maxPiece`). Fault tests use it to run a transport the way a real network
 * hands bytes to a reader.
 *
 * @example
 * ```ts
 * import { MemoryTransport } from "./memory.ts";
 * import { splitReads } from "./split_reads.ts";
 * const net = splitReads(new MemoryTransport(), { seed: 3, maxPiece: 2 });
 * const listener = await net.listen("mem://a");
 * const link = await net.connect("mem://a");
 * await link.write([new Uint8Array([1, 2, 3, 4, 5])]);
 * for await (const accepted of listener) {
 *   const piece = await accepted.read();
 *   if (!piece || piece.length > 2) throw new Error("pieces are at most maxPiece bytes");
 *   break;
 * }
 * listener.close();
 * ```
 */
export function splitReads(inner: Transport, options: SplitReadsOptions = {}): Transport {
  const random = seededRandom(options.seed ?? 1);
  const maxPiece = options.maxPiece ?? 4096;
  if (!(maxPiece >= 1)) throw new RangeError(`maxPiece must be at least 1: ${maxPiece}`);
  return mapTransportLinks(inner, (link) => new SplitLink(link, random, maxPiece));
}
