/**
 * Typed errors: one class for each condition a caller is expected to catch.
 *
 * @module
 */

/**
 * The base class of every error heartline raises on purpose: catch `HeartlineError` to tell
 * them from defects and from errors of your own code.
 *
 * @example
 * ```ts
 * import { FrameError, HeartlineError } from "./errors.ts";
 * if (!(new FrameError("checksum", "bad") instanceof HeartlineError)) throw new Error("base");
 * ```
 */
export class HeartlineError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "HeartlineError";
  }
}

/**
 * A frame or handshake on the wire was malformed: bad banner, unknown tag, oversized length,
 * corrupt checksum, truncated input, or a frame out of protocol order. The connection that
 * carried it is closed; nothing else is affected.
 *
 * @example
 * ```ts
 * import { FrameError } from "./errors.ts";
 * const err = new FrameError("checksum", "Frame checksum mismatch: expected 1, got 2");
 * if (err.reason !== "checksum") throw new Error("unexpected");
 * ```
 */
export class FrameError extends HeartlineError {
  /** Machine-readable reason, stable across versions. */
  readonly reason: FrameErrorReason;
  /** Creates the error with its reason and a human-readable message. */
  constructor(reason: FrameErrorReason, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "FrameError";
    this.reason = reason;
  }
}

/** Why a {@linkcode FrameError} was raised. */
export type FrameErrorReason =
  | "banner"
  | "unknown-tag"
  | "oversize"
  | "checksum"
  | "truncated"
  | "malformed"
  | "unexpected"
  | "handshake-timeout";

/**
 * The peer (or this node) refused the handshake, for example because the protocol versions or
 * the heartbeat settings differ. `field` names what differed.
 *
 * @example
 * ```ts
 * import { HandshakeRefusedError } from "./errors.ts";
 * const err = new HandshakeRefusedError("version", "Protocol version differs: local 1, peer 2");
 * if (err.field !== "version") throw new Error("unexpected");
 * ```
 */
export class HandshakeRefusedError extends HeartlineError {
  /** The setting that differed (`"version"`, `"cluster"`, `"heartbeat.intervalMs"`, ...). */
  readonly field: string;
  /** This side's value of the field, when known. */
  readonly local?: unknown;
  /** The peer's value of the field, when known. */
  readonly peer?: unknown;
  /** Creates the error naming the field that differed (and both values, when known). */
  constructor(
    field: string,
    message: string,
    options?: ErrorOptions & { local?: unknown; peer?: unknown },
  ) {
    super(message, options);
    this.name = "HandshakeRefusedError";
    this.field = field;
    if (options && "local" in options) this.local = options.local;
    if (options && "peer" in options) this.peer = options.peer;
  }
}

/**
 * An operation was attempted on a connection (or messenger) that is closed or was reset.
 *
 * @example
 * ```ts
 * import { ConnectionClosedError } from "./errors.ts";
 * const err = new ConnectionClosedError("Connection is closed: tcp://127.0.0.1:1");
 * if (err.name !== "ConnectionClosedError") throw new Error("unexpected");
 * ```
 */
export class ConnectionClosedError extends HeartlineError {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConnectionClosedError";
  }
}

/**
 * The transport failed: the link was cut, reset or refused by the operating system.
 *
 * @example
 * ```ts
 * import { TransportError } from "./errors.ts";
 * const err = new TransportError("Link cut");
 * if (err.name !== "TransportError") throw new Error("unexpected");
 * ```
 */
export class TransportError extends HeartlineError {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TransportError";
  }
}

/**
 * Something did not happen in time: a dial, a handshake, a session that never came back.
 * `timeoutMs` is the bound that passed.
 *
 * @example
 * ```ts
 * import { TimeoutError } from "./errors.ts";
 * const err = new TimeoutError("Dial to tcp://127.0.0.1:1 timed out", 5000);
 * if (err.timeoutMs !== 5000) throw new Error("unexpected");
 * ```
 */
export class TimeoutError extends HeartlineError {
  /** The bound that passed, in ms. */
  readonly timeoutMs: number;
  /** Creates the error. */
  constructor(message: string, timeoutMs: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "TimeoutError";
    this.timeoutMs = timeoutMs;
  }
}

/**
 * A send that would grow a connection's queue past its hard cap (twice `maxQueueBytes`): the
 * sender did not wait for the `send()` promises that told it to slow down. The message is not
 * queued; everything queued before it stays. An empty queue takes a message of any size up to
 * `maxFrameBytes`, so a message larger than the cap is refused only while others wait.
 *
 * @example
 * ```ts
 * import { QueueFullError } from "./errors.ts";
 * const err = new QueueFullError("Send queue full", 2048);
 * if (err.limitBytes !== 2048) throw new Error("unexpected");
 * ```
 */
export class QueueFullError extends HeartlineError {
  /** The hard cap that was reached, in bytes. */
  readonly limitBytes: number;
  /** Creates the error. */
  constructor(message: string, limitBytes: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "QueueFullError";
    this.limitBytes = limitBytes;
  }
}

/**
 * A dial reached a node other than the one the caller expected (`connect(addr, { expectName })`):
 * the address now belongs to another node, or someone answers in its name.
 *
 * @example
 * ```ts
 * import { UnexpectedPeerError } from "./errors.ts";
 * const err = new UnexpectedPeerError("bravo", "mallory");
 * if (err.expected !== "bravo" || err.actual !== "mallory") throw new Error("unexpected");
 * ```
 */
export class UnexpectedPeerError extends HeartlineError {
  /** The name the caller expected. */
  readonly expected: string;
  /** The name the peer gave (undefined if it gave none). */
  readonly actual: string | undefined;
  /** Creates the error naming both. */
  constructor(expected: string, actual: string | undefined, options?: ErrorOptions) {
    super(`Expected peer ${expected}, reached ${actual ?? "an unnamed peer"}`, options);
    this.name = "UnexpectedPeerError";
    this.expected = expected;
    this.actual = actual;
  }
}

/**
 * A connection cannot write a message it holds: its body was detached (its buffer transferred),
 * or is a view of a resizable buffer that changed length, after `send()`, which `send()`'s
 * contract forbids; found before the message was written, or written again after a reconnect.
 * What came before the message is written; then the connection ends with this error in its
 * `reset` event rather than reconnecting, since a new link would fail the same way. The event's
 * `unsent` hands back the message, everything queued after it and, for a lossless policy,
 * everything unacknowledged. No Close frame goes out: a lossless peer keeps its side in standby
 * until its session timeout. A batch whose encoding fails (an allocation that fails) ends the
 * connection with this error too; a lossy session loses that batch, as it loses a failed write.
 *
 * @example
 * ```ts
 * import { UnwritableMessageError } from "./errors.ts";
 * const err = new UnwritableMessageError("Body detached after send()");
 * if (err.name !== "UnwritableMessageError") throw new Error("unexpected");
 * ```
 */
export class UnwritableMessageError extends HeartlineError {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "UnwritableMessageError";
  }
}
