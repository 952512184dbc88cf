/**
 * One session with one peer: its state machine, queues, links and faults. It talks to the node
 * only through the ports in ports.ts; the handshake, writer and receiver are their own files.
 *
 * @module
 */

import {
  ConnectionClosedError,
  FrameError,
  type HandshakeRefusedError,
  type HeartlineError,
  TimeoutError,
} from "../errors.ts";
import { decodeAck, decodeClose, encodeAckFrame } from "../protocol/control.ts";
import { BANNER, Tag, type TagValue } from "../protocol/frame.ts";
import { type Hello, MAX_HANDSHAKE_BYTES } from "../protocol/handshake.ts";
import { messageFrameBytes, MESSAGES_FRAME_BYTES } from "../protocol/message.ts";
import type { Counters } from "../counters.ts";
import type { Limits } from "../options.ts";
import type { Policy } from "../policy.ts";
import type { Link } from "../../transports/types.ts";
import {
  challengeFrame,
  type HandshakeTarget,
  helloFor,
  processAdoptedHello,
  processHandshakeFrame,
} from "./handshake.ts";
import type { LinkReader } from "./link_reader.ts";
import { type LinkEvents, LinkSlot } from "./link_slot.ts";
import { Deferred } from "../_deferred.ts";
import { type InboundPort, type SessionPorts, toUnsent } from "./ports.ts";
import { planFault, redial, standbyExpired } from "./recovery.ts";
import { SessionSequence } from "./sequence.ts";
import { SendQueue } from "./send_queue.ts";
import { type ConnectionState, StateMachine } from "./state.ts";
import { Writer, type WriterParts } from "./writer.ts";
import { Receiver, type ReceiverParts } from "./receiver.ts";
import { Close } from "./close.ts";
import { newSessionStats, type SessionInit, type SessionStats, SupersededError } from "./types.ts";

/** Longest wait for a transport to send what it buffered before an orderly close ends. */
const FLUSH_ON_CLOSE_MS = 2_000;

export { type SessionInit, type SessionStats, SupersededError } from "./types.ts";

/** One session: see the module doc. */
export class Session<H> {
  /** What the node knows this session by. */
  readonly handle: H;
  /** The address dialed (client) or the peer's address (server). */
  readonly remoteAddr: string;
  readonly #ports: SessionPorts<H, Session<H>>;
  readonly #sm: StateMachine;
  /** The send queue (the connection reads its sizes; only the session changes it). */
  readonly queue: SendQueue = new SendQueue();
  /** Identity, numbers and replay buffer (read by the connection; changed by the session). */
  readonly sequence: SessionSequence;
  readonly #writer: Writer;
  readonly #receiver: Receiver<H>;
  readonly #stats: SessionStats = newSessionStats();
  #side: "client" | "server";
  #policy: Policy;
  readonly #slot: LinkSlot;
  /**
   * What the handshake code sees of this session (two dozen closures): made when a handshake
   * needs it and dropped once the session is open, so an idle session does not hold it.
   */
  #handshake: HandshakeTarget<Session<H>> | null = null;
  get #target(): HandshakeTarget<Session<H>> {
    return this.#handshake ??= this.#handshakeTarget();
  }
  #peer: Hello | null = null;
  #attempt = 0;
  #close: Close | null = null; // exists only while closing
  #refusal: HandshakeRefusedError | null = null; // handshaking: Refuse queued, fail once written
  #error: Error | null = null;
  #opened = new Deferred<void>();
  #closed = new Deferred<void>();

  /** A session in `connecting`; `attach()` gives it a link. */
  constructor(ports: SessionPorts<H, Session<H>>, init: SessionInit<H>) {
    this.#ports = ports;
    this.handle = init.handle;
    this.#side = init.side;
    this.#policy = init.policy;
    this.remoteAddr = init.remoteAddr;
    this.#sm = new StateMachine(ports.timers);
    this.sequence = new SessionSequence(() => this.#policy.lossy);
    const wiring = new Session.#Wiring(this);
    this.#receiver = new Receiver(wiring);
    this.#slot = new LinkSlot(wiring, ports.limits.maxFrameBytes);
    this.#writer = new Writer(wiring);
  }

  /**
   * What a session's parts (its link slot, receiver and writer) work with and call back: one
   * object per session whose methods all sessions share, where a closure per callback would
   * cost each idle session about 900 bytes of heap more (and heap counts about three times
   * over in resident memory: docs/operations.md).
   */
  static readonly #Wiring = class Wiring<H> implements LinkEvents, ReceiverParts<H>, WriterParts {
    readonly handle: H;
    readonly seq: SessionSequence;
    readonly stats: SessionStats;
    readonly counters: Counters;
    readonly inbound: InboundPort<H>;
    readonly queue: SendQueue;
    readonly limits: Limits;

    constructor(readonly session: Session<H>) {
      this.handle = session.handle;
      this.seq = session.sequence;
      this.stats = session.#stats;
      this.counters = session.#ports.counters;
      this.inbound = session.#ports.inbound;
      this.queue = session.queue;
      this.limits = session.#ports.limits;
    }

    // The receiver's callbacks.
    ack(seq: number): void {
      this.session.#onAck(seq);
    }
    lossy(): boolean {
      return this.session.#policy.lossy;
    }

    // The link slot's events.
    chunk(bytes: number): void {
      this.session.#receiver.chunk(bytes);
    }
    frame(tag: TagValue, payload: Uint8Array, owned: boolean): void {
      this.session.#onFrame(tag, payload, owned);
    }
    chunkDone(): Promise<void> | undefined {
      return this.session.#onChunkDone();
    }
    heard(): void {
      // (Told after the chunk's frames: one of them may have ended the session.)
      const s = this.session;
      if (s.#sm.state !== "closed") s.#ports.observer.heard(s.handle);
    }
    ended(): void {
      this.session.#onEnded();
    }
    failed(error: Error): void {
      this.session.#fail(error);
    }
    defect(error: unknown): void {
      this.session.defect(error);
    }

    // The writer's views.
    closing(): Close | null {
      return this.session.#close;
    }
    messageFlags(): number {
      return this.session.#slot.messageFlags;
    }
    batchLimit(): number {
      return this.session.#slot.batchLimit;
    }
  };

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
    return this.#sm.state === "open" || this.#sm.state === "closing";
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
   * queue is under its limit, otherwise once it drains below it; rejects past the hard cap.
   */
  send(type: number, priority: number, payload: Uint8Array, signal?: AbortSignal): Promise<void> {
    const s = this.#sm.state;
    if (s === "closing" || s === "closed") return Promise.reject(this.closedError());
    const limit = this.#ports.limits.maxQueueBytes, size = messageFrameBytes(payload);
    const full = this.queue.overCap(size, limit);
    if (full) return Promise.reject(full);
    // Lossless sessions accept messages while reconnecting or in standby: they wait here.
    this.queue.push({ type, priority, payload, seq: 0, bytes: size });
    this.#writer.schedule();
    return this.queue.waitForRoom(limit, signal);
  }

  /** Queues an encoded control frame ahead of all data (heartbeats, acks). */
  sendControl(frame: Uint8Array): void {
    if (!this.writable) return; // open, or closing (acks and heartbeats go on until the end)
    this.queue.pushControl(frame);
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
    // Not connected (handshake, reconnecting, standby): nothing to exchange Close with.
    if (s === "open") this.#startClosing(reason, "local");
    else this.#end(new ConnectionClosedError(`Connection closed before it was open: ${reason}`));
    return this.#closed.promise;
  }

  /** The link failed (it went silent, for one): the policy decides what follows. */
  fault(error: Error): void {
    this.#fail(error);
  }

  /** Ends the session at once: no Close frame; queued and unacknowledged messages are unsent. */
  abort(error: Error): void {
    this.#end(error);
  }

  #startClosing(reason: string, by: "local" | "peer"): void {
    this.#close = new Close(reason, by);
    this.#sm.enter("closing", this.#ports.limits.closeTimeoutMs, () => this.#closeTimedOut());
    // A send() waiting for room has its message queued already: it goes before our Close,
    // so the send succeeded (were the close to fail, the message comes back as unsent).
    this.queue.releaseWaiters();
    // A reader paused because the application stopped taking messages must read on: the
    // peer's Acks and Close are what this close waits for.
    this.#ports.inbound.release?.(this.handle);
    this.#writer.schedule();
  }

  /** A write that waited for the link completed: the peer's end is taking our bytes. */
  delivered(link: Link): void {
    if (link === this.#slot.link) this.#ports.observer.delivered(this.handle);
  }

  /** The writer finished a pass: settle what waited on it. */
  written(link: Link): void {
    if (this.#refusal) return this.#fail(this.#refusal);
    const current = this.#slot.link;
    if (current && link !== current) this.#writer.schedule(); // a new link meanwhile
    this.#closeIfDone();
  }

  /** The writer failed on `link`. */
  writeFailed(link: Link, error: Error): void {
    if (link === this.#slot.link) this.#fail(error);
  }

  /**
   * Acknowledges everything received so far (lossless policies; nothing when all is acked).
   * After each read, and at once when the peer's Close arrives, since its close waits for it.
   */
  #ackAll(): void {
    const ack = this.sequence.takeAckDue();
    if (ack !== undefined) this.sendControl(encodeAckFrame(ack));
  }

  /** Finishes the orderly close once it is complete (see `Close.done`). */
  #closeIfDone(): void {
    if (this.#close?.done(this.#writing(), this.#unacked())) this.#finishClose();
  }

  /**
   * The close timeout passed. Without unacknowledged messages the close ends in order (a
   * silent peer's Close is not waited for longer); with some, they may not have arrived: the
   * session ends as a fault and hands them back.
   */
  #closeTimedOut(): void {
    const unacked = this.#unacked(), queued = this.queue.bytes;
    // Still writing (a final Ack, say): closing the write side now could cut it off.
    if (unacked === 0 && queued === 0 && !this.#writing() && this.#close?.sent) {
      return this.#finishClose();
    }
    this.#end(
      new TimeoutError(
        `Close timed out with ${unacked} message(s) unacknowledged by ${this.remoteAddr} ` +
          `and ${queued} byte(s) of messages not written`,
        this.#ports.limits.closeTimeoutMs,
      ),
    );
  }

  /** Whether anything is being written or waits to be: a queued control frame goes first. */
  #writing(): boolean {
    return this.#writer.busy || this.queue.hasControl;
  }

  /** Messages the peer has not acknowledged (always 0 on lossy policies, which keep none). */
  #unacked(): number {
    return this.#policy.lossy ? 0 : this.sequence.replay.count;
  }

  #finishClose(): void {
    if (this.#sm.state === "closed") return;
    const close = this.#close!;
    // A transport that buffers writes in this process gets to send our last frames (and our
    // Close) before the link closes, within a bound: else a process that exits right after
    // close() would lose them, and the peer would see the link end before our Close.
    const flushing = close.sent ? this.#slot.link?.flush?.() : undefined;
    this.#sm.enter("closed");
    this.#ports.observer.ended(this.handle, { kind: "close", by: close.by, reason: close.reason });
    this.#opened.reject(this.closedError());
    if (!flushing) {
      this.#detachLink();
      this.#closed.resolve();
      return;
    }
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(bound);
      this.#detachLink();
      this.#closed.resolve();
    };
    // A plain one-shot timeout, not the wheel's: the messenger may close its wheel meanwhile
    // (this session has left its registry), and the bound must still end the flush.
    const bound = setTimeout(finish, FLUSH_ON_CLOSE_MS);
    flushing.catch(() => {}).finally(finish);
  }

  // ---- links ----

  /** Attaches a link (a first dial, a redial, or an accepted link) and starts the handshake. */
  attach(link: Link): void {
    this.#slot.attach(link, MAX_HANDSHAKE_BYTES);
    const ms = this.#ports.limits.handshakeTimeoutMs;
    this.#sm.enter("handshaking", ms, () => {
      this.#fail(new FrameError("handshake-timeout", `Handshake not completed within ${ms} ms`));
    });
    this.queue.pushControl(BANNER);
    // The accepting side challenges at once; the dialing side's Hello answers the challenge.
    if (this.#side === "server") this.queue.pushControl(challengeFrame(this.#slot.handshake));
    this.#writer.schedule();
    this.#slot.start();
  }

  /** The accepting side takes the policy that answers the client's. */
  assumePolicy(policy: Policy): void {
    this.#policy = policy;
  }

  /** This side's Hello (or Welcome body) for the current link. */
  #hello(): Hello {
    return helloFor(this.#ports.local, this.#policy, this.#side, this.sequence);
  }

  /** Stops reading and closes the current link, if any; the session state stays. */
  #detachLink(): void {
    this.#slot.detach();
    this.queue.dropControl();
    this.#receiver.release();
  }

  // ---- reading (what the link slot reports) ----

  #onChunkDone(): Promise<void> | undefined {
    this.#receiver.chunkDone();
    // Acks flow while closing too (even after our Close): a lossless peer writes only while its
    // replay buffer has room, so without them it could never finish its queue and its Close.
    if (this.writable) this.#ackAll();
    // While closing, reads go on even if the application is not taking messages: the peer's
    // Acks and Close must be read for the close to end in order. What arrives then is bounded
    // by the peer's queue and the close timeout.
    if (this.#sm.state === "closing") return undefined;
    return this.#ports.inbound.backpressure(this.handle);
  }

  #onFrame(tag: TagValue, payload: Uint8Array, owned: boolean): void {
    if (this.#sm.state === "closed" || this.#refusal) return;
    this.#stats.framesReceived++;
    this.#ports.counters.framesReceived[tag]++;
    if (this.#sm.state === "handshaking") {
      processHandshakeFrame(this.#target, tag, payload);
      return;
    }
    switch (tag) {
      case Tag.Message:
        this.#receiver.message(payload, owned);
        return;
      case Tag.Messages:
        this.#receiver.messages(payload, owned);
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
    // An orderly close is complete only with the peer's Close: a link that ends before it
    // may have lost what the peer sent last, so it ends the session as a fault (unacknowledged
    // messages are handed back), never as a clean close.
    const close = this.#close;
    if (close?.sent && close.received && this.#unacked() === 0) return this.#finishClose();
    this.#fail(
      new ConnectionClosedError(
        !close?.sent
          ? `Peer ${this.remoteAddr} closed the link without a Close frame`
          : close.received
          ? `Peer ${this.remoteAddr} ended the link before acknowledging every message`
          : `Peer ${this.remoteAddr} ended the link before its Close frame arrived`,
      ),
    );
  }

  /** A defect (an exception where none was expected): reported, and the session ends. */
  defect(error: unknown): void {
    this.#ports.observer.defect(this.handle, error);
    try {
      this.#end(error instanceof Error ? error : new Error(String(error)));
    } catch { /* already reported */ }
  }

  /** The peer has everything up to `seq`. */
  #onAck(seq: number): void {
    this.sequence.ack(seq);
    if (!this.#policy.lossy) this.#writer.schedule(); // room in the replay buffer lets more go
    if (this.#close) this.#closeIfDone(); // the last ack may be what a close waits for
  }

  #onClose(payload: Uint8Array): void {
    if (this.#sm.state === "open") {
      this.#startClosing(decodeClose(payload), "peer");
      this.#close!.received = true;
      this.#ackAll();
      return;
    }
    if (this.#close) this.#close.received = true;
    this.#ackAll();
    this.#closeIfDone();
  }

  // ---- the handshake (see handshake.ts) ----

  #handshakeTarget(): HandshakeTarget<Session<H>> {
    return {
      side: () => this.#side,
      policy: () => this.#policy,
      hasPeer: () => this.#peer !== null,
      ports: this.#ports,
      self: this,
      seq: this.sequence,
      hello: () => this.#hello(),
      queue: (frame) => {
        this.queue.pushControl(frame);
        this.#writer.schedule();
      },
      link: () => this.#slot.handshake,
      peerIs: (hello) => this.#peer = hello,
      refuse: (refusal) => this.#refusal = refusal,
      open: (first) => this.#open(first),
      skipChecksums: () => this.#slot.skipChecksums(),
      accepts: () => ({
        crc32: true,
        batch: Math.min(MESSAGES_FRAME_BYTES, this.#ports.limits.maxFrameBytes),
      }),
      peerAccepts: (hello) => this.#slot.peerAccepts(hello),
      resumed: () => {
        const replayed = this.sequence.replay.count;
        this.#ports.observer.lossless(this.handle, { kind: "resume", replayed });
      },
      reincarnated: () => this.#ports.observer.reincarnated(this.handle),
      remoteReset: (reason) => this.#remoteReset(reason),
      handOver: (target, hello) => this.#handOver(target, hello),
    };
  }

  /** The link is open: the session begins (`first`) or goes on. */
  #open(first: boolean): void {
    this.#handshake = null; // made again if a later link handshakes
    this.#attempt = 0;
    this.#slot.opened();
    this.#sm.enter("open");
    if (first) {
      this.#ports.observer.opened(this.handle);
      this.#opened.resolve();
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

  /** Checks, before anything changes, whether a Hello may take over this session. */
  checkAdopt(hello: Hello, challenge: string): HeartlineError | undefined {
    return this.sequence.adoptRefusal(hello, this.#ports.local.nonce, challenge);
  }

  /**
   * A resuming (or restarted) peer's link joins this session: the accepting side of a
   * lossless session, or a lossless peer whose own redial is pending or in flight (that redial
   * is dropped; the peer's link wins).
   */
  adopt(reader: LinkReader, hello: Hello): void {
    this.#detachLink(); // whatever link the session had: dead, half-open, or our redial
    this.#side = "server";
    this.#slot.adopt(reader);
    if (this.#sm.state === "open") this.#sm.enter("standby");
    processAdoptedHello(this.#target, hello);
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
    const unacked = this.sequence.reset().map(toUnsent);
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
    const facts = {
      state,
      established: this.sequence.established,
      policy: this.#policy,
      side: this.#side,
      attempt: this.#attempt,
    };
    const limits = this.#ports.limits;
    const plan = planFault(facts, error, limits, this.#ports.random);
    if (plan.kind === "end") return this.#end(error);
    this.#error = error;
    this.#detachLink();
    this.sequence.replay.rewind();
    if (plan.kind === "reconnect") {
      this.#attempt++;
      this.#sm.enter("reconnecting", plan.delayMs, () => this.#redial());
    } else {
      const expire = () => this.#end(standbyExpired(this.#peer?.name, limits));
      if (state === "standby") this.#sm.rearm(limits.sessionTimeoutMs, expire);
      else this.#sm.enter("standby", limits.sessionTimeoutMs, expire);
    }
    if (state === "open") this.#ports.observer.lossless(this.handle, { kind: "disconnect", error });
  }

  #redial(): void {
    this.#sm.enter("connecting");
    // While it dials the session may close, or take the link its peer dialed in.
    redial(this.#ports.dialer, this.remoteAddr, {
      wanted: () => this.#sm.state === "connecting",
      attach: (link) => this.attach(link),
      failed: (error) => this.#fail(error),
    });
  }

  /** Ends the session for good: reports unacknowledged and queued messages as unsent. */
  #end(error: Error): void {
    const state = this.#sm.state;
    if (state === "closed") return;
    const wasOpen = (state !== "connecting" && state !== "handshaking") ||
      this.sequence.established;
    this.#error = error;
    const unsentMessages = [...this.sequence.reset(), ...this.queue.drain()].map(toUnsent);
    this.#detachLink();
    this.#sm.enter("closed");
    this.queue.failWaiters(() => this.closedError());
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
