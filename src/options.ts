/**
 * The options of a messenger, and its numeric limits resolved once from them: every default
 * comes from src/defaults.ts, every value is checked here.
 *
 * @module
 */

import * as defaults from "./defaults.ts";
import type { Keys } from "./protocol/auth.ts";
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
  /**
   * Per-connection send queue limit in bytes before `send()` waits; beyond twice it `send()`
   * rejects with `QueueFullError`, except that an empty queue takes a message of any size up
   * to `maxFrameBytes`. Default 256 KiB.
   */
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
   * Authentication: this node proves its name with a key and accepts only peers that prove
   * theirs. `key` is one cluster-wide key (every member can then claim any member's name);
   * `keyring` maps node names to per-node keys (a node proves only its own name), and takes
   * precedence over `key` for the names it lists. Both sides must authenticate, or neither.
   */
  auth?: AuthOptions;
  /**
   * Whether frames carry their checksum even on links that protect integrity themselves (TLS,
   * QUIC). Default false: when both ends of a link say in the handshake that it
   * does, Message frames skip the checksum after the handshake, as msgr2's secure mode does.
   */
  checksumSecureLinks?: boolean;
  /**
   * Allows `listen()` on an address beyond loopback without authentication. Default false:
   * such a listener would let anyone who reaches it join.
   */
  insecure?: boolean;
  /**
   * Uniform numbers in [0, 1) for reconnect jitter. Default `Math.random`; tests inject a
   * seeded source (with a `ManualClock`) so that a schedule replays exactly.
   */
  random?: () => number;
}

/** Keys a messenger authenticates with (see `MessengerOptions.auth`). */
export interface AuthOptions {
  /** One key for the whole cluster. */
  key?: string;
  /** Per-node keys, by node name. */
  keyring?: Record<string, string>;
}

/**
 * The keys of node `name`, or null without authentication; `TypeError` when the options give
 * it no key of its own.
 *
 * @example
 * ```ts
 * import { resolveKeys } from "./options.ts";
 * const keys = resolveKeys("a", { keyring: { a: "ka", b: "kb" } });
 * if (keys?.own !== "ka" || keys.keyFor("b") !== "kb" || keys.keyFor("c")) throw new Error("keys");
 * ```
 */
export function resolveKeys(name: string, auth: AuthOptions | undefined): Keys | null {
  if (!auth) return null;
  const ring = new Map(Object.entries(auth.keyring ?? {}));
  const own = ring.get(name) ?? auth.key;
  if (!own) {
    throw new TypeError(`Option auth gives node ${name} no key: set auth.key or auth.keyring`);
  }
  return { own, keyFor: (peer) => ring.get(peer) ?? auth.key };
}

/**
 * Throws `TypeError` when a messenger without keys is about to listen beyond loopback and was
 * not told `insecure: true`.
 */
export function checkListen(addr: string, keys: Keys | null, insecure: boolean): void {
  if (keys || insecure) return;
  const host = /^[a-z]+:\/\/(\[[^\]]*\]|[^:/]*)/i.exec(addr)?.[1]?.replace(/^\[|\]$/g, "");
  const loopback = host === undefined || host === "localhost" || host === "::1" ||
    /^127\./.test(host) || addr.startsWith("mem:");
  if (!loopback) {
    throw new TypeError(
      `Listening on ${addr} lets anyone who reaches it join: set auth, or insecure: true`,
    );
  }
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
