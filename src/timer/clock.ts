/**
 * The clock interface the timer wheel and failure detectors read time from, with the system
 * clock and a manual clock that tests advance by hand.
 *
 * @module
 */

/** Time source and the one timeout primitive the timer wheel needs. */
export interface Clock {
  /** Milliseconds on a monotonic scale (not necessarily epoch-based). */
  now(): number;
  /**
   * Calls `fn` once after `ms` milliseconds; returns a handle for `clearTimeout`. With
   * `ref: false` (the default) the timeout does not keep the process alive on its own.
   */
  setTimeout(fn: () => void, ms: number, options?: { ref?: boolean }): unknown;
  /** Cancels a pending `setTimeout`. */
  clearTimeout(handle: unknown): void;
}

/**
 * The real clock: `performance.now()` and the global `setTimeout`, unref'd unless asked, so
 * that heartbeats alone never keep a process alive (in Deno; a browser has no such notion, and
 * the timeouts run as they are).
 *
 * @example
 * ```ts
 * import { systemClock } from "./clock.ts";
 * const t = systemClock.now();
 * if (typeof t !== "number") throw new Error("no time");
 * ```
 */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout(fn, ms, options) {
    const id = setTimeout(fn, ms);
    if (!options?.ref) globalThis.Deno?.unrefTimer(id);
    return id;
  },
  clearTimeout: (handle) => clearTimeout(handle as number),
};

interface ManualTimeout {
  at: number;
  seq: number;
  fn: () => void;
}

/** Timeouts one `ManualClock.advance()` may fire before it calls it a loop. */
export const MAX_FIRES_PER_ADVANCE = 1_000_000;

/**
 * A clock that moves only when told to, for tests: `advance(ms)` runs every timeout that falls
 * due, in order, without real waiting.
 *
 * @example
 * ```ts
 * import { ManualClock } from "./clock.ts";
 * const clock = new ManualClock();
 * let fired = false;
 * clock.setTimeout(() => fired = true, 100);
 * clock.advance(99);
 * if (fired) throw new Error("too early");
 * clock.advance(1);
 * if (!fired) throw new Error("did not fire");
 * ```
 */
export class ManualClock implements Clock {
  #now: number;
  #seq = 0;
  #timeouts = new Map<number, ManualTimeout>();

  /** Creates a clock reading `start` milliseconds. */
  constructor(start = 0) {
    this.#now = start;
  }

  /** Current time in milliseconds. */
  now(): number {
    return this.#now;
  }

  /** Schedules `fn` at `now() + ms`. */
  setTimeout(fn: () => void, ms: number): unknown {
    const seq = ++this.#seq;
    this.#timeouts.set(seq, { at: this.#now + Math.max(0, ms), seq, fn });
    return seq;
  }

  /** Cancels a timeout. */
  clearTimeout(handle: unknown): void {
    this.#timeouts.delete(handle as number);
  }

  /** Number of timeouts waiting to fire. */
  get pending(): number {
    return this.#timeouts.size;
  }

  /**
   * Moves time forward by `ms` without firing anything, as a process that was stopped
   * (SIGSTOP, swapped out) finds it: what fell due meanwhile fires, late, at the next
   * {@linkcode ManualClock.advance}.
   */
  jump(ms: number): void {
    this.#now += Math.max(0, ms);
  }

  /**
   * Moves time forward by `ms`, firing every timeout that falls due on the way, in order.
   * Throws `RangeError` if one advance fires more than {@linkcode MAX_FIRES_PER_ADVANCE}
   * timeouts: something re-arms for "now" in a loop, and a real clock would spin on it.
   */
  advance(ms: number): void {
    const target = this.#now + ms;
    for (let fired = 0;; fired++) {
      if (fired > MAX_FIRES_PER_ADVANCE) {
        throw new RangeError(
          `ManualClock fired over ${MAX_FIRES_PER_ADVANCE} timeouts in one advance: a timer re-arms for now in a loop`,
        );
      }
      let next: ManualTimeout | undefined;
      for (const t of this.#timeouts.values()) {
        if (t.at <= target && (!next || t.at < next.at || (t.at === next.at && t.seq < next.seq))) {
          next = t;
        }
      }
      if (!next) break;
      this.#timeouts.delete(next.seq);
      this.#now = Math.max(this.#now, next.at);
      next.fn();
    }
    this.#now = target;
  }
}
