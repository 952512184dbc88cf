/**
 * One session with one peer: its state machine, send queue, replay buffer and links. The
 * handshake lives in handshake.ts and the writer in writer.ts; this file holds the life of a
 * session: attaching links, reading, faults, resume and close. It talks to the node only
 * through the ports in ports.ts.
 *
 * @module
 */

import { ConnectionClosedError, FrameError, HandshakeRefusedError } from "../errors.ts";
import { decodeAck, decodeClose, encodeAck } from "../protocol/control.ts";
import { BANNER, encodeFrame, Tag, type TagValue } from "../protocol/frame.ts";
import type { Hello } from "../protocol/handshake.ts";
import {
  MESSAGE_HEADER_BYTES,
  messageFrameBytes,
  type OutgoingMessage,
  PRIORITIES,
  type Priority,
} from "../protocol/message.ts";
import type { Policy } from "../policy.ts";
import type { Link } from "../../transports/types.ts";
import {
  handshakeFrame,
  type HandshakeTarget,
  helloFor,
  processHandshakeFrame,
} from "./handshake.ts";
import type { LinkReader } from "./link_reader.ts";
import { LinkSlot } from "./link_slot.ts";
import type { SessionPorts, UnsentMessage } from "./ports.ts";
import { newSessionId, SessionSequence } from "./sequence.ts";
import { SendQueue } from "./send_queue.ts";
import { type ConnectionState, StateMachine } from "./state.ts";
import { BodyArena, Writer } from "./writer.ts";
import { Close } from "./close.ts";
import { deferred, type SessionInit, type SessionStats, SupersededError } from "./types.ts";

export { type SessionInit, type SessionStats, SupersededError } from "./types.ts";

/** One session: see the module doc. */
export class Session<H> {
  /** What the node knows this session by. */
  readonly handle: H;
  /** The address dialed (client) or the peer's address (server). */
  readonly remoteAddr: string;
  readonly #ports: SessionPorts<H, Session<H>>;
  readonly #sm: StateMachine;
  readonly #queue = new SendQueue();
  readonly #seq: SessionSequence;
  readonly #writer: Writer;
  readonly #arena = new BodyArena();
  readonly #stats: SessionStats = {
    messagesSent: 0,
    messagesReceived: 0,
    bytesSent: 0,
    bytesReceived: 0,
    framesSent: 0,
    framesReceived: 0,
    replayed: 0,
    duplicatesDropped: 0,
  };
  #side: "client" | "server";
  #policy: Policy;
  readonly #slot: LinkSlot;
  #peer: Hello | null = null;
  #attempt = 0;
  #close: Close | null = null; // exists only while closing
  #refusal: HandshakeRefusedError | null = null; // handshaking: Refuse queued, fail once written
  #error: Error | null = null;
  #opened = deferred<void>();
  #closed = deferred<void>();

  /** A session in `connecting`; `attach()` gives it a link. */
  constructor(ports: SessionPorts<H, Session<H>>, init: SessionInit<H>) {
    this.#ports = ports;
    this.handle = init.handle;
    this.#side = init.side;
    this.#policy = init.policy;
    this.remoteAddr = init.remoteAddr;
    this.#sm = new StateMachine(ports.timers);
    this.#seq = new SessionSequence(() => this.#policy.lossy);
    this.#slot = new LinkSlot({
      chunk: (bytes) => this.#onChunk(bytes),
      frame: (tag, payload) => this.#onFrame(tag, payload),
      chunkDone: () => this.#onChunkDone(),
      ended: () => this.#onEnded(),
      failed: (error) => this.#fail(error),
      defect: (error) => this.#defect(error),
    }, ports.limits.maxFrameBytes);
    this.#writer = new Writer({
      queue: this.#queue,
      replay: this.#seq.replay,
      stats: this.#stats,
      counters: ports.counters,
      limits: ports.limits,
      session: this,
    });
  }

  // ---- read-only views ----

  /** Current state. */
  get state(): ConnectionState {
    return this.#sm.state;
  }
  /** Which end dialed the current link. */
  get side(): "client" | "server" {
    return this.#side;
  }
  /** This end's policy. */
  get policy(): Policy {
    return this.#policy;
  }
  /** The peer's last Hello or Welcome. */
  get peer(): Hello | null {
    return this.#peer;
  }
  /** The error that ended the session, if it ended by a fault. */
  get error(): Error | null {
    return this.#error;
  }
  /** Which link the session is on (1 for the first, +1 per new link). */
  get linkEpoch(): number {
    return this.#slot.epoch;
  }
  /** Bytes of messages queued and not yet written. */
  get queuedBytes(): number {
    return this.#queue.bytes;
  }
  /** Messages queued and not yet written. */
  get queuedMessages(): number {
    return this.#queue.messages;
  }
  /** Messages written and not yet acknowledged (lossless policies). */
  get unackedMessages(): number {
    return this.#seq.replay.count;
  }
  /** Highest sequence number received in this session. */
  get receivedSeq(): number {
    return this.#seq.inSeq;
  }
  /** Highest sequence number written in this session. */
  get sentSeq(): number {
    return this.#seq.outSeq;
  }
  /** The session's id (null on lossy policies and before the first handshake). */
  get id(): string | null {
    return this.#seq.id;
  }
  /** Largest frame payload this session's node accepts or sends. */
  get maxFrameBytes(): number {
    return this.#ports.limits.maxFrameBytes;
  }
  /** A snapshot of the counters. */
  get stats(): Readonly<SessionStats> {
    return { ...this.#stats };
  }
  /** The current link, for the writer. */
  get link(): Link | null {
    return this.#slot.link;
  }
  /** Whether messages may be written now. */
  get writable(): boolean {
    const s = this.#sm.state;
    return s === "open" || s === "closing";
  }
  /** The highest sequence received, which every written message acknowledges. */
  get ackToSend(): number {
    return this.#seq.inSeq;
  }
  /** Resolves when the first handshake completes; rejects with the error if it fails. */
  opened(): Promise<void> {
    return this.#opened.promise;
  }
  /** Resolves when the session has reached `closed`, whatever the cause. */
  closed(): Promise<void> {
    return this.#closed.promise;
  }

  // ---- sending ----

  /**
   * Queues a message (the facade has checked its arguments). Resolves at once while the
   * queue is under its limit, otherwise once it drains below it.
   */
  send(type: number, priority: number, payload: Uint8Array, signal?: AbortSignal): Promise<void> {
    const s = this.#sm.state;
    if (s === "closing" || s === "closed") return Promise.reject(this.closedError());
    // Lossless sessions accept messages while reconnecting or in standby: they wait here.
    this.#queue.push({ type, priority, payload, seq: 0 }, messageFrameBytes(payload));
    this.#writer.schedule();
    return this.#queue.waitForRoom(this.#ports.limits.maxQueueBytes, signal);
  }

  /** Queues an encoded control frame ahead of all data (heartbeats, acks). */
  sendControl(frame: Uint8Array): void {
    if (this.#sm.state !== "open") return;
    this.#queue.pushControl(frame);
    this.#writer.schedule();
  }

  /** The error a call on a closed session rejects with. */
  closedError(): ConnectionClosedError {
    return new ConnectionClosedError(`Connection to ${this.remoteAddr} is closed`, {
      cause: this.#error ?? undefined,
    });
  }

  // ---- closing ----

  /**
   * Closes in order: queued messages are written first, then a Close frame; resolves when the
   * peer has answered (or the close timeout passed). A session that is not open ends at once.
   */
  close(reason: string): Promise<void> {
    const s = this.#sm.state;
    if (s === "closed" || s === "closing") return this.#closed.promise;
    if (s !== "open") {
      // Not connected (handshake, reconnecting, standby): nothing to exchange Close with.
      this.#end(new ConnectionClosedError(`Connection closed before it was open: ${reason}`));
    } else {
      this.#startClosing(reason, "local");
    }
    return this.#closed.promise;
  }

  /** Ends the session at once: no Close frame; queued and unacknowledged messages are unsent. */
  abort(error: Error): void {
    this.#end(error);
  }

  #startClosing(reason: string, by: "local" | "peer"): void {
    this.#close = new Close(reason, by);
    this.#sm.enter("closing", this.#ports.limits.closeTimeoutMs, () => this.#finishClose());
    this.#queue.failWaiters(() => this.closedError());
    this.#writer.schedule();
  }

  /** The writer wrote our Close frame, or wants to know whether it should. */
  takeCloseFrame(): Uint8Array | undefined {
    if (this.#close === null || this.#close.sent || this.#queue.bytes > 0) return undefined;
    this.#close.sent = true;
    return this.#close.frame();
  }

  /** Whether the writer has a Close frame to write. */
  get closePending(): boolean {
    return this.#close !== null && !this.#close.sent && this.#queue.bytes === 0;
  }

  /** The writer finished a pass: settle what waited on it. */
  written(link: Link): void {
    if (this.#refusal) {
      this.#fail(this.#refusal);
      return;
    }
    const current = this.#slot.link;
    if (current && link !== current) this.#writer.schedule(); // a new link meanwhile
    if (this.#close?.done(this.#writer.busy)) this.#finishClose();
  }

  /** The writer failed on `link`. */
  writeFailed(link: Link, error: Error): void {
    if (link === this.#slot.link) this.#fail(error);
  }

  #finishClose(): void {
    if (this.#sm.state === "closed") return;
    const close = this.#close!;
    this.#detachLink();
    this.#sm.enter("closed");
    this.#ports.observer.ended(this.handle, { kind: "close", by: close.by, reason: close.reason });
    this.#opened.reject(this.closedError());
    this.#closed.resolve();
  }

  // ---- links ----

  /** Attaches a link (a first dial, a redial, or an accepted link) and starts the handshake. */
  attach(link: Link): void {
    this.#slot.attach(link);
    const ms = this.#ports.limits.handshakeTimeoutMs;
    this.#sm.enter("handshaking", ms, () => {
      this.#fail(new FrameError("handshake-timeout", `Handshake not completed within ${ms} ms`));
    });
    this.#queue.pushControl(BANNER);
    if (this.#side === "client") {
      this.#queue.pushControl(handshakeFrame(Tag.Hello, this.#hello()));
    }
    this.#writer.schedule();
    this.#slot.start();
  }

  /** The dial failed (or was aborted) before a link existed. */
  dialFailed(error: Error): void {
    this.#fail(error);
  }

  /** The accepting side takes the policy that answers the client's. */
  assumePolicy(policy: Policy): void {
    this.#policy = policy;
  }

  /** This side's Hello (or Welcome body) for the current link. */
  #hello(): Hello {
    return helloFor(this.#ports.local, this.#policy, this.#side, {
      inSeq: this.#seq.inSeq,
      resumeNonce: this.#seq.peerNonce,
      session: this.#seq.id,
    });
  }

  /** Stops reading and closes the current link, if any; the session state stays. */
  #detachLink(): void {
    this.#slot.detach();
    this.#queue.dropControl();
  }

  // ---- reading (what the link slot reports) ----

  #onChunk(bytes: number): void {
    this.#stats.bytesReceived += bytes;
    this.#ports.counters.bytesReceived += bytes;
    this.#arena.readLength = bytes;
    this.#ports.observer.heard(this.handle);
  }

  #onChunkDone(): Promise<void> | undefined {
    const ack = this.#sm.state === "open" ? this.#seq.takeAckDue() : undefined;
    if (ack !== undefined) this.sendControl(encodeFrame(Tag.Ack, encodeAck(ack)));
    return this.#ports.inbound.backpressure();
  }

  #onFrame(tag: TagValue, payload: Uint8Array): void {
    if (this.#sm.state === "closed" || this.#refusal) return;
    this.#stats.framesReceived++;
    this.#ports.counters.framesReceived[tag]++;
    if (this.#sm.state === "handshaking") {
      processHandshakeFrame(this.#handshake(), tag, payload);
      return;
    }
    switch (tag) {
      case Tag.Message:
        this.#onMessage(payload);
        return;
      case Tag.Heartbeat:
        this.#ports.observer.heartbeat(this.handle, payload);
        return;
      case Tag.Ack:
        this.#onAck(decodeAck(payload));
        return;
      case Tag.Close:
        this.#onClose(payload);
        return;
      default:
        throw new FrameError("unexpected", `Unexpected frame tag ${tag} in an open session`);
    }
  }

  #onEnded(): void {
    if (this.#close?.sent) {
      this.#finishClose();
      return;
    }
    this.#fail(
      new ConnectionClosedError(`Peer ${this.remoteAddr} closed the link without a Close frame`),
    );
  }

  /** A defect on the read path: reported, and the session ends. */
  #defect(error: unknown): void {
    this.#ports.observer.defect(this.handle, error);
    try {
      this.#end(error instanceof Error ? error : new Error(String(error)));
    } catch { /* already reported */ }
  }

  #onMessage(payload: Uint8Array): void {
    const h = this.#seq.accept(payload);
    if (h === null) {
      this.#stats.duplicatesDropped++; // a replay of something already delivered
      return;
    }
    if (h.ack > 0 && !this.#policy.lossy) this.#onAck(h.ack);
    const body = this.#arena.copy(payload, MESSAGE_HEADER_BYTES);
    this.#ports.inbound.deliver(this.handle, h.type, PRIORITIES[h.priority], body, h.seq);
    this.#seq.received(h.seq); // only once delivered (see SessionSequence.received)
    this.#stats.messagesReceived++;
    this.#ports.counters.messagesReceived[h.priority]++;
  }

  /** The peer has everything up to `seq`. */
  #onAck(seq: number): void {
    this.#seq.ack(seq);
    if (!this.#policy.lossy) this.#writer.schedule(); // room in the replay buffer lets more go
  }

  #onClose(payload: Uint8Array): void {
    if (this.#sm.state === "open") {
      this.#startClosing(decodeClose(payload), "peer");
      this.#close!.received = true;
      return;
    }
    if (this.#close) this.#close.received = true;
    if (this.#close?.done(this.#writer.busy)) this.#finishClose();
  }

  // ---- sequence numbers, for the writer ----

  /** Gives a queued message its sequence number as it is written. */
  nextSeq(): number {
    return this.#seq.nextSeq();
  }

  /** Every written message carried this ack. */
  acked(seq: number): void {
    this.#seq.acked(seq);
  }

  // ---- the handshake (see handshake.ts) ----

  #handshake(): HandshakeTarget<Session<H>> {
    return {
      side: this.#side,
      policy: this.#policy,
      ports: this.#ports,
      self: this,
      refuse: (refusal, frame) => {
        this.#refusal = refusal;
        this.#queue.pushControl(frame);
        this.#writer.schedule();
      },
      accept: (hello) => this.#accepted(hello),
      welcomed: (hello) => this.#welcomed(hello),
      handOver: (target, hello) => this.#handOver(target, hello),
    };
  }

  /** Server side: a new session's Hello was accepted. */
  #accepted(hello: Hello): void {
    this.#peer = hello;
    this.#seq.peerNonce = hello.nonce;
    if (!this.#policy.lossy) this.#seq.id = newSessionId();
    const welcome: Hello = { ...this.#hello(), inSeq: 0 };
    if (!this.#policy.lossy) welcome.resumed = false;
    this.#queue.pushControl(handshakeFrame(Tag.Welcome, welcome));
    this.#sm.enter("open");
    this.#ports.observer.opened(this.handle);
    this.#opened.resolve();
    this.#writer.schedule();
  }

  /** Client side: the server's Welcome arrived (first connect or a resume). */
  #welcomed(hello: Hello): void {
    const first = this.#peer === null;
    const decision = this.#seq.decideWelcome(hello);
    if (decision.kind === "resume") {
      const lie = this.#seq.checkClaim(hello, "Welcome");
      if (lie) throw lie;
    }
    this.#peer = hello;
    if (decision.kind === "resume") this.#seq.resumeFrom(hello.inSeq ?? 0);
    if (decision.kind === "reset") this.#remoteReset(decision.reason);
    this.#seq.peerNonce = hello.nonce;
    this.#seq.id = hello.session ?? null;
    this.#attempt = 0;
    this.#sm.enter("open");
    if (first) {
      this.#ports.observer.opened(this.handle);
      this.#opened.resolve();
    } else if (decision.kind === "resume") {
      this.#ports.observer.lossless(this.handle, {
        kind: "resume",
        replayed: this.#seq.replay.count,
      });
    } else if (decision.kind === "reset" && decision.reason === "peer restarted") {
      this.#ports.observer.reincarnated(this.handle);
    }
    this.#writer.schedule();
  }

  /** A handshake-only session hands its link and reader to the session it resumes. */
  #handOver(target: Session<H>, hello: Hello): void {
    const reader = this.#slot.release();
    this.#sm.enter("closed");
    this.#ports.observer.handedOver(this.handle);
    this.#closed.resolve();
    target.adopt(reader, hello);
  }

  /**
   * Checks, before anything changes, whether a Hello may take over this session: a resume
   * cannot claim to have received more than this side ever sent.
   */
  checkAdopt(hello: Hello): FrameError | undefined {
    if (!this.#seq.resumes(hello, this.#ports.local.nonce)) return undefined;
    return this.#seq.checkClaim(hello, "Resume");
  }

  /**
   * A resuming (or restarted) peer's link joins this session: the accepting side of a
   * lossless session, or a lossless peer whose own redial is pending or in flight (that redial
   * is dropped; the peer's link wins).
   */
  adopt(reader: LinkReader, hello: Hello): void {
    this.#detachLink(); // whatever link the session had: dead, half-open, or our redial
    this.#side = "server";
    this.#attempt = 0;
    const decision = this.#seq.decideAdopt(hello, this.#ports.local.nonce);
    if (decision.kind === "resume") {
      this.#seq.resumeFrom(hello.inSeq ?? 0);
    } else {
      this.#remoteReset(decision.reason);
      this.#seq.id = newSessionId(); // a new session starts on this link
    }
    this.#peer = hello;
    this.#seq.peerNonce = hello.nonce;
    this.#slot.adopt(reader);
    const resumed = decision.kind === "resume";
    this.#queue.pushControl(handshakeFrame(Tag.Welcome, { ...this.#hello(), resumed }));
    if (this.#sm.state === "open") this.#sm.enter("standby");
    this.#sm.enter("open");
    if (resumed) {
      this.#ports.observer.lossless(this.handle, {
        kind: "resume",
        replayed: this.#seq.replay.count,
      });
    } else if (decision.reason === "peer restarted") {
      this.#ports.observer.reincarnated(this.handle);
    }
    this.#writer.schedule();
  }

  /**
   * A dial of ours lost a race to the peer's own dial: end quietly (no events); the caller's
   * `connect()` resolves to the winning session instead.
   */
  supersede(winner: H): void {
    if (this.#sm.state === "closed") return;
    this.#detachLink();
    this.#sm.enter("closed");
    this.#ports.observer.handedOver(this.handle);
    this.#opened.reject(new SupersededError(winner));
    this.#closed.resolve();
  }

  /** The peer's incarnation or session is gone: what it had not acknowledged is handed back. */
  #remoteReset(reason: string): void {
    const unacked = this.#seq.reset().map(unsent);
    this.#ports.observer.lossless(this.handle, { kind: "remote-reset", unacked, reason });
  }

  // ---- faults ----

  /**
   * A fault. Without a session (before the first handshake completed), after a refusal, while
   * closing, or under a lossy policy, the session ends. Otherwise the policy decides: the side
   * that dialed redials after a capped exponential backoff with jitter, the other waits in
   * standby for at most `sessionTimeoutMs`.
   */
  #fail(error: Error): void {
    const state = this.#sm.state;
    if (state === "closed") return;
    const action = !this.#seq.established || state === "closing" ||
        error instanceof HandshakeRefusedError
      ? "end"
      : this.#policy.onFault(this.#side);
    if (action === "end") {
      this.#end(error);
      return;
    }
    this.#error = error;
    this.#detachLink();
    this.#seq.replay.rewind();
    const limits = this.#ports.limits;
    if (action === "reconnect") {
      const base = limits.reconnectBaseMs * 2 ** Math.min(this.#attempt++, 16);
      const delay = Math.min(limits.reconnectMaxMs, base) * (0.5 + this.#ports.random() / 2);
      this.#sm.enter("reconnecting", delay, () => this.#redial());
    } else {
      const expire = () =>
        this.#end(
          new ConnectionClosedError(
            `Session with ${this.#peer?.name} expired after ${limits.sessionTimeoutMs} ms in standby`,
          ),
        );
      if (state === "standby") this.#sm.rearm(limits.sessionTimeoutMs, expire);
      else this.#sm.enter("standby", limits.sessionTimeoutMs, expire);
    }
    if (state === "open") this.#ports.observer.lossless(this.handle, { kind: "disconnect", error });
  }

  async #redial(): Promise<void> {
    this.#sm.enter("connecting");
    let link: Link;
    try {
      link = await this.#ports.dialer.redial(this.remoteAddr);
    } catch (error) {
      if (this.#sm.state === "connecting") this.#fail(error as Error);
      return;
    }
    if (this.#sm.state !== "connecting") { // closed, or the peer's own link was adopted
      link.close();
      return;
    }
    this.attach(link);
  }

  /** Ends the session for good: reports unacknowledged and queued messages as unsent. */
  #end(error: Error): void {
    const state = this.#sm.state;
    if (state === "closed") return;
    const wasOpen = (state !== "connecting" && state !== "handshaking") || this.#seq.established;
    this.#error = error;
    const unsentMessages = [...this.#seq.reset(), ...this.#queue.drain()].map(unsent);
    this.#detachLink();
    this.#sm.enter("closed");
    this.#queue.failWaiters(() => this.closedError());
    this.#ports.observer.ended(this.handle, {
      kind: "reset",
      error,
      unsent: unsentMessages,
      wasOpen,
    });
    this.#opened.reject(error);
    this.#closed.resolve();
  }
}

function unsent(m: OutgoingMessage): UnsentMessage {
  return { type: m.type, priority: PRIORITIES[m.priority] as Priority, payload: m.payload };
}
