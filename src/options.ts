/**
 * The numeric limits of a messenger, resolved once from its options: every default comes from
 * src/defaults.ts, every value is checked here.
 *
 * @module
 */

import * as defaults from "./defaults.ts";

/** The limits and timeouts that sessions, the dialer and the registry read. */
export interface Limits {
  /** Largest frame payload, in bytes. */
  readonly maxFrameBytes: number;
  /** Per-connection send queue limit in bytes before `send()` waits. */
  readonly maxQueueBytes: number;
  /** Received messages held for `messages()` before reading pauses. */
  readonly maxInboundMessages: number;
  /** Time a new link has to finish its handshake (and a dial to connect). */
  readonly handshakeTimeoutMs: number;
  /** Time an orderly close waits for the peer. */
  readonly closeTimeoutMs: number;
  /** Lossless policies: bytes of written, unacknowledged messages kept for replay. */
  readonly maxUnackedBytes: number;
  /** `statefulServer`: how long a session waits in standby for its client. */
  readonly sessionTimeoutMs: number;
  /** Lossless redial: first delay; it doubles per failed try. */
  readonly reconnectBaseMs: number;
  /** Lossless redial: longest delay (before jitter). */
  readonly reconnectMaxMs: number;
  /** How long a refused handshake blocks redialing the same address. */
  readonly refusedRetryMs: number;
}

/**
 * A positive finite number, or the fallback when the option is absent.
 *
 * @example
 * ```ts
 * import { positive } from "./options.ts";
 * if (positive("x", undefined, 5) !== 5) throw new Error("fallback");
 * ```
 */
export function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new RangeError(`Option ${name} must be a positive number: ${value}`);
  }
  return value;
}

/**
 * Limits from partial options: defaults for what is missing, `RangeError` for what is not a
 * positive number.
 *
 * @example
 * ```ts
 * import { resolveLimits } from "./options.ts";
 * if (resolveLimits({ closeTimeoutMs: 10 }).closeTimeoutMs !== 10) throw new Error("kept");
 * ```
 */
export function resolveLimits(o: Partial<Limits>): Limits {
  return {
    maxFrameBytes: positive("maxFrameBytes", o.maxFrameBytes, defaults.MAX_FRAME_BYTES),
    maxQueueBytes: positive("maxQueueBytes", o.maxQueueBytes, defaults.MAX_QUEUE_BYTES),
    maxInboundMessages: positive(
      "maxInboundMessages",
      o.maxInboundMessages,
      defaults.MAX_INBOUND_MESSAGES,
    ),
    handshakeTimeoutMs: positive(
      "handshakeTimeoutMs",
      o.handshakeTimeoutMs,
      defaults.HANDSHAKE_TIMEOUT_MS,
    ),
    closeTimeoutMs: positive("closeTimeoutMs", o.closeTimeoutMs, defaults.CLOSE_TIMEOUT_MS),
    maxUnackedBytes: positive("maxUnackedBytes", o.maxUnackedBytes, defaults.MAX_UNACKED_BYTES),
    sessionTimeoutMs: positive("sessionTimeoutMs", o.sessionTimeoutMs, defaults.SESSION_TIMEOUT_MS),
    reconnectBaseMs: positive("reconnectBaseMs", o.reconnectBaseMs, defaults.RECONNECT_BASE_MS),
    reconnectMaxMs: positive("reconnectMaxMs", o.reconnectMaxMs, defaults.RECONNECT_MAX_MS),
    refusedRetryMs: positive("refusedRetryMs", o.refusedRetryMs, defaults.REFUSED_RETRY_MS),
  };
}
