/**
 * The connection state machine: states, legal transitions as data, and the one timer that
 * belongs to the current state (a handshake timeout, a redial backoff, a standby expiry, a
 * close timeout). Entering any state cancels the previous state's timer, so no timer outlives
 * the state it was armed for. See docs/state-machine.md.
 *
 * @module
 */

/** The states of a connection. */
export type ConnectionState =
  | "connecting"
  | "handshaking"
  | "open"
  | "standby"
  | "reconnecting"
  | "closing"
  | "closed";

/**
 * Every legal transition: the state machine written as data. `docs/state-machine.md` shows the
 * same table and a test checks that the two agree.
 */
export const CONNECTION_TRANSITIONS: Readonly<
  Record<ConnectionState, readonly ConnectionState[]>
> = Object.freeze({
  connecting: ["handshaking", "open", "reconnecting", "closed"],
  handshaking: ["open", "reconnecting", "closed"],
  open: ["closing", "standby", "reconnecting", "closed"],
  standby: ["open", "closed"],
  reconnecting: ["connecting", "open", "closed"],
  closing: ["closed"],
  closed: [],
});

/** A cancellable timer, as the timer wheel hands them out. */
export interface StateTimer {
  /** Cancels it; a no-op once fired or cancelled. */
  cancel(): void;
}

/** Where the state machine gets its timers: the messenger's wheel. */
export interface TimerPort {
  /** Calls `callback` once, `delayMs` from now. */
  schedule(delayMs: number, callback: () => void): StateTimer;
}

/** A transition the table does not allow: a defect in heartline, never the peer's fault. */
export class IllegalTransitionError extends Error {
  /** Creates the error naming both states. */
  constructor(from: ConnectionState, to: ConnectionState) {
    super(`Illegal connection transition: ${from} -> ${to}`);
    this.name = "IllegalTransitionError";
  }
}

/**
 * One connection's state and the timer of that state.
 *
 * @example
 * ```ts
 * import { StateMachine } from "./state.ts";
 * let fired = 0;
 * const timers = { schedule: (_ms: number, fn: () => void) => ({ cancel: () => {}, fn }) };
 * const sm = new StateMachine(timers);
 * sm.enter("handshaking", 5000, () => fired++);
 * sm.enter("open");
 * if (sm.state !== "open" || fired !== 0) throw new Error("unexpected");
 * ```
 */
export class StateMachine {
  #state: ConnectionState = "connecting";
  #timer: StateTimer | null = null;
  #timers: TimerPort;

  /** A machine in `connecting`, taking its timers from `timers`. */
  constructor(timers: TimerPort) {
    this.#timers = timers;
  }

  /** The current state. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** Whether `to` is a legal next state. */
  can(to: ConnectionState): boolean {
    return CONNECTION_TRANSITIONS[this.#state].includes(to);
  }

  /**
   * Moves to `to`, cancelling the timer of the state left; with `timeoutMs`, arms the new
   * state's timer, which calls `onTimeout` unless the state is left first. Throws
   * {@linkcode IllegalTransitionError} for a transition the table does not allow.
   */
  enter(to: ConnectionState, timeoutMs?: number, onTimeout?: () => void): void {
    if (!this.can(to)) throw new IllegalTransitionError(this.#state, to);
    this.#timer?.cancel();
    this.#timer = null;
    this.#state = to;
    if (timeoutMs !== undefined && onTimeout) this.rearm(timeoutMs, onTimeout);
  }

  /** Replaces the current state's timer (a standby whose expiry starts over, for example). */
  rearm(timeoutMs: number, onTimeout: () => void): void {
    this.#timer?.cancel();
    const timer = this.#timers.schedule(timeoutMs, () => {
      if (this.#timer !== timer) return;
      this.#timer = null;
      onTimeout();
    });
    this.#timer = timer;
  }

  /** Cancels the current state's timer, if any (the state stays). */
  disarm(): void {
    this.#timer?.cancel();
    this.#timer = null;
  }
}
