/**
 * Types of the out-of-band layer that sessions and connections need: a leaf module (it imports
 * nothing), so the layers below the OOB service can name them without importing it.
 *
 * @module
 */

/**
 * What a producer returns to say "the same bytes as last time" without building them again:
 * the part repeats its last bytes (on a link where they already travelled, as a 2-byte
 * reference). Before a producer has returned any bytes it means "nothing this time".
 */
export const OOB_UNCHANGED: unique symbol = Symbol("heartline.oob.unchanged");

/**
 * Returns the bytes to carry in this heartbeat, {@linkcode OOB_UNCHANGED} for the same as
 * last time, or `undefined`/`null` to skip this time. Called from the timer wheel, once per
 * due interval; must not block. Bytes equal to the last part on the link travel as a short
 * reference whatever the producer returns; handlers see the bytes either way.
 */
export type OobProducer = () => Uint8Array | typeof OOB_UNCHANGED | undefined | null;

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
  /** Parts sent as a 2-byte "same as before" reference instead of their bytes. */
  readonly partsRepeated: number;
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
