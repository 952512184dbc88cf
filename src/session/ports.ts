/**
 * The narrow interfaces ("ports") a session needs from the node around it. A session imports
 * nothing above src/session/: the messenger implements these ports, and tests can implement
 * them with fakes. `H` is the handle the node knows a session by (its `Connection`).
 *
 * @module
 */

import type { Counters } from "../counters.ts";
import type { HeartlineError } from "../errors.ts";
import type { Limits } from "../options.ts";
import type { Keys } from "../protocol/auth.ts";
import type { Hello, LocalTerms } from "../protocol/handshake.ts";
import { type OutgoingMessage, PRIORITIES, type Priority } from "../protocol/message.ts";
import type { Link } from "../../transports/types.ts";
import type { TimerPort } from "./state.ts";

export type { TimerPort };

/** A message that was queued or written but never acknowledged when its session ended. */
export interface UnsentMessage {
  /** Application-defined message type. */
  readonly type: number;
  /** Its priority. */
  readonly priority: Priority;
  /** Its body. */
  readonly payload: Uint8Array;
}

/** A queued or written message as the application sent it. */
export function toUnsent(m: OutgoingMessage): UnsentMessage {
  return { type: m.type, priority: PRIORITIES[m.priority], payload: m.payload };
}

/** This node, as its sessions present it in handshakes. */
export interface LocalNode {
  /** The node's name. */
  readonly name: string;
  /** This incarnation's nonce. */
  readonly nonce: string;
  /** The Hello fields every session of this node sends (policy and resume fields aside). */
  hello(): Omit<
    Hello,
    | "policy"
    | "inSeq"
    | "resumeNonce"
    | "resumed"
    | "session"
    | "challenge"
    | "proof"
    | "resumeProof"
    | "integrity"
  >;
  /** What this node requires of every peer (checked against each Hello and Welcome). */
  terms(): LocalTerms;
  /** The keys this node authenticates with, or null when it does not authenticate. */
  keys(): Keys | null;
  /** Whether links that protect integrity may carry frames without checksums. */
  readonly skipsChecksums: boolean;
}

/** Where received messages go. */
export interface InboundPort<H> {
  /** One message, in order; `payload` belongs to the receiver. */
  deliver(handle: H, type: number, priority: Priority, payload: Uint8Array, seq: number): void;
  /** A promise to await before this session reads more, when its messages pile up untaken. */
  backpressure(handle: H): Promise<void> | undefined;
  /** Lets a reader waiting on `backpressure()` go on at once (the session began to close). */
  release?(handle: H): void;
}

/** The accepting side's routing: which session a Hello belongs to. */
export interface RoutingPort<S> {
  /**
   * The session that takes the link whose Hello arrived on `from`: `from` itself (a new
   * session), another session (a resume or a restarted peer), or the error that refuses it.
   * `challenge` is the one this side sent on that link (a resume proves its secret over it).
   */
  route(hello: Hello, from: S, challenge: string): S | HeartlineError;
}

/** Dials again for a session whose link failed. */
export interface DialPort {
  /** A new link to `addr`, bounded by the handshake timeout. */
  redial(addr: string): Promise<Link>;
}

/** How a session ended. */
export type SessionEnd =
  | { kind: "close"; by: "local" | "peer"; reason: string }
  | { kind: "reset"; error: Error; unsent: UnsentMessage[]; wasOpen: boolean };

/** What a lossless session reports while it lives. */
export type LosslessEvent =
  | { kind: "disconnect"; error: Error }
  | { kind: "resume"; replayed: number }
  | { kind: "remote-reset"; unacked: UnsentMessage[]; reason: string };

/** What a session tells the node about its life. */
export interface SessionObserver<H> {
  /** The first handshake completed. */
  opened(handle: H): void;
  /** The session ended (closed in order or reset by a fault). */
  ended(handle: H, how: SessionEnd): void;
  /** A handshake-only session handed its link to another session and is gone, quietly. */
  handedOver(handle: H): void;
  /** A lossless session lost its link, resumed, or found its peer reset. */
  lossless(handle: H, event: LosslessEvent): void;
  /** The session now talks to a new incarnation of its peer. */
  reincarnated(handle: H): void;
  /** Bytes arrived: a sign of life. */
  heard(handle: H): void;
  /** A write that had waited for the link completed: the peer's end takes our bytes. */
  delivered(handle: H): void;
  /** A Heartbeat frame arrived (its payload is valid only during the call). */
  heartbeat(handle: H, payload: Uint8Array): void;
  /** A defect (an exception where none was expected): logged loudly, never thrown further. */
  defect(handle: H, error: unknown): void;
}

/** Everything a session needs from its node. */
export interface SessionPorts<H, S> {
  /** The timer wheel. */
  readonly timers: TimerPort;
  /** Limits and timeouts. */
  readonly limits: Limits;
  /** This node. */
  readonly local: LocalNode;
  /** Received messages. */
  readonly inbound: InboundPort<H>;
  /** Routing of accepted links. */
  readonly routing: RoutingPort<S>;
  /** Redials. */
  readonly dialer: DialPort;
  /** Life events. */
  readonly observer: SessionObserver<H>;
  /** Messenger-wide counters this session adds to. */
  readonly counters: Counters;
  /** Uniform numbers in [0, 1) for reconnect jitter (seeded in tests, so runs replay). */
  readonly random: () => number;
}
