/**
 * The options of a messenger, and its numeric limits resolved once from them: every default
 * comes from src/defaults.ts, every value is checked here.
 *
 * @module
 */

import * as defaults from "./defaults.ts";
import type { HeartbeatSettings } from "./protocol/handshake.ts";
import type { Logger } from "./log.ts";
import type { Clock } from "./timer/clock.ts";
import type { Transport } from "../transports/types.ts";

/** Options of `Messenger`. */
export interface MessengerOptions {
  /** This node's name, sent in the handshake. Default: `node-` and a random suffix. */
  name?: string;
  /** Cluster id; peers with another id are refused. Default `heartline`. */
  cluster?: string;
  /** Transports by scheme. Default: TCP only. */
  transports?: Transport[];
  /** Time source for the timer wheel; inject a `ManualClock` in tests. */
  clock?: Clock;
  /** Timer wheel tick in ms (its accuracy bound). Default 5. */
  tickMs?: number;
  /** Heartbeat settings; every node of a cluster must use the same. */
  heartbeat?: Partial<HeartbeatSettings>;
  /** Largest frame payload, in bytes. Default 16 MiB. */
  maxFrameBytes?: number;
  /** Per-connection send queue limit in bytes before `send()` waits. Default 8 MiB. */
  maxQueueBytes?: number;
  /** Received messages of one connection not yet taken before it stops reading. Default 10,000. */
  maxInboundMessages?: number;
  /**
   * Bytes of received bodies of one connection not yet taken by `messages()` before that
   * connection stops reading (the others read on). Default 8 MiB.
   */
  maxInboundBytes?: number;
  /** Time a new link has to finish its handshake (and a dial to connect). Default 5 s. */
  handshakeTimeoutMs?: number;
  /** Time an orderly close waits for the peer. Default 5 s. */
  closeTimeoutMs?: number;
  /** Where log lines go. Default: warnings and errors to stderr. */
  logger?: Logger;
  /**
   * After a peer refused our handshake, `connect()` to that address fails at once (with the
   * same error) for this long instead of redialing: no retry storm. Default 60 s.
   */
  refusedRetryMs?: number;
  /** Lossless policies: bytes of written, unacknowledged messages kept for replay. Default 8 MiB. */
  maxUnackedBytes?: number;
  /** Connections held at most; an accepted link beyond it is closed at once. Default 16,384. */
  maxConnections?: number;
  /** Accepted links in their handshake at most; more are closed at once. Default 256. */
  maxPendingHandshakes?: number;
  /**
   * A link that carries nothing at all for this long (heartbeats count) is treated as lost: a
   * lossy session resets, a lossless one reconnects. Default 60 s.
   */
  idleTimeoutMs?: number;
  /** `statefulServer`: how long a session waits in standby for its client. Default 30 s. */
  sessionTimeoutMs?: number;
  /** `losslessClient`: first reconnect delay; it doubles per failed try. Default 50 ms. */
  reconnectBaseMs?: number;
  /** `losslessClient`: longest reconnect delay (before jitter). Default 5 s. */
  reconnectMaxMs?: number;
  /**
   * Uniform numbers in [0, 1) for reconnect jitter. Default `Math.random`; tests inject a
   * seeded source (with a `ManualClock`) so that a schedule replays exactly.
   */
  random?: () => number;
}

/** The limits and timeouts that sessions, the dialer and the registry read. */
export interface Limits {
  /** Largest frame payload, in bytes. */
  readonly maxFrameBytes: number;
  /** Per-connection send queue limit in bytes before `send()` waits. */
  readonly maxQueueBytes: number;
  /** Received messages held for `messages()` before reading pauses. */
  readonly maxInboundMessages: number;
  /** Received bytes held per connection before its reading pauses. */
  readonly maxInboundBytes: number;
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
  /** Connections held at most. */
  readonly maxConnections: number;
  /** Accepted links in their handshake at most. */
  readonly maxPendingHandshakes: number;
  /** Silence after which a link is treated as lost. */
  readonly idleTimeoutMs: number;
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
    maxInboundBytes: positive("maxInboundBytes", o.maxInboundBytes, defaults.MAX_INBOUND_BYTES),
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
    maxConnections: positive("maxConnections", o.maxConnections, defaults.MAX_CONNECTIONS),
    maxPendingHandshakes: positive(
      "maxPendingHandshakes",
      o.maxPendingHandshakes,
      defaults.MAX_PENDING_HANDSHAKES,
    ),
    idleTimeoutMs: positive("idleTimeoutMs", o.idleTimeoutMs, defaults.IDLE_TIMEOUT_MS),
  };
}
