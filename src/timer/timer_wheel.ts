/**
 * The central hierarchical timing wheel (Varghese & Lauck, scheme 7): every timer of a
 * messenger lives here, and the wheel is driven by one re-armed timeout that sleeps while
 * nothing is due.
 *
 * Layout: {@linkcode WHEEL_LEVELS} levels of 64 slots. Level `k` slots are `64^k` ticks wide.
 * A timer sits in the level whose span covers its remaining delay and, as time reaches its slot
 * at that level, cascades down until it fires from level 0. Each slot is a circular doubly
 * linked list, so insert and cancel are O(1). Periodic timers with the same interval and phase
 * share one entry and fire as a walk over an array of handles.
 *
 * Accuracy: a timer due at time `t` fires at the first tick boundary at or after `t`, that is no
 * earlier than `t` and at most `tickMs` later, plus however late the host runs the wheel's one
 * timeout (event-loop delay). Fires later than `2 * tickMs` after due are counted in
 * {@linkcode TimerWheel.lateFires}.
 *
 * @module
 */

import { type Clock, systemClock } from "./clock.ts";
import { PeriodicGroup, PeriodicTimer, type Timer, TimerNode, unlink } from "./_nodes.ts";

export type { Timer } from "./_nodes.ts";

/** Default tick: 5 ms. */
export const DEFAULT_TICK_MS = 5;
/** Number of wheel levels; with 64 slots each they span 64^6 ticks (about 10 years at 5 ms). */
export const WHEEL_LEVELS = 6;
const SLOT_BITS = 6;
const SLOTS = 1 << SLOT_BITS;
const MASK = SLOTS - 1;
const SPAN = Array.from({ length: WHEEL_LEVELS + 1 }, (_, k) => SLOTS ** k);
const MAX_DELTA = SPAN[WHEEL_LEVELS] - 1;
/** Float slack when times become ticks: far below a tick, far above rounding error. */
const TICK_EPSILON = 1e-7;

/** Options of {@linkcode TimerWheel}. */
export interface TimerWheelOptions {
  /** Time source; inject a `ManualClock` in tests. Default: the system clock. */
  clock?: Clock;
  /** Tick width in milliseconds (the accuracy bound). Default {@linkcode DEFAULT_TICK_MS}. */
  tickMs?: number;
  /** Called when a timer callback throws; the wheel goes on. Default: `console.error`. */
  onError?: (error: unknown) => void;
}

/** Options of {@linkcode TimerWheel.every}. */
export interface EveryOptions {
  /**
   * Align due times to multiples of the interval on the wheel's clock (default true), so that
   * timers with related intervals (1 s and 5 s) fire in the same tick. With `false` the first
   * fire is one interval from now.
   */
  aligned?: boolean;
}

/**
 * A hierarchical hashed timing wheel with O(1) insert and cancel.
 *
 * @example
 * ```ts
 * import { ManualClock } from "./clock.ts";
 * import { TimerWheel } from "./timer_wheel.ts";
 * const clock = new ManualClock();
 * const wheel = new TimerWheel({ clock, tickMs: 5 });
 * let fired = 0;
 * wheel.schedule(100, () => fired++);
 * clock.advance(100);
 * if (fired !== 1) throw new Error("timer did not fire");
 * wheel.close();
 * ```
 */
export class TimerWheel {
  #clock: Clock;
  #tickMs: number;
  #epoch: number;
  #current = 0; // last tick processed
  #slots: TimerNode[];
  #size = 0; // linked wheel entries
  #timers = 0; // live timers: one-shots plus members of periodic groups
  #oneShots = 0; // pending one-shot timers: work in progress, so they keep the host alive
  #armedRef = false;
  #groups = new Map<string, PeriodicGroup>();
  #groupSeq = 0;
  #armedAt = Infinity;
  #handle: unknown = undefined;
  #advancing = false;
  #firedThisAdvance = 0;
  #tickEndHooks = new Set<() => void>();
  #onError: (error: unknown) => void;
  #closed = false;
  #lateFires = 0;
  #errors = 0;
  #fired = 0;

  /** Creates an empty wheel; it sets no timeout until a timer is scheduled. */
  constructor(options: TimerWheelOptions = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#tickMs = options.tickMs ?? DEFAULT_TICK_MS;
    if (!(this.#tickMs > 0)) throw new RangeError(`Tick must be positive: ${this.#tickMs}`);
    this.#onError = options.onError ?? ((e) => console.error("heartline: timer failed:", e));
    this.#epoch = this.#clock.now();
    this.#slots = Array.from({ length: WHEEL_LEVELS * SLOTS }, () => {
      const sentinel = new TimerNode(null, 0, 0, 0, null);
      return sentinel;
    });
  }

  /** Timers that fired more than `2 * tickMs` after they were due. */
  get lateFires(): number {
    return this.#lateFires;
  }

  /** Callbacks that threw. */
  get errors(): number {
    return this.#errors;
  }

  /** Timers fired since creation. */
  get fired(): number {
    return this.#fired;
  }

  /** The clock this wheel reads. */
  get clock(): Clock {
    return this.#clock;
  }

  /** Tick width in milliseconds. */
  get tickMs(): number {
    return this.#tickMs;
  }

  /** Number of live timers (one-shot and periodic). */
  get size(): number {
    return this.#timers;
  }

  /** Whether the wheel's one timeout is currently set. */
  get armed(): boolean {
    return this.#handle !== undefined;
  }

  /** Schedules `callback` once, `delayMs` from now. */
  schedule(delayMs: number, callback: () => void): Timer {
    this.#checkOpen();
    const due = this.#sinceEpoch() + Math.max(0, delayMs);
    const node = new TimerNode(this, this.#tickOf(due), due, 0, callback);
    this.#insert(node);
    this.#timers++;
    this.#oneShots++;
    this.#rearm();
    return node;
  }

  /** Schedules `callback` every `intervalMs`; see {@linkcode EveryOptions} for the phase. */
  every(intervalMs: number, callback: () => void, options: EveryOptions = {}): Timer {
    this.#checkOpen();
    if (!(intervalMs >= this.#tickMs)) {
      throw new RangeError(
        `Interval must be at least one tick (${this.#tickMs} ms): ${intervalMs}`,
      );
    }
    const aligned = options.aligned !== false;
    const key = aligned ? `a${intervalMs}` : `u${++this.#groupSeq}`;
    let group = this.#groups.get(key);
    if (!group) {
      const now = this.#sinceEpoch();
      const due = aligned ? (Math.floor(now / intervalMs) + 1) * intervalMs : now + intervalMs;
      const g = group = new PeriodicGroup(key);
      g.node = new TimerNode(this, this.#tickOf(due), due, intervalMs, () => this.#fireGroup(g));
      g.node.group = g;
      this.#groups.set(key, g);
      this.#insert(g.node);
      this.#rearm();
    }
    const timer = new PeriodicTimer(group, callback, this);
    timer.index = group.members.length;
    group.members.push(timer);
    this.#timers++;
    return timer;
  }

  /** @internal removes a periodic timer from its group in O(1) (swap with the last) */
  _leave(timer: PeriodicTimer): void {
    const group = timer.group!;
    timer.group = null;
    timer.callback = null;
    this.#timers--;
    if (group.firing) {
      group.removedWhileFiring = true;
      return;
    }
    const last = group.members.pop()!;
    if (last !== timer) {
      group.members[timer.index] = last;
      last.index = timer.index;
    }
    if (group.members.length === 0) {
      group.node.cancel();
      this.#groups.delete(group.key);
    }
  }

  #fireGroup(group: PeriodicGroup): void {
    // Members that join during the fire wait for the next period (the loop stops at `n`);
    // members that leave are only marked, and the array is compacted afterwards.
    const members = group.members;
    const n = members.length;
    this.#fired += n - 1; // the group's own fire counted one
    group.firing = true;
    try {
      for (let i = 0; i < n; i++) {
        const m = members[i];
        if (m.group === group) this.#guard(m.callback!);
      }
    } finally {
      group.firing = false;
    }
    if (group.removedWhileFiring) {
      group.removedWhileFiring = false;
      group.members = members.filter((m) => m.group === group);
      group.members.forEach((m, i) => m.index = i);
      if (group.members.length === 0) {
        group.node.cancel();
        this.#groups.delete(group.key);
      }
    }
  }

  /**
   * Registers a hook called once after each advance in which any timer fired, after all of
   * them: the place to flush work that timers of the same tick batched up. Returns a function
   * that removes the hook.
   */
  onTickEnd(hook: () => void): () => void {
    this.#tickEndHooks.add(hook);
    return () => this.#tickEndHooks.delete(hook);
  }

  /** Processes every tick up to the clock's present; called by the wheel's own timeout. */
  advance(): void {
    if (this.#advancing || this.#closed) return;
    this.#advancing = true;
    if (this.#handle !== undefined) this.#clock.clearTimeout(this.#handle);
    this.#handle = undefined;
    this.#armedAt = Infinity;
    try {
      const now = this.#sinceEpoch();
      // A wake-up exactly at a tick boundary processes that tick, whatever the float rounding of
      // the clock (otherwise it would re-arm for "now" and spin until the clock moves on).
      const target = Math.floor(now / this.#tickMs + TICK_EPSILON);
      if (this.#size === 0) this.#current = Math.max(this.#current, target);
      while (this.#current < target) {
        if (target - this.#current > SLOTS) {
          // A long gap (the host slept or stalled): jump to the next tick with work.
          const next = this.#nextTick();
          if (next > target) {
            this.#current = target;
            break;
          }
          this.#current = next - 1;
        }
        this.#current++;
        this.#processTick(this.#current, now);
        if (this.#size === 0) this.#current = target;
      }
      if (this.#firedThisAdvance > 0) {
        this.#firedThisAdvance = 0;
        for (const hook of this.#tickEndHooks) this.#guard(hook);
      }
    } finally {
      this.#advancing = false;
      this.#rearm();
    }
  }

  /** Cancels the driving timeout and drops every timer. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#handle !== undefined) this.#clock.clearTimeout(this.#handle);
    this.#handle = undefined;
    for (const sentinel of this.#slots) {
      while (sentinel.next !== sentinel) {
        const node = sentinel.next;
        unlink(node);
        node.cancelled = true;
        node.callback = null;
      }
    }
    this.#size = 0;
    for (const group of this.#groups.values()) {
      for (const m of group.members) {
        m.group = null;
        m.callback = null;
      }
    }
    this.#groups.clear();
    this.#timers = 0;
    this.#oneShots = 0;
    this.#tickEndHooks.clear();
  }

  /** @internal called by a node that unlinked itself */
  _removed(isTimer: boolean): void {
    this.#size--;
    if (isTimer) {
      this.#timers--;
      this.#oneShots--;
    }
    // A wheel left empty keeps its timeout until it fires once and then sleeps; clearing here
    // would make cancel-heavy workloads (most timeouts never fire) churn the host timer.
  }

  #checkOpen(): void {
    if (this.#closed) throw new TypeError("Timer wheel is closed");
  }

  /** The tick a due time (ms since the epoch) falls in. */
  #tickOf(dueMs: number): number {
    return Math.ceil(dueMs / this.#tickMs - TICK_EPSILON);
  }

  /** The clock's reading as ms since the wheel's epoch. */
  #sinceEpoch(): number {
    return this.#clock.now() - this.#epoch;
  }

  #insert(node: TimerNode): void {
    if (node.expiry <= this.#current) node.expiry = this.#current + 1;
    let delta = node.expiry - this.#current;
    if (delta > MAX_DELTA) {
      delta = MAX_DELTA;
      node.expiry = this.#current + MAX_DELTA;
    }
    let level = 0;
    while (delta >= SPAN[level + 1]) level++;
    const index = Math.floor(node.expiry / SPAN[level]) & MASK;
    const sentinel = this.#slots[level * SLOTS + index];
    node.prev = sentinel.prev;
    node.next = sentinel;
    sentinel.prev.next = node;
    sentinel.prev = node;
    node.linked = true;
    this.#size++;
  }

  #processTick(tick: number, now: number): void {
    // Cascade: at each level boundary, move the slot whose time has come one level down.
    for (let level = 1; level < WHEEL_LEVELS; level++) {
      if (tick % SPAN[level] !== 0) break;
      const sentinel = this.#slots[level * SLOTS + (Math.floor(tick / SPAN[level]) & MASK)];
      while (sentinel.next !== sentinel) {
        const node = sentinel.next;
        unlink(node);
        this.#size--;
        this.#insertOrFire(node, tick, now);
      }
    }
    const sentinel = this.#slots[tick & MASK];
    while (sentinel.next !== sentinel) {
      const node = sentinel.next;
      unlink(node);
      this.#size--;
      this.#insertOrFire(node, tick, now);
    }
  }

  #insertOrFire(node: TimerNode, tick: number, now: number): void {
    if (node.expiry > tick) {
      this.#insert(node);
      return;
    }
    const callback = node.callback;
    if (now - node.dueMs > 2 * this.#tickMs) {
      this.#lateFires += node.group ? node.group.members.length : 1;
    }
    if (node.intervalMs > 0) {
      // Next period; periods missed while the host was stalled are skipped, not burst.
      node.dueMs += node.intervalMs;
      if (node.dueMs <= now) {
        node.dueMs += Math.ceil((now - node.dueMs + 1) / node.intervalMs) * node.intervalMs;
      }
      node.expiry = this.#tickOf(node.dueMs);
      this.#insert(node);
    } else {
      node.callback = null;
      this.#timers--;
      this.#oneShots--;
    }
    this.#fired++;
    this.#firedThisAdvance++;
    if (callback) this.#guard(callback);
  }

  #guard(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.#errors++;
      this.#onError(error);
    }
  }

  #nextTick(): number {
    let best = Infinity;
    for (let i = 1; i <= SLOTS; i++) {
      const tick = this.#current + i;
      const sentinel = this.#slots[tick & MASK];
      if (sentinel.next !== sentinel) {
        best = tick;
        break;
      }
    }
    for (let level = 1; level < WHEEL_LEVELS; level++) {
      const base = Math.floor(this.#current / SPAN[level]);
      for (let i = 1; i <= SLOTS; i++) {
        const sentinel = this.#slots[level * SLOTS + ((base + i) & MASK)];
        if (sentinel.next !== sentinel) {
          best = Math.min(best, (base + i) * SPAN[level]);
          break;
        }
      }
    }
    return best;
  }

  #rearm(): void {
    if (this.#advancing || this.#closed) return;
    if (this.#size === 0) return; // sleep; a pending timeout fires once and finds nothing
    const next = this.#nextTick();
    if (next === Infinity) return;
    const at = next * this.#tickMs;
    // Periodic timers alone (heartbeats) do not keep the host process alive; a pending
    // one-shot (a reconnect, a handshake or close timeout) does, like a plain setTimeout.
    const ref = this.#oneShots > 0;
    if (this.#handle !== undefined && at >= this.#armedAt && ref === this.#armedRef) return;
    if (this.#handle !== undefined) this.#clock.clearTimeout(this.#handle);
    this.#armedAt = at;
    this.#armedRef = ref;
    this.#handle = this.#clock.setTimeout(
      () => {
        this.#handle = undefined;
        this.advance();
      },
      Math.max(0, at - this.#sinceEpoch()),
      { ref },
    );
  }
}
