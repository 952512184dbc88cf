/**
 * Failure detectors: phi accrual (Hayashibara et al. 2004, in the form Akka uses) and a fixed
 * grace. Pure arithmetic over arrival times; the caller supplies the clock readings.
 *
 * @module
 */

import type { HeartbeatSettings } from "../protocol/handshake.ts";

/** Settings of the failure detectors: the heartbeat settings without the mode. */
export type DetectorSettings = Omit<HeartbeatSettings, "mode">;

/**
 * Arrival intervals a phi detector's statistics cover: the last WINDOW_BLOCKS whole blocks of
 * BLOCK_SAMPLES, and the block being filled (200 to 219 intervals).
 */
const BLOCK_SAMPLES = 20;
const WINDOW_BLOCKS = 10;

/**
 * How long after the last arrival a silent peer reaches the threshold: for phi, the `t` at
 * which `phi(t) = phiThreshold` with the deviation at its floor; for grace, `graceMs`. This is
 * the detection bound before the check period is added (see docs/failure-detection.md).
 *
 * @example
 * ```ts
 * import { silenceToDownMs } from "./detector.ts";
 * const t = silenceToDownMs({
 *   detector: "phi", intervalMs: 1000, phiThreshold: 8, acceptablePauseMs: 2000,
 *   minStdDevMs: 100, graceMs: 5000,
 * });
 * if (t < 3000 || t > 4000) throw new Error(`unexpected ${t}`);
 * ```
 */
export function silenceToDownMs(s: DetectorSettings): number {
  if (s.detector === "grace") return s.graceMs;
  // Solve phi(y) = threshold for y = (t - mean) / sigma by bisection on the logistic form.
  let lo = 0, hi = 100;
  for (let i = 0; i < 100; i++) {
    const mid = (lo + hi) / 2;
    if (phiOfY(mid) < s.phiThreshold) lo = mid;
    else hi = mid;
  }
  return s.intervalMs + s.acceptablePauseMs + hi * s.minStdDevMs;
}

/** Phi for a standardized delay `y`, with the logistic approximation of the normal CDF. */
function phiOfY(y: number): number {
  const e = Math.exp(-y * (1.5976 + 0.070566 * y * y));
  // P(later) = e / (1 + e) for y > 0; phi = -log10(P(later)).
  return y > 0 ? -Math.log10(e / (1 + e)) : -Math.log10(1 - 1 / (1 + e));
}

/**
 * Phi accrual detector for one peer. `heartbeat(now)` on each arrival; `phi(now)` says how
 * unlikely the current silence is (phi 8 means a 1-in-10^8 chance that the peer is alive).
 *
 * @example
 * ```ts
 * import { PhiAccrualDetector } from "./detector.ts";
 * const d = new PhiAccrualDetector({ intervalMs: 100, acceptablePauseMs: 0, minStdDevMs: 10 });
 * for (let t = 0; t <= 1000; t += 100) d.heartbeat(t);
 * if (d.phi(1050) > 1) throw new Error("too suspicious");
 * if (d.phi(2000) < 8) throw new Error("not suspicious enough");
 * ```
 */
export class PhiAccrualDetector {
  /**
   * The window as sums rather than samples: per whole block (of BLOCK_SAMPLES), its sum and
   * sum of squares, the oldest first, in one array [sum, sumSq, sum, sumSq, ...]; the block
   * being filled in fields. A block leaves the window whole. An idle connection's peer has two
   * detectors, and a ring of 200 samples each held 1.6 KB per peer once full (stop 26); this
   * holds at most 20 numbers each.
   */
  #blocks: number[] = [];
  #blockSum = 0;
  #blockSumSq = 0;
  #blockCount = 0;
  /** Totals over the window (whole blocks and the block being filled). */
  #count = 0;
  #sum = 0;
  #sumSq = 0;
  #last = NaN; // last sign of life
  #lastBeat = NaN; // last heartbeat, for interval samples
  #skipNext = false;
  #pause: number;
  #minStd: number;
  #maxInterval: number;

  /**
   * Creates a detector bootstrapped with the expected interval. An interval longer than
   * `maxIntervalMs` is an outage (the silence made, or would have made, the peer down), not a
   * sample of the heartbeat's jitter: it is not learnt, as Cassandra's detector does, or the
   * next outage would take several times longer to detect (the chaos harness saw 4.5 s
   * instead of 1 s on a link that had been cut before). Default: every interval is learnt.
   */
  constructor(
    options: {
      intervalMs: number;
      acceptablePauseMs: number;
      minStdDevMs: number;
      maxIntervalMs?: number;
    },
  ) {
    this.#pause = options.acceptablePauseMs;
    this.#minStd = options.minStdDevMs;
    this.#maxInterval = options.maxIntervalMs ?? Infinity;
    // Bootstrap as Akka does: two samples around the expected interval.
    const std = options.intervalMs / 4;
    this.#add(options.intervalMs - std);
    this.#add(options.intervalMs + std);
  }

  /** Time of the last arrival (NaN before the first). */
  get lastArrival(): number {
    return this.#last;
  }

  /** Records a heartbeat at `now`: a sign of life and an interval sample. */
  heartbeat(now: number): void {
    if (!Number.isNaN(this.#lastBeat)) {
      const interval = now - this.#lastBeat;
      if (interval <= 0) return; // several arrivals in one tick count once
      if (this.#skipNext) this.#skipNext = false;
      else if (interval <= this.#maxInterval) this.#add(interval);
    }
    this.#lastBeat = now;
    if (Number.isNaN(this.#last) || now > this.#last) this.#last = now;
  }

  /**
   * Records a sign of life that is not a heartbeat (data arriving): silence is measured from
   * `now`, but the interval statistics, which describe heartbeats, are left alone, so a busy
   * link does not teach the detector to expect arrivals every few microseconds.
   */
  touch(now: number): void {
    if (Number.isNaN(this.#last) || now > this.#last) this.#last = now;
  }

  /**
   * Marks a sign of life that is not a heartbeat (a handshake): silence is measured from
   * `now`, but the gap to the first real heartbeat, which follows the heartbeat phase rather
   * than the interval, is not taken as an interval sample.
   */
  mark(now: number): void {
    this.touch(now);
    this.#lastBeat = this.#last;
    this.#skipNext = true;
  }

  /**
   * This process did not run for `ms` (stopped, swapped out, a long collection): the silence
   * it then finds is its own, not the peer's, so it is taken off (never past `now`), and the
   * interval spanning it is not learnt.
   */
  excuse(ms: number, now: number): void {
    if (Number.isNaN(this.#last)) return;
    this.#last = Math.min(now, this.#last + ms);
    if (!Number.isNaN(this.#lastBeat)) {
      this.#lastBeat = Math.min(now, this.#lastBeat + ms);
      this.#skipNext = true;
    }
  }

  /** Mean of the remembered intervals, ms. */
  get meanMs(): number {
    return this.#sum / this.#count;
  }

  /** Standard deviation of the remembered intervals (before the floor), ms. */
  get stdDevMs(): number {
    const n = this.#count;
    const mean = this.#sum / n;
    return Math.sqrt(Math.max(0, this.#sumSq / n - mean * mean));
  }

  /** Phi at time `now` (0 before the first arrival). */
  phi(now: number): number {
    if (Number.isNaN(this.#last)) return 0;
    const elapsed = now - this.#last;
    const mean = this.meanMs + this.#pause;
    const std = Math.max(this.stdDevMs, this.#minStd);
    return phiOfY((elapsed - mean) / std);
  }

  #add(interval: number): void {
    this.#blockSum += interval;
    this.#blockSumSq += interval * interval;
    this.#count++;
    this.#sum += interval;
    this.#sumSq += interval * interval;
    if (++this.#blockCount < BLOCK_SAMPLES) return;
    // The block is whole: it joins the window, and the oldest leaves if there are too many.
    const blocks = this.#blocks;
    if (blocks.length === 2 * WINDOW_BLOCKS) {
      blocks.shift();
      blocks.shift();
    }
    blocks.push(this.#blockSum, this.#blockSumSq);
    this.#blockSum = 0;
    this.#blockSumSq = 0;
    this.#blockCount = 0;
    // Totals summed again from the blocks, not kept by subtraction: no drift over a long life.
    let sum = 0, sumSq = 0;
    for (let i = 0; i < blocks.length; i += 2) {
      sum += blocks[i];
      sumSq += blocks[i + 1];
    }
    this.#count = (blocks.length / 2) * BLOCK_SAMPLES;
    this.#sum = sum;
    this.#sumSq = sumSq;
  }
}

/**
 * Grace detector: down once the silence exceeds `graceMs`. Its "phi" is the silence as a
 * fraction of the grace scaled to `threshold` (so 1x grace reads as the threshold).
 */
export class GraceDetector {
  #last = NaN;
  #grace: number;
  #threshold: number;

  /** Creates a detector. */
  constructor(options: { graceMs: number; phiThreshold: number }) {
    this.#grace = options.graceMs;
    this.#threshold = options.phiThreshold;
  }

  /** Time of the last arrival (NaN before the first). */
  get lastArrival(): number {
    return this.#last;
  }

  /** Records an arrival. */
  heartbeat(now: number): void {
    this.#last = now;
  }

  /** Marks a sign of life that is not a heartbeat (same as an arrival here). */
  mark(now: number): void {
    this.#last = now;
  }

  /** Any sign of life (same as an arrival here). */
  touch(now: number): void {
    this.#last = now;
  }

  /** This process did not run for `ms`: that much silence is taken off (never past `now`). */
  excuse(ms: number, now: number): void {
    if (!Number.isNaN(this.#last)) this.#last = Math.min(now, this.#last + ms);
  }

  /** Silence relative to the grace, scaled so that the grace reads as the threshold. */
  phi(now: number): number {
    if (Number.isNaN(this.#last)) return 0;
    return ((now - this.#last) / this.#grace) * this.#threshold;
  }
}

/** Either detector. */
export type FailureDetector = PhiAccrualDetector | GraceDetector;

/** Makes the detector the settings ask for. */
export function makeDetector(s: DetectorSettings): FailureDetector {
  if (s.detector === "grace") return new GraceDetector(s);
  return new PhiAccrualDetector({ ...s, maxIntervalMs: silenceToDownMs(s) });
}
