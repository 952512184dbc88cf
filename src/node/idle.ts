/**
 * The idle timeout: a connection whose link carried nothing at all (not even a heartbeat) for
 * `idleTimeoutMs` is treated as lost, the way a half-open TCP connection or a peer that hung
 * must be. One periodic wheel timer checks every connection; each read only records a time.
 *
 * @module
 */

import type { Connection } from "../connection.ts";
import type { Timer, TimerWheel } from "../timer/timer_wheel.ts";

/**
 * Watches connections for silence.
 *
 * @example
 * ```ts ignore
 * const idle = new IdleWatch(wheel, 60_000, (conn) => sessionOf(conn).fault(error));
 * idle.heard(conn, wheel.clock.now()); // on every read
 * ```
 */
export class IdleWatch {
  readonly #last = new Map<Connection, number>();
  readonly #wheel: TimerWheel;
  readonly #idleMs: number;
  readonly #onIdle: (conn: Connection, silentMs: number) => void;
  #timer: Timer | null = null;

  /** A watch that calls `onIdle` for a connection silent for more than `idleMs`. */
  constructor(
    wheel: TimerWheel,
    idleMs: number,
    onIdle: (conn: Connection, silentMs: number) => void,
  ) {
    this.#wheel = wheel;
    this.#idleMs = idleMs;
    this.#onIdle = onIdle;
  }

  /** Bytes arrived on `conn` at `now` (called per read). */
  heard(conn: Connection, now: number): void {
    this.#last.set(conn, now);
    this.#timer ??= this.#wheel.every(
      Math.max(this.#wheel.tickMs, Math.floor(this.#idleMs / 4)),
      () => this.#check(),
    );
  }

  /** `conn` is gone. */
  forget(conn: Connection): void {
    this.#last.delete(conn);
    if (this.#last.size === 0) {
      this.#timer?.cancel();
      this.#timer = null;
    }
  }

  #check(): void {
    const now = this.#wheel.clock.now();
    for (const [conn, at] of this.#last) {
      const silent = now - at;
      if (silent > this.#idleMs && conn.state === "open") {
        this.#last.set(conn, now); // one fault per silence
        this.#onIdle(conn, silent);
      }
    }
  }
}
