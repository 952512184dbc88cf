/**
 * Types of the out-of-band layer that sessions and connections need: a leaf module (it imports
 * nothing), so the layers below the OOB service can name them without importing it.
 *
 * @module
 */

/**
 * Returns the bytes to carry in this heartbeat, or `undefined`/`null` to skip this time.
 * Called from the timer wheel, once per due interval; must not block.
 */
export type OobProducer = () => Uint8Array | undefined | null;

/** Options of `Connection.registerOob`. */
export interface OobOptions {
  /** How often the producer is asked for a part, in ms (at least one wheel tick). */
  intervalMs: number;
}

/**
 * A live registration; `cancel()` stops it at once, even if it is due in this tick.
 * `await using reg = conn.registerOob(...)` cancels it at the end of the scope.
 */
export interface OobRegistration {
  /** The op. */
  readonly op: string;
  /** Its interval. */
  readonly intervalMs: number;
  /** Whether it is still registered. */
  readonly active: boolean;
  /** Stops it. */
  cancel(): void;
  /** Stops it (for `using`). */
  [Symbol.dispose](): void;
  /** Stops it (for `await using`). */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Counters of the OOB layer, per messenger. */
export interface OobStats {
  /** Heartbeat frames sent. */
  readonly heartbeatFramesSent: number;
  /** Heartbeat frames received. */
  readonly heartbeatFramesReceived: number;
  /** Bytes of heartbeat frames sent (preamble included). */
  readonly heartbeatBytesSent: number;
  /** OOB parts sent, by op. */
  readonly partsSent: ReadonlyMap<string, number>;
  /** OOB parts received, by op. */
  readonly partsReceived: ReadonlyMap<string, number>;
  /** Producers or handlers that threw (or whose promise rejected). */
  readonly errors: number;
  /** Parts received for an op with no handler. */
  readonly unhandled: number;
  /** Live registrations. */
  readonly registrations: number;
}

/** What the OOB service needs of a connection. */
export interface OobLink {
  /** Heartbeats go out only on open connections. */
  readonly state: string;
  /** Per-link state (the op dictionaries) starts afresh when this changes. */
  readonly linkEpoch: number;
  /** Queues a control frame ahead of data. */
  sendControl(frame: Uint8Array): void;
}
