/**
 * What makes a session one session across links: its identity (the peer incarnation it
 * belongs to and the session id), its sequence numbers in both directions, the acks, and the
 * replay buffer of a lossless session. The resume decisions live here as plain methods, so
 * they can be tested without links, timers or a node.
 *
 * @module
 */

import { randomHex } from "../_random.ts";
import { FrameError, HandshakeRefusedError, type HeartlineError } from "../errors.ts";
import { printable } from "../protocol/text.ts";
import type { Hello } from "../protocol/handshake.ts";
import {
  decodeMessageHeader,
  type MessageHeader,
  type OutgoingMessage,
} from "../protocol/message.ts";
import { ReplayBuffer } from "./replay_buffer.ts";
import {
  checkResumeProof,
  deriveResumeSecret,
  proveResume,
  type SessionOrigin,
} from "../protocol/auth.ts";

/** What the accepting side does with a Hello that names an existing session's peer. */
export type AdoptDecision =
  /** The Hello resumes this very session: replay from what the peer holds. */
  | { kind: "resume" }
  /** The peer restarted or lost the session: hand back the unacknowledged, start over. */
  | { kind: "reset"; reason: "peer restarted" | "peer lost the session" };

/** What the dialing side does with a Welcome. */
export type WelcomeDecision =
  /** The first Welcome of this session (nothing to resume). */
  | { kind: "first" }
  /** The server kept the session: replay from what it holds. */
  | { kind: "resume" }
  /** The Welcome claims the session resumed but does not prove its secret: refuse it. */
  | { kind: "unproven" }
  /** The server restarted or expired the session: hand back the unacknowledged, start over. */
  | { kind: "reset"; reason: "peer restarted" | "session expired" };

/** A random session id: 16 hex digits. */
export function newSessionId(): string {
  return randomHex(8);
}

/**
 * Identity, sequence numbers and replay of one session.
 *
 * @example
 * ```ts
 * import { SessionSequence } from "./sequence.ts";
 * const s = new SessionSequence(() => false);
 * const m = { type: 1, priority: 1, payload: new Uint8Array(0), seq: s.nextSeq(), bytes: 36 };
 * s.replay.push(m);
 * s.ack(1);
 * if (s.replay.count !== 0 || s.outSeq !== 1) throw new Error("acked");
 * ```
 */
export class SessionSequence {
  /** Written, unacknowledged messages (lossless policies; stays empty when lossy). */
  readonly replay: ReplayBuffer = new ReplayBuffer();
  /** The peer incarnation the session belongs to: set once a handshake completed. */
  peerNonce: string | null = null;
  /**
   * The session's id: chosen by the side that accepted its first link (and anew when the
   * peer turned out not to know the session), carried in every Welcome and in the dialing
   * side's Hello. A resume must name it: the same two incarnations can have had more than one
   * session, and numbers from one mean nothing in another.
   */
  id: string | null = null;
  /**
   * The session's resume secret (lossless), derived by both ends when it began; a resume must
   * prove it (docs/protocol.md, Resume). Never shown, logged or sent.
   */
  #secret: Uint8Array | null = null;
  #outSeq = 0;
  #inSeq = 0;
  #ackSent = 0;
  readonly #isLossy: () => boolean;

  /**
   * A sequence whose policy `isLossy()` tells (no replay and no acks when lossy); asked each
   * time, since the accepting side learns its policy from the Hello.
   */
  constructor(isLossy: () => boolean) {
    this.#isLossy = isLossy;
  }

  /** Highest sequence number written. */
  get outSeq(): number {
    return this.#outSeq;
  }

  /** Highest sequence number received and delivered. */
  get inSeq(): number {
    return this.#inSeq;
  }

  /** Whether a handshake ever completed (a session exists to keep). */
  get established(): boolean {
    return this.peerNonce !== null;
  }

  /** Gives a message its sequence number as it is written. */
  nextSeq(): number {
    return ++this.#outSeq;
  }

  /** Every message just written carried `seq` as its ack. */
  acked(seq: number): void {
    if (!this.#isLossy()) this.#ackSent = seq;
  }

  /**
   * The standalone ack to send after a read, if received messages are not yet acknowledged
   * (one per read at most, so one-way flows still trim the peer's buffer); lossy: never.
   */
  takeAckDue(): number | undefined {
    if (this.#isLossy() || this.#inSeq <= this.#ackSent) return undefined;
    this.#ackSent = this.#inSeq;
    return this.#inSeq;
  }

  /**
   * The peer has everything up to `seq`: trims the replay buffer. An ack beyond the last
   * message written is a protocol error, on every policy.
   */
  ack(seq: number): void {
    if (seq > this.#outSeq) {
      throw new FrameError(
        "unexpected",
        `Ack for seq ${seq} beyond the last sent (${this.#outSeq})`,
      );
    }
    if (!this.#isLossy()) this.replay.ack(seq);
  }

  /**
   * Checks a received Message frame: returns its header if it is the next message, `null` for
   * a replayed duplicate of a lossless session (drop it), and throws `FrameError` for a gap.
   * Nothing is committed: call {@linkcode SessionSequence.received} once it is delivered.
   */
  accept(payload: Uint8Array): MessageHeader | null {
    const h = decodeMessageHeader(payload);
    if (h.seq === this.#inSeq + 1) return h;
    if (h.seq <= this.#inSeq && !this.#isLossy()) return null;
    throw new FrameError(
      "unexpected",
      `Message out of order: expected seq ${this.#inSeq + 1}, got ${h.seq}`,
    );
  }

  /**
   * Checks a received Messages frame of `count` records from `first` on: returns how many of
   * its first records a lossless session already has (replayed duplicates to drop, up to
   * `count`), and throws `FrameError` for a gap. Nothing is committed, as in `accept`.
   */
  acceptRun(first: number, count: number): number {
    const next = this.#inSeq + 1;
    if (first === next) return 0;
    if (first < next && !this.#isLossy()) return Math.min(next - first, count);
    throw new FrameError(
      "unexpected",
      `Messages out of order: expected seq ${next}, got ${first}`,
    );
  }

  /**
   * Commits a delivered message: only a message that reached the application counts as
   * received, so a resumed session asks again for one that failed on the way.
   */
  received(seq: number): void {
    this.#inSeq = seq;
  }

  /** The session began (or began anew) as `origin` says: derive its resume secret. */
  began(dialerKey: string, origin: SessionOrigin): void {
    this.#secret = deriveResumeSecret(dialerKey, origin);
  }

  /** This side's proof of the resume secret for a link with these challenges. */
  resumeProof(
    side: "hello" | "welcome",
    serverChallenge: string,
    clientChallenge: string | undefined,
  ): string | undefined {
    if (this.#secret === null || this.id === null) return undefined;
    return proveResume(this.#secret, side, serverChallenge, clientChallenge, this.id);
  }

  /**
   * Whether `hello` asks to resume this very session: the same peer incarnation, this
   * incarnation and the session's id (all of which an eavesdropper or a guess may know).
   */
  claimsResume(hello: Hello, localNonce: string): boolean {
    return hello.nonce === this.peerNonce && hello.resumeNonce === localNonce &&
      hello.session !== undefined && hello.session === this.id;
  }

  /**
   * Whether `hello`, arriving on a link whose challenge was `serverChallenge`, resumes this
   * session: it claims to, and proves the session's secret over the link's challenges.
   */
  resumes(hello: Hello, localNonce: string, serverChallenge: string): boolean {
    return this.claimsResume(hello, localNonce) && this.#secret !== null &&
      checkResumeProof(
        hello.resumeProof,
        this.#secret,
        "hello",
        serverChallenge,
        hello.challenge,
        this.id!,
      );
  }

  /**
   * Why `hello` may not take over this session, if it may not: one that names this very
   * session must prove its secret (else it is refused and the session stays as it was), and a
   * resume cannot claim to have received more than this side ever sent.
   */
  adoptRefusal(
    hello: Hello,
    localNonce: string,
    serverChallenge: string,
  ): HeartlineError | undefined {
    if (!this.claimsResume(hello, localNonce)) return undefined;
    if (!this.resumes(hello, localNonce, serverChallenge)) {
      return new HandshakeRefusedError(
        "auth",
        `resume of ${printable(hello.name)}'s session without its secret`,
      );
    }
    return this.checkClaim(hello, "Resume");
  }

  /** A resume cannot claim to have received more than this side ever wrote. */
  checkClaim(hello: Hello, what: "Resume" | "Welcome"): FrameError | undefined {
    const claimed = hello.inSeq ?? 0;
    if (claimed <= this.#outSeq) return undefined;
    return new FrameError(
      "unexpected",
      `${what} claims seq ${claimed} received, but only ${this.#outSeq} were sent`,
    );
  }

  /** Accepting side: what a Hello from this session's peer does to the session. */
  decideAdopt(hello: Hello, localNonce: string, serverChallenge: string): AdoptDecision {
    if (this.resumes(hello, localNonce, serverChallenge)) return { kind: "resume" };
    return {
      kind: "reset",
      reason: hello.nonce !== this.peerNonce ? "peer restarted" : "peer lost the session",
    };
  }

  /**
   * Dialing side: what the server's Welcome does to the session, on a link whose challenges
   * were `serverChallenge` and ours.
   */
  decideWelcome(
    welcome: Hello,
    serverChallenge: string,
    clientChallenge: string | undefined,
  ): WelcomeDecision {
    if (this.#isLossy() || !this.established) return { kind: "first" };
    if (welcome.nonce !== this.peerNonce) return { kind: "reset", reason: "peer restarted" };
    if (welcome.resumed === true && welcome.session === this.id) {
      const proven = this.#secret !== null && checkResumeProof(
        welcome.resumeProof,
        this.#secret,
        "welcome",
        serverChallenge,
        clientChallenge,
        welcome.session,
      );
      return proven ? { kind: "resume" } : { kind: "unproven" };
    }
    return { kind: "reset", reason: "session expired" };
  }

  /** Both sides agree the peer has everything up to `peerInSeq`: trim, then replay the rest. */
  resumeFrom(peerInSeq: number): void {
    this.replay.ack(peerInSeq);
    this.replay.rewind();
    this.#ackSent = 0; // re-ack what we hold on the new link
  }

  /**
   * The peer's incarnation or session is gone: numbering starts over and the written,
   * unacknowledged messages are returned, in sequence order.
   */
  reset(): OutgoingMessage[] {
    const unacked = this.replay.takeAll();
    this.#secret = null; // the next session derives its own
    this.#outSeq = 0;
    this.#inSeq = 0;
    this.#ackSent = 0;
    return unacked;
  }
}
