// Internal: the nodes of the timer wheel (one-shot and group entries in the slot lists) and the
// handles of periodic timers that share a group. See timer_wheel.ts.

/** A scheduled timer; `cancel()` removes it in O(1). */
export interface Timer {
  /** Stops the timer; a no-op if it already fired (one-shot) or was cancelled. */
  cancel(): void;
  /** Whether the timer will still fire. */
  readonly active: boolean;
}

/** What a node or handle tells its wheel. */
export interface WheelHooks {
  /** A linked node removed itself (`isTimer`: a one-shot, not a group's entry). */
  _removed(isTimer: boolean): void;
  /** A periodic handle leaves its group. */
  _leave(timer: PeriodicTimer): void;
}

export class TimerNode implements Timer {
  prev: TimerNode = this;
  next: TimerNode = this;
  linked = false;
  cancelled = false;
  /** Set when this node drives a group of periodic timers. */
  group: PeriodicGroup | null = null;
  constructor(
    public wheel: WheelHooks | null,
    public expiry: number,
    /** When it is due, in ms since the wheel's epoch (offsets keep aligned phases exact). */
    public dueMs: number,
    public intervalMs: number,
    public callback: (() => void) | null,
  ) {}
  get active(): boolean {
    return !this.cancelled && (this.linked || this.intervalMs > 0);
  }
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    if (this.linked) {
      unlink(this);
      this.wheel?._removed(this.group === null);
    }
    this.callback = null;
  }
}

/**
 * Periodic timers with the same interval and phase share one wheel entry: firing them is a
 * walk over an array, and each costs a small handle instead of a wheel node. Aligned phases
 * (the default) make this the common case, and are what lets OOB parts coalesce.
 */
export class PeriodicGroup {
  members: PeriodicTimer[] = [];
  node!: TimerNode;
  /** True while its members fire: removals then only mark, and compact afterwards. */
  firing = false;
  removedWhileFiring = false;
  constructor(readonly key: string) {}
}

export class PeriodicTimer implements Timer {
  index = 0;
  constructor(
    public group: PeriodicGroup | null,
    public callback: (() => void) | null,
    readonly wheel: WheelHooks,
  ) {}
  get active(): boolean {
    return this.group !== null;
  }
  cancel(): void {
    if (this.group) this.wheel._leave(this);
  }
}

export function unlink(node: TimerNode): void {
  node.prev.next = node.next;
  node.next.prev = node.prev;
  node.prev = node.next = node;
  node.linked = false;
}
