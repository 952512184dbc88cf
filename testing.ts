/**
 * Helpers for testing code built on heartline: the in-memory transport (with cuts, stalls,
 * corruption and blackholes), a wrapper that splits every read at random boundaries the way
 * real TCP does, and a manual clock that drives the timer wheel without real waiting.
 *
 * @example
 * ```ts
 * import { Messenger } from "./mod.ts";
 * import { ManualClock, MemoryTransport } from "./testing.ts";
 * const net = new MemoryTransport();
 * const clock = new ManualClock();
 * await using a = new Messenger({ name: "a", transports: [net], clock });
 * await using b = new Messenger({ name: "b", transports: [net], clock });
 * await b.connect(await a.listen("mem://a"));
 * ```
 *
 * @module
 */

export { MemoryLink, MemoryTransport } from "./transports/memory.ts";
export { seededRandom, splitReads, type SplitReadsOptions } from "./transports/split_reads.ts";
export { ManualClock } from "./src/timer/clock.ts";
