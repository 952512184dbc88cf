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
  decodeMessageHeader,
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
import { LinkReader, type ReaderOwner } from "./link_reader.ts";
import type { SessionPorts, UnsentMessage } from "./ports.ts";
import { ReplayBuffer } from "./replay_buffer.ts";
import { SendQueue } from "./send_queue.ts";
import { type ConnectionState, StateMachine } from "./state.ts";
import { BodyArena, Writer } from "./writer.ts";
import { Close } from "./close.ts";

/** Counters of one session. */
export interface SessionStats {
  /** Messages written (replays excluded). */
  messagesSent: number;
  /** Messages received. */
  messagesReceived: number;
  /** Bytes written, frames included. */
  bytesSent: number;
  /** Bytes read. */
  bytesReceived: number;
  /** Frames written. */
  framesSent: number;
  /** Frames read. */
  framesReceived: number;
  /** Messages written again after a resume. */
  replayed: number;
  /** Replayed messages that had already been delivered and were dropped. */
  duplicatesDropped: number;
}

/** A dial of ours lost a race to the peer's own dial; carries the session to use instead. */
export class SupersededError<H> extends Error {
  /** Creates the error naming the winning session's handle. */
  constructor(readonly winner: H) {
    super("Dial superseded by the peer's own dial");
    this.name = "SupersededError";
  }
}

function deferred<T>(): PromiseWithResolvers<T> {
  const d = Promise.withResolvers<T>();
  d.promise.catch(() => {}); // observed through other paths; never an unhandled rejection
  return d;
}

/** The fixed facts of a session. */
export interface SessionInit<H> {
  /** `client` dialed the first link, `server` accepted it. */
  side: "client" | "server";
  /** This end's policy (the accepting side learns it from the Hello). */
  policy: Policy;
  /** The address dialed, or the peer's address. */
  remoteAddr: string;
  /** What the node knows this session by. */
  handle: H;
}

/** One session: see the module doc. */
export class Session<H> implements ReaderOwner {
  /** What the node knows this session by. */
  readonly handle: H;
  /** The address dialed (client) or the peer's address (server). */
  readonly remoteAddr: string;
  readonly #ports: SessionPorts<H, Session<H>>;
  readonly #sm: StateMachine;
  readonly #queue = new SendQueue();
  readonly #replay = new ReplayBuffer();
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
  #link: Link | null = null;
  #reader: LinkReader | null = null;
  #linkEpoch = 0;
  #peer: Hello | null = null;
  /** The peer incarnation the session belongs to: set once a handshake completed. */
  #sessionPeerNonce: string | null = null;
  /**
   * The session's id: chosen by the side that accepted its first link (and anew when the peer
   * turned out not to know the session), carried in every Welcome and in the dialing side's
   * Hello. A resume needs it: the same two incarnations can have had more than one session.
   */
  #sessionId: string | null = null;
  #outSeq = 0;
  #inSeq = 0;
  #ackSent = 0;
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
    this.#writer = new Writer({
      queue: this.#queue,
      replay: this.#replay,
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
    return this.#linkEpoch;
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
    return this.#replay.count;
  }
  /** Highest sequence number received in this session. */
  get receivedSeq(): number {
    return this.#inSeq;
  }
  /** Highest sequence number written in this session. */
  get sentSeq(): number {
    return this.#outSeq;
  }
  /** The session's id (null on lossy policies and before the first handshake). */
  get id(): string | null {
    return this.#sessionId;
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
    return this.#reader ? this.#link : null;
  }
  /** Whether messages may be written now. */
  get writable(): boolean {
    const s = this.#sm.state;
    return s === "open" || s === "closing";
  }
  /** The highest sequence received, which every written message acknowledges. */
  get ackToSend(): number {
    return this.#inSeq;
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
    if (link !== this.#link && this.#link) this.#writer.schedule(); // a new link meanwhile
    if (this.#close?.done(this.#writer.busy)) this.#finishClose();
  }

  /** The writer failed on `link`. */
  writeFailed(link: Link, error: Error): void {
    if (link === this.#link) this.#fail(error);
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
    this.#link = link;
    this.#linkEpoch++;
    this.#reader = new LinkReader(link, this, this.#ports.limits.maxFrameBytes);
    const ms = this.#ports.limits.handshakeTimeoutMs;
    this.#sm.enter("handshaking", ms, () => {
      this.#fail(new FrameError("handshake-timeout", `Handshake not completed within ${ms} ms`));
    });
    this.#queue.pushControl(BANNER);
    if (this.#side === "client") {
      this.#queue.pushControl(handshakeFrame(Tag.Hello, this.#hello()));
    }
    this.#writer.schedule();
    this.#reader.run();
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
      inSeq: this.#inSeq,
      resumeNonce: this.#sessionPeerNonce,
      session: this.#sessionId,
    });
  }

  /** Stops reading and closes the current link, if any; the session state stays. */
  #detachLink(): void {
    const reader = this.#reader;
    if (reader) reader.stopped = true;
    this.#reader = null;
    this.#queue.dropControl();
    const link = this.#link;
    this.#link = null;
    link?.close();
  }

  // ---- reading (ReaderOwner) ----

  /** @internal one chunk read */
  readChunk(reader: LinkReader, chunk: Uint8Array): Promise<void> | undefined {
    this.#stats.bytesReceived += chunk.length;
    this.#ports.counters.bytesReceived += chunk.length;
    this.#arena.readLength = chunk.length;
    this.#ports.observer.heard(this.handle);
    reader.decode(chunk);
    if (!this.#policy.lossy && this.#inSeq > this.#ackSent && this.#sm.state === "open") {
      // One standalone ack per read at most, so one-way flows still trim the peer's buffer.
      this.#ackSent = this.#inSeq;
      this.sendControl(encodeFrame(Tag.Ack, encodeAck(this.#inSeq)));
    }
    return this.#ports.inbound.backpressure();
  }

  /** @internal one frame read */
  readFrame(reader: LinkReader, tag: TagValue, payload: Uint8Array): void {
    if (reader !== this.#reader || this.#sm.state === "closed" || this.#refusal) return;
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

  /** @internal the link's stream ended */
  readEnded(reader: LinkReader): void {
    if (reader !== this.#reader) return;
    if (this.#close?.sent) {
      this.#finishClose();
      return;
    }
    this.#fail(
      new ConnectionClosedError(`Peer ${this.remoteAddr} closed the link without a Close frame`),
    );
  }

  /** @internal reading failed (transport error or bad bytes) */
  readFailed(reader: LinkReader, error: Error): void {
    if (reader === this.#reader) this.#fail(error);
  }

  /** @internal a defect on the read path: reported, and the session ends */
  defect(error: unknown): void {
    this.#ports.observer.defect(this.handle, error);
    try {
      this.#end(error instanceof Error ? error : new Error(String(error)));
    } catch { /* already reported */ }
  }

  #onMessage(payload: Uint8Array): void {
    const h = decodeMessageHeader(payload);
    if (h.seq !== this.#inSeq + 1) {
      if (h.seq <= this.#inSeq && !this.#policy.lossy) {
        this.#stats.duplicatesDropped++; // a replay of something already delivered
        return;
      }
      throw new FrameError(
        "unexpected",
        `Message out of order: expected seq ${this.#inSeq + 1}, got ${h.seq}`,
      );
    }
    if (h.ack > 0 && !this.#policy.lossy) this.#onAck(h.ack);
    const body = this.#arena.copy(payload, MESSAGE_HEADER_BYTES);
    this.#ports.inbound.deliver(this.handle, h.type, PRIORITIES[h.priority], body, h.seq);
    // Committed only once delivered: a message that failed on the way is not counted as
    // received, so a resumed session asks for it again.
    this.#inSeq = h.seq;
    this.#stats.messagesReceived++;
    this.#ports.counters.messagesReceived[h.priority]++;
  }

  /** The peer has everything up to `seq`. */
  #onAck(seq: number): void {
    if (seq > this.#outSeq) {
      throw new FrameError(
        "unexpected",
        `Ack for seq ${seq} beyond the last sent (${this.#outSeq})`,
      );
    }
    if (this.#policy.lossy) return;
    this.#replay.ack(seq);
    this.#writer.schedule(); // room in the replay buffer may let queued messages go
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
    return ++this.#outSeq;
  }

  /** Every written message carried this ack. */
  acked(seq: number): void {
    if (!this.#policy.lossy) this.#ackSent = seq;
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
    this.#sessionPeerNonce = hello.nonce;
    if (!this.#policy.lossy) this.#sessionId = newSessionId();
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
    const hadSession = this.#sessionPeerNonce !== null;
    const restarted = hadSession && hello.nonce !== this.#sessionPeerNonce;
    const resumed = !this.#policy.lossy && hadSession && !restarted && hello.resumed === true &&
      hello.session === this.#sessionId;
    if (resumed && (hello.inSeq ?? 0) > this.#outSeq) {
      throw new FrameError(
        "unexpected",
        `Welcome claims seq ${hello.inSeq} received, but only ${this.#outSeq} were sent`,
      );
    }
    this.#peer = hello;
    if (!this.#policy.lossy && hadSession) {
      if (resumed) this.#resumeFrom(hello.inSeq ?? 0);
      else this.#remoteReset(restarted ? "peer restarted" : "session expired");
    }
    this.#sessionPeerNonce = hello.nonce;
    this.#sessionId = hello.session ?? null;
    this.#attempt = 0;
    this.#sm.enter("open");
    if (first) {
      this.#ports.observer.opened(this.handle);
      this.#opened.resolve();
    } else if (resumed) {
      this.#ports.observer.lossless(this.handle, { kind: "resume", replayed: this.#replay.count });
    } else if (restarted) {
      this.#ports.observer.reincarnated(this.handle);
    }
    this.#writer.schedule();
  }

  /** A handshake-only session hands its link and reader to the session it resumes. */
  #handOver(target: Session<H>, hello: Hello): void {
    const reader = this.#reader!;
    this.#reader = null;
    this.#link = null;
    this.#sm.enter("closed");
    this.#ports.observer.handedOver(this.handle);
    this.#closed.resolve();
    target.adopt(reader, hello);
  }

  /** Whether `hello` resumes this very session (not only one between the same incarnations). */
  #resumes(hello: Hello): boolean {
    return hello.nonce === this.#sessionPeerNonce &&
      hello.resumeNonce === this.#ports.local.nonce &&
      hello.session !== undefined && hello.session === this.#sessionId;
  }

  /**
   * Checks, before anything changes, whether a Hello may take over this session: a resume
   * cannot claim to have received more than this side ever sent.
   */
  checkAdopt(hello: Hello): FrameError | undefined {
    if (this.#resumes(hello) && (hello.inSeq ?? 0) > this.#outSeq) {
      return new FrameError(
        "unexpected",
        `Resume claims seq ${hello.inSeq} received, but only ${this.#outSeq} were sent`,
      );
    }
    return undefined;
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
    const resumed = this.#resumes(hello);
    const restarted = hello.nonce !== this.#sessionPeerNonce;
    if (resumed) {
      this.#resumeFrom(hello.inSeq ?? 0);
    } else {
      this.#remoteReset(restarted ? "peer restarted" : "peer lost the session");
      this.#sessionId = newSessionId(); // a new session starts on this link
    }
    this.#peer = hello;
    this.#sessionPeerNonce = hello.nonce;
    reader.owner = this;
    this.#reader = reader;
    this.#link = reader.link;
    this.#linkEpoch++;
    this.#queue.pushControl(handshakeFrame(Tag.Welcome, { ...this.#hello(), resumed }));
    if (this.#sm.state === "open") this.#sm.enter("standby");
    this.#sm.enter("open");
    if (resumed) {
      this.#ports.observer.lossless(this.handle, { kind: "resume", replayed: this.#replay.count });
    } else if (restarted) {
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

  /** Both sides agree the peer has everything up to `peerInSeq`: trim, then replay the rest. */
  #resumeFrom(peerInSeq: number): void {
    this.#replay.ack(peerInSeq);
    this.#replay.rewind();
    this.#ackSent = 0; // re-ack what we hold on the new link
  }

  /** The peer's incarnation or session is gone: what it had not acknowledged is handed back. */
  #remoteReset(reason: string): void {
    const unacked = this.#replay.takeAll().map(unsent);
    this.#outSeq = 0;
    this.#inSeq = 0;
    this.#ackSent = 0;
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
    const action = this.#sessionPeerNonce === null || state === "closing" ||
        error instanceof HandshakeRefusedError
      ? "end"
      : this.#policy.onFault(this.#side);
    if (action === "end") {
      this.#end(error);
      return;
    }
    this.#error = error;
    this.#detachLink();
    this.#replay.rewind();
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
    const wasOpen = (state !== "connecting" && state !== "handshaking") ||
      this.#sessionPeerNonce !== null;
    this.#error = error;
    const unsentMessages = [...this.#replay.takeAll(), ...this.#queue.drain()].map(unsent);
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

/** A random session id: 16 hex digits. */
function newSessionId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function unsent(m: OutgoingMessage): UnsentMessage {
  return { type: m.type, priority: PRIORITIES[m.priority] as Priority, payload: m.payload };
}
