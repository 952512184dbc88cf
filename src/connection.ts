/**
 * Connection: one session with one peer, its explicit state machine (docs/state-machine.md),
 * its priority send queues and its read loop. Created by a `Messenger`, never directly.
 *
 * @module
 */

import { ConnectionClosedError, FrameError, HandshakeRefusedError } from "./errors.ts";
import {
  BANNER,
  encodeFrame,
  FrameDecoder,
  MESSAGE_HEADER_BYTES,
  PREAMBLE_BYTES,
  PRIORITIES,
  type Priority,
  priorityIndex,
  sealFrame,
  setUint64,
  Tag,
  type TagValue,
} from "./protocol/frame.ts";
import {
  decodeAck,
  decodeClose,
  decodeHello,
  decodeRefusal,
  encodeAck,
  encodeClose,
  encodeJson,
  type Hello,
} from "./protocol/payloads.ts";
import type { Policy } from "./policy.ts";
import type { Counters } from "./counters.ts";
import type { Link } from "../transports/types.ts";
import type { Timer, TimerWheel } from "./timer/timer_wheel.ts";
import type { OobOptions, OobProducer, OobRegistration } from "./oob/oob.ts";

/** The states of a connection. */
export type ConnectionState =
  | "connecting"
  | "handshaking"
  | "open"
  | "standby"
  | "reconnecting"
  | "closing"
  | "closed";

/**
 * Every legal transition: the state machine written as data. `docs/state-machine.md` shows the
 * same table and a test checks that the two agree.
 */
export const CONNECTION_TRANSITIONS: Readonly<
  Record<ConnectionState, readonly ConnectionState[]>
> = Object.freeze({
  connecting: ["handshaking", "open", "reconnecting", "closed"],
  handshaking: ["open", "reconnecting", "closed"],
  open: ["closing", "standby", "reconnecting", "closed"],
  standby: ["open", "closed"],
  reconnecting: ["connecting", "open", "closed"],
  closing: ["closed"],
  closed: [],
});

/** A message received from a peer. */
export interface Message {
  /** Application-defined message type (u32). */
  readonly type: number;
  /** The priority it was sent with. */
  readonly priority: Priority;
  /**
   * The body: a copy, not a view of transport buffers. Small bodies (up to 4 KiB) of one read
   * share one ArrayBuffer, so keep `payload.slice()` rather than `payload.buffer` if you hold
   * a small message for long.
   */
  readonly payload: Uint8Array;
  /** Session sequence number (1, 2, 3, ... per direction and session). */
  readonly seq: number;
  /** The connection it arrived on; reply with `message.connection.send(...)`. */
  readonly connection: Connection;
}

/** A message that was queued but never written when its session ended. */
export interface UnsentMessage {
  /** Application-defined message type. */
  readonly type: number;
  /** Its priority. */
  readonly priority: Priority;
  /** Its body. */
  readonly payload: Uint8Array;
}

/** Options of {@linkcode Connection.send}. */
export interface SendOptions {
  /** `"high"`, `"normal"` (default) or `"low"`: strict between levels, FIFO within one. */
  priority?: Priority;
}

/** Counters of one connection. */
export interface ConnectionStats {
  /** Messages written. */
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
}

/** Session events a lossless connection reports through its messenger. */
export type SessionEvent =
  | { kind: "disconnect"; connection: Connection; error: Error }
  | { kind: "resume"; connection: Connection; replayed: number }
  | {
    kind: "remote-reset";
    connection: Connection;
    /** How many messages the old incarnation had not acknowledged (`unacked.length`). */
    lost: number;
    /**
     * The messages written and never acknowledged, in send order. They may have been
     * delivered by the old incarnation (it can process a message and die before it acks):
     * the application decides what to send again.
     */
    unacked: UnsentMessage[];
    reason: string;
  };

/** What a connection reports to its owner; implemented by the messenger. */
export interface ConnectionHost {
  readonly localHello: Omit<Hello, "policy">;
  /** Messenger-wide counters this connection adds to. */
  readonly counters: Counters;
  readonly wheel: TimerWheel;
  readonly limits: {
    maxFrameBytes: number;
    maxQueueBytes: number;
    handshakeTimeoutMs: number;
    closeTimeoutMs: number;
    maxUnackedBytes: number;
    sessionTimeoutMs: number;
    reconnectBaseMs: number;
    reconnectMaxMs: number;
  };
  /** Server side: which connection takes a link whose hello was accepted (this, or a session). */
  route(hello: Hello, conn: Connection): Connection | HandshakeRefusedError | FrameError;
  /** A handshake-only connection handed its link to a session and is gone. */
  abandoned(conn: Connection): void;
  /** Dials the address again for a reconnecting lossless client. */
  redial(conn: Connection): Promise<Link>;
  /** A lossless session event. */
  session(event: SessionEvent): void;
  /** A defect surfaced (an exception where none was expected): log it loudly. */
  bug(conn: Connection, error: unknown): void;
  /** A session now talks to a new incarnation of its peer (after a remote reset). */
  reincarnated(conn: Connection): void;
  /** Checks a peer's hello; returns the refusal, or undefined to accept. */
  checkPeer(hello: Hello, conn: Connection): HandshakeRefusedError | undefined;
  deliver(message: Message): void;
  /** A promise to await before reading more, when inbound messages pile up. */
  inboundBackpressure(): Promise<void> | undefined;
  frame(conn: Connection, tag: TagValue, payload: Uint8Array): boolean;
  /** Any bytes arrived: a sign of life. */
  heard(conn: Connection): void;
  registerOob(
    conn: Connection,
    op: string,
    producer: OobProducer,
    options: OobOptions,
  ): OobRegistration;
  rttMs(conn: Connection): number;
  opened(conn: Connection): void;
  ended(conn: Connection, how: ConnectionEnd): void;
}

/** How a connection ended, as reported to its owner. */
export type ConnectionEnd =
  | { kind: "close"; by: "local" | "peer"; reason: string }
  | { kind: "reset"; error: Error; unsent: UnsentMessage[]; wasOpen: boolean };

/** A queued message; `seq` is set when it is written (created with it, for one shape). */
interface Outgoing {
  type: number;
  priority: number;
  payload: Uint8Array;
  seq: number;
}

/** A message written but not yet acknowledged (lossless policies keep these for replay). */
type Sent = Outgoing;

/** A FIFO of outgoing messages with O(1) shift. */
class OutQueue {
  items: Outgoing[] = [];
  head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(item: Outgoing): void {
    this.items.push(item);
  }
  peek(): Outgoing {
    return this.items[this.head];
  }
  shift(): Outgoing {
    const item = this.items[this.head];
    this.items[this.head++] = undefined as unknown as Outgoing;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    }
    return item;
  }
  drain(): Outgoing[] {
    const rest = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return rest;
  }
}

/** Bytes of data frames gathered into one write. */
const BATCH_BYTES = 256 * 1024;
const RESOLVED = Promise.resolve();
/** Bodies up to this size are packed into a shared per-read arena. */
const ARENA_MAX_BODY = 4096;
const ARENA_MIN_BYTES = 256;
function frameSize(payload: Uint8Array): number {
  return PREAMBLE_BYTES + MESSAGE_HEADER_BYTES + payload.length;
}

const PRIORITY_INDEX: Record<string, number> = { high: 0, normal: 1, low: 2 };

/**
 * Reads one link and feeds its frames to an owner that may change while it runs: the server
 * side reads a hello on a handshake connection, then hands the link to the session it resumes
 * without a second reader on the link and without losing bytes already read.
 */
class LinkReader {
  stopped = false;
  readonly decoder: FrameDecoder;
  constructor(readonly link: Link, public owner: Connection, maxFrameBytes: number) {
    this.decoder = new FrameDecoder({ maxFrameBytes });
  }

  dispatch = (tag: TagValue, flags: number, payload: Uint8Array): void => {
    if (!this.stopped) this.owner._frame(this, tag, flags, payload);
  };

  async run(): Promise<void> {
    try {
      for (;;) {
        const chunk = await this.link.read();
        if (this.stopped) return;
        if (chunk === null) {
          this.decoder.end();
          this.owner._linkEnded(this);
          return;
        }
        const wait = this.owner._chunk(this, chunk);
        if (wait) await wait;
      }
    } catch (error) {
      if (this.stopped) return;
      try {
        this.owner._readFailed(this, error as Error);
      } catch (bug) {
        // The read loop must never reject: report, never crash the process.
        this.owner._bug(bug);
      }
    }
  }
}

/** @internal a dial replaced by the peer's winning dial; carries the session to use */
export class SupersededError extends Error {
  constructor(readonly winner: Connection) {
    super("Dial superseded by the peer's own dial");
    this.name = "SupersededError";
  }
}

function deferred<T>() {
  let resolve!: (v: T) => void, reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {}); // observed through other paths; never an unhandled rejection
  return { promise, resolve, reject };
}

let nextId = 1;

/**
 * One session with one peer. Get one from `messenger.connect(addr)` (or from an `accept` event
 * or `message.connection`).
 */
export class Connection {
  /** Process-unique id, shown in admin views and logs. */
  readonly id: number = nextId++;
  /** Which end dialed: `client` dialed, `server` accepted. */
  #side: "client" | "server";
  #policy: Policy;
  /** The address dialed (client) or the peer's address (server). */
  readonly remoteAddr: string;
  /** Messages written again after a resume (lossless). */
  replayedMessages = 0;
  /** Replayed messages that had already been delivered and were dropped (lossless). */
  duplicatesDropped = 0;
  /** Counters. */
  readonly stats: ConnectionStats = {
    messagesSent: 0,
    messagesReceived: 0,
    bytesSent: 0,
    bytesReceived: 0,
    framesSent: 0,
    framesReceived: 0,
  };
  #host: ConnectionHost;
  #state: ConnectionState = "connecting";
  #link: Link | null = null;
  #reader: LinkReader | null = null;
  // Lossless sessions: written messages not yet acknowledged, in seq order, and replay.
  #unacked: Sent[] = [];
  #unackedHead = 0;
  #unackedBytes = 0;
  #replayAt = -1; // index into #unacked of the next message to replay, -1 when not replaying
  #ackSent = 0;
  #sessionPeerNonce: string | null = null; // the peer incarnation our session belongs to
  #attempt = 0;
  #linkEpoch = 0; // counts links: per-link state (the OOB op dictionaries) starts afresh
  #peer: Hello | null = null;
  #queues = PRIORITIES.map(() => new OutQueue());
  #control: Uint8Array[] = [];
  #queuedBytes = 0;
  #spaceWaiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  #outSeq = 0;
  #inSeq = 0;
  #writing = false;
  #flushScheduled = false;
  #closeRequested = false;
  #closeSent = false;
  #closeReceived = false;
  #closeReason = "";
  #closedBy: "local" | "peer" = "local";
  #timer: Timer | null = null;
  #opened = deferred<void>();
  #closed = deferred<void>();
  #error: Error | null = null;
  #refusal: HandshakeRefusedError | null = null;
  #arena = new Uint8Array(0);
  #arenaPos = 0;
  #chunkLength = 0;

  /** @internal created by the messenger */
  constructor(host: ConnectionHost, side: "client" | "server", policy: Policy, remoteAddr: string) {
    this.#host = host;
    this.#side = side;
    this.#policy = policy;
    this.remoteAddr = remoteAddr;
  }

  /**
   * Which end dialed the current link: `client` dialed (and redials after a fault), `server`
   * accepted (and waits in standby). A lossless peer session can change sides when a dial
   * race hands it the other node's link.
   */
  get side(): "client" | "server" {
    return this.#side;
  }

  /** The policy of this end (on the accepting side, set by the client's hello). */
  get policy(): Policy {
    return this.#policy;
  }

  /** @internal the accepting side takes the policy that answers the client's */
  _assumePolicy(policy: Policy): void {
    this.#policy = policy;
  }

  /** Current state; see docs/state-machine.md. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** The peer's node name, once the handshake is done. */
  get peerName(): string | undefined {
    return this.#peer?.name;
  }

  /** The peer's instance nonce, once the handshake is done. */
  get peerNonce(): string | undefined {
    return this.#peer?.nonce;
  }

  /** Bytes of messages queued and not yet written. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  /** Messages queued and not yet written. */
  get queuedMessages(): number {
    let n = 0;
    for (const q of this.#queues) n += q.length;
    return n;
  }

  /** @internal which link the session is on (1 for the first, +1 per new link) */
  get linkEpoch(): number {
    return this.#linkEpoch;
  }

  /** Messages written and not yet acknowledged by the peer (lossless policies). */
  get unackedMessages(): number {
    return this.#unacked.length - this.#unackedHead;
  }

  /** Highest sequence number received in this session. */
  get receivedSeq(): number {
    return this.#inSeq;
  }

  /** The error that ended the session, if it ended by a fault. */
  get error(): Error | null {
    return this.#error;
  }

  /** Resolves when the handshake completes; rejects with the error if it fails. */
  opened(): Promise<void> {
    return this.#opened.promise;
  }

  /** Resolves when the connection has reached `closed`, whatever the cause. */
  closed(): Promise<void> {
    return this.#closed.promise;
  }

  /**
   * Queues a message. Resolves at once while the queue is under its limit; otherwise waits
   * until the writer has drained it below the limit (back-pressure). Rejects with
   * `ConnectionClosedError` if the connection is closing or closed.
   */
  send(type: number, payload: Uint8Array, options: SendOptions = {}): Promise<void> {
    if (!Number.isInteger(type) || type < 0 || type > 0xffff_ffff) {
      throw new RangeError(`Message type must be a u32: ${type}`);
    }
    if (!(payload instanceof Uint8Array)) {
      throw new TypeError("Message payload must be a Uint8Array");
    }
    const size = PREAMBLE_BYTES + MESSAGE_HEADER_BYTES + payload.length;
    if (size - PREAMBLE_BYTES > this.#host.limits.maxFrameBytes) {
      throw new RangeError(
        `Message too large: ${payload.length} bytes, frame limit ${this.#host.limits.maxFrameBytes}`,
      );
    }
    const priority = options.priority === undefined
      ? 1
      : PRIORITY_INDEX[options.priority] ?? priorityIndex(options.priority);
    if (this.#closeRequested || this.#state === "closing" || this.#state === "closed") {
      return Promise.reject(this.#closedError());
    }
    // Lossless sessions accept messages while reconnecting or in standby: they wait in the queue.
    this.#queues[priority].push({ type, priority, payload, seq: 0 });
    this.#queuedBytes += size;
    this.#scheduleFlush();
    if (this.#queuedBytes <= this.#host.limits.maxQueueBytes) return RESOLVED;
    return new Promise((resolve, reject) => this.#spaceWaiters.push({ resolve, reject }));
  }

  /**
   * Closes the session in order: queued messages are written first, then a Close frame; the
   * promise resolves when the peer has answered (or the close timeout passed).
   */
  close(reason = "closed by application"): Promise<void> {
    if (this.#state === "closed" || this.#closeRequested) return this.#closed.promise;
    if (this.#state !== "open") {
      // Not connected (handshake, reconnecting, standby): nothing to exchange Close with.
      this.#end(new ConnectionClosedError(`Connection closed before it was open: ${reason}`));
      return this.#closed.promise;
    }
    this.#closeReason = reason;
    this.#closedBy = "local";
    this.#startClosing();
    return this.#closed.promise;
  }

  /**
   * Registers an out-of-band producer on this connection: every `intervalMs` (aligned, so
   * related intervals meet) the producer is asked for bytes, and every part due in the same
   * wheel tick travels in one heartbeat frame ahead of queued data. The peer's handler for
   * `op` (`messenger.onOob(op, handler)`) receives it. Cancelled with the connection.
   */
  registerOob(op: string, producer: OobProducer, options: OobOptions): OobRegistration {
    if (this.#state === "closed" || this.#state === "closing") throw this.#closedError();
    return this.#host.registerOob(this, op, producer, options);
  }

  /** Last round-trip time measured from echoed heartbeat stamps, in ms (NaN before one). */
  get rttMs(): number {
    return this.#host.rttMs(this);
  }

  /** @internal queues an encoded control frame ahead of all data (heartbeats, acks) */
  sendControl(frame: Uint8Array): void {
    if (this.#state !== "open") return;
    this.#control.push(frame);
    this.#scheduleFlush();
  }

  // ---- lifecycle, called by the messenger ----

  /** @internal attaches the transport link and starts the handshake */
  attach(link: Link): void {
    this.#link = link;
    this.#linkEpoch++;
    this.#reader = new LinkReader(link, this, this.#host.limits.maxFrameBytes);
    this.#transition("handshaking");
    this.#timer = this.#host.wheel.schedule(this.#host.limits.handshakeTimeoutMs, () => {
      this.#fail(
        new FrameError(
          "handshake-timeout",
          `Handshake not completed within ${this.#host.limits.handshakeTimeoutMs} ms`,
        ),
      );
    });
    this.#control.push(BANNER);
    if (this.side === "client") {
      this.#control.push(encodeFrame(Tag.Hello, encodeJson(this.#helloBody())));
    }
    this.#scheduleFlush();
    this.#reader.run();
  }

  /** @internal the dial failed before a link existed */
  dialFailed(error: Error): void {
    this.#fail(error);
  }

  #helloBody(): Hello {
    const hello: Hello = { ...this.#host.localHello, policy: this.policy.name };
    if (!this.policy.lossy) {
      hello.inSeq = this.#inSeq;
      if (this.side === "client") hello.resumeNonce = this.#sessionPeerNonce;
    }
    return hello;
  }

  #transition(to: ConnectionState): void {
    if (!CONNECTION_TRANSITIONS[this.#state].includes(to)) {
      throw new Error(`Illegal connection transition: ${this.#state} -> ${to}`);
    }
    this.#state = to;
  }

  #closedError(): ConnectionClosedError {
    return new ConnectionClosedError(`Connection ${this.id} to ${this.remoteAddr} is closed`, {
      cause: this.#error ?? undefined,
    });
  }

  // ---- reading (called by the LinkReader) ----

  /** @internal one chunk read; returns a promise to await before reading more */
  _chunk(reader: LinkReader, chunk: Uint8Array): Promise<void> | undefined {
    this.stats.bytesReceived += chunk.length;
    this.#host.counters.bytesReceived += chunk.length;
    this.#chunkLength = chunk.length;
    this.#host.heard(this);
    reader.decoder.push(chunk, reader.dispatch);
    if (!this.policy.lossy && this.#inSeq > this.#ackSent && this.#state === "open") {
      // One standalone ack per read at most, so one-way flows still trim the peer's buffer.
      this.#ackSent = this.#inSeq;
      this.sendControl(encodeFrame(Tag.Ack, encodeAck(this.#inSeq)));
    }
    return this.#host.inboundBackpressure();
  }

  /** @internal a defect surfaced on the read path: logged, never an unhandled rejection */
  _bug(error: unknown): void {
    this.#host.bug(this, error);
    try {
      this.#end(error instanceof Error ? error : new Error(String(error)));
    } catch { /* already reported */ }
  }

  /** @internal the link's stream ended */
  _linkEnded(reader: LinkReader): void {
    if (reader !== this.#reader) return;
    this.#linkEnded();
  }

  /** @internal reading the link failed (transport error or bad bytes) */
  _readFailed(reader: LinkReader, error: Error): void {
    if (reader === this.#reader) this.#fail(error);
  }

  /** @internal one frame from the link */
  _frame(reader: LinkReader, tag: TagValue, _flags: number, payload: Uint8Array): void {
    if (reader !== this.#reader || this.#state === "closed" || this.#refusal) return;
    this.stats.framesReceived++;
    this.#host.counters.framesReceived[tag]++;
    if (this.#state === "handshaking") {
      this.#onHandshakeFrame(tag, payload);
      return;
    }
    switch (tag) {
      case Tag.Message:
        this.#onMessage(payload);
        return;
      case Tag.Close:
        this.#onClose(payload);
        return;
      case Tag.Ack:
        this.#onAck(decodeAck(payload));
        return;
      default:
        if (!this.#host.frame(this, tag, payload)) {
          throw new FrameError("unexpected", `Unexpected frame tag ${tag} in an open session`);
        }
    }
  }

  #onHandshakeFrame(tag: TagValue, payload: Uint8Array): void {
    const expected = this.side === "server" ? Tag.Hello : Tag.Welcome;
    if (tag === Tag.Refuse && this.side === "client") {
      const refusal = decodeRefusal(payload);
      if (refusal.field === "race") {
        // Lost a dial race: the peer's own dial carries the session (see docs/policies.md).
        throw new HandshakeRefusedError("race", `Dial race lost to ${refusal.peer}`, {
          peer: refusal.peer,
        });
      }
      // Say it from this side: our value is "local", the refusing peer's is "peer".
      if ("local" in refusal) {
        throw new HandshakeRefusedError(
          refusal.field,
          `${refusal.field} differs: local ${refusal.peer}, peer ${refusal.local} (refused by peer)`,
          { local: refusal.peer, peer: refusal.local },
        );
      }
      throw new HandshakeRefusedError(refusal.field, `Peer refused: ${refusal.message}`);
    }
    if (tag !== expected) {
      throw new FrameError("unexpected", `Unexpected frame tag ${tag} during handshake`);
    }
    const hello = decodeHello(payload);
    let refusal = this.#host.checkPeer(hello, this);
    if (!refusal && this.side === "server") {
      const target = this.#host.route(hello, this);
      if (target instanceof FrameError) throw target;
      if (target instanceof HandshakeRefusedError) {
        refusal = target;
      } else if (target !== this) {
        // A resume (or a restarted peer): the session takes over this link and its reader.
        const reader = this.#reader!;
        this.#reader = null;
        this.#link = null;
        this.#timer?.cancel();
        this.#timer = null;
        this.#transition("closed");
        this.#host.abandoned(this);
        this.#closed.resolve();
        target._adopt(reader, hello);
        return;
      }
    }
    if (refusal) {
      if (this.side === "client") throw refusal;
      // Tell the client why, then fail once the Refuse frame is written (see #flush).
      this.#refusal = refusal;
      this.#control.push(
        encodeFrame(
          Tag.Refuse,
          encodeJson({
            field: refusal.field,
            message: refusal.message,
            local: refusal.local,
            peer: refusal.peer,
          }),
        ),
      );
      this.#scheduleFlush();
      return;
    }
    this.#timer?.cancel();
    this.#timer = null;
    if (this.side === "server") {
      this.#peer = hello;
      this.#sessionPeerNonce = hello.nonce;
      const welcome: Hello = { ...this.#helloBody(), inSeq: 0 };
      if (!this.policy.lossy) welcome.resumed = false;
      this.#control.push(encodeFrame(Tag.Welcome, encodeJson(welcome)));
      this.#transition("open");
      this.#host.opened(this);
      this.#opened.resolve();
      this.#scheduleFlush();
      return;
    }
    this.#welcomed(hello);
  }

  /** Client side: the server's Welcome arrived (first connect or a resume). */
  #welcomed(hello: Hello): void {
    const first = this.#peer === null;
    const hadSession = this.#sessionPeerNonce !== null;
    let resumed = false;
    const restarted = hadSession && hello.nonce !== this.#sessionPeerNonce;
    this.#peer = hello;
    if (!this.policy.lossy && hadSession) {
      if (hello.nonce !== this.#sessionPeerNonce || hello.resumed !== true) {
        this.#remoteReset(
          hello.nonce !== this.#sessionPeerNonce ? "peer restarted" : "session expired",
        );
      } else {
        this.#resumeFrom(hello.inSeq ?? 0);
        resumed = true;
      }
    }
    this.#sessionPeerNonce = hello.nonce;
    this.#attempt = 0;
    this.#transition("open");
    if (first) {
      this.#host.opened(this);
      this.#opened.resolve();
    } else if (resumed) {
      this.#host.session({ kind: "resume", connection: this, replayed: this.unackedMessages });
    } else if (restarted) {
      this.#host.reincarnated(this);
    }
    this.#scheduleFlush();
  }

  /**
   * @internal a dial of ours lost a race to the peer's own dial: end quietly (no events); the
   * caller's connect() resolves to the winning session instead
   */
  _supersede(winner: Connection): void {
    if (this.#state === "closed") return;
    this.#teardown();
    this.#transition("closed");
    this.#host.abandoned(this);
    this.#opened.reject(new SupersededError(winner));
    this.#closed.resolve();
  }

  #resumes(hello: Hello): boolean {
    return hello.nonce === this.#sessionPeerNonce &&
      hello.resumeNonce === this.#host.localHello.nonce;
  }

  /**
   * @internal checks, before anything changes, whether a hello may take over this session:
   * a resume cannot claim to have received more than this side ever sent
   */
  _checkAdopt(hello: Hello): FrameError | undefined {
    if (this.#resumes(hello) && (hello.inSeq ?? 0) > this.#outSeq) {
      return new FrameError(
        "unexpected",
        `Resume claims seq ${hello.inSeq} received, but only ${this.#outSeq} were sent`,
      );
    }
    return undefined;
  }

  /**
   * @internal a resuming (or restarted) peer's link joins this session: the accepting side of
   * a lossless session, or a lossless peer whose own redial is pending or in flight (that
   * redial is dropped; the peer's link wins)
   */
  _adopt(reader: LinkReader, hello: Hello): void {
    // Drop whatever link the session had (dead, half-open, or a redial of ours), quietly.
    this.#detachLink();
    this.#side = "server";
    this.#attempt = 0;
    this.#timer?.cancel();
    this.#timer = null;
    const resumed = this.#resumes(hello);
    const restarted = hello.nonce !== this.#sessionPeerNonce;
    if (!resumed) {
      this.#remoteReset(
        hello.nonce !== this.#sessionPeerNonce ? "peer restarted" : "peer lost the session",
      );
    } else {
      this.#resumeFrom(hello.inSeq ?? 0);
    }
    this.#peer = hello;
    this.#sessionPeerNonce = hello.nonce;
    reader.owner = this;
    this.#reader = reader;
    this.#link = reader.link;
    this.#linkEpoch++;
    this.#control.push(
      encodeFrame(Tag.Welcome, encodeJson({ ...this.#helloBody(), resumed })),
    );
    if (this.#state === "open") this.#transition("standby");
    this.#transition("open");
    if (resumed) {
      this.#host.session({ kind: "resume", connection: this, replayed: this.unackedMessages });
    } else if (restarted) {
      this.#host.reincarnated(this);
    }
    this.#scheduleFlush();
  }

  /** Both sides agree the peer has everything up to `peerInSeq`: trim, then replay the rest. */
  #resumeFrom(peerInSeq: number): void {
    this.#onAck(peerInSeq);
    this.#replayAt = this.#unackedHead < this.#unacked.length ? this.#unackedHead : -1;
    this.#ackSent = 0; // re-ack what we hold on the new link
  }

  /** The peer's incarnation or session is gone: what it had not acknowledged is handed back. */
  #remoteReset(reason: string): void {
    const unacked = this.#takeUnacked();
    this.#unacked = [];
    this.#unackedHead = 0;
    this.#unackedBytes = 0;
    this.#replayAt = -1;
    this.#outSeq = 0;
    this.#inSeq = 0;
    this.#ackSent = 0;
    this.#host.session({
      kind: "remote-reset",
      connection: this,
      lost: unacked.length,
      unacked,
      reason,
    });
  }

  /** The peer has everything up to `seq`: drop it from the replay buffer. */
  #onAck(seq: number): void {
    if (seq > this.#outSeq) {
      throw new FrameError(
        "unexpected",
        `Ack for seq ${seq} beyond the last sent (${this.#outSeq})`,
      );
    }
    if (this.policy.lossy) return;
    let head = this.#unackedHead;
    while (head < this.#unacked.length && this.#unacked[head].seq <= seq) {
      this.#unackedBytes -= frameSize(this.#unacked[head].payload);
      this.#unacked[head++] = undefined as unknown as Sent;
    }
    if (this.#replayAt >= 0 && this.#replayAt < head) {
      this.#replayAt = head < this.#unacked.length ? head : -1;
    }
    if (head === this.#unacked.length) {
      this.#unacked = [];
      head = 0;
      this.#replayAt = -1;
    } else if (head > 4096 && head * 2 > this.#unacked.length) {
      this.#unacked = this.#unacked.slice(head);
      if (this.#replayAt >= 0) this.#replayAt -= head;
      head = 0;
    }
    this.#unackedHead = head;
    this.#scheduleFlush(); // room in the replay buffer may let queued messages go
  }

  #onMessage(payload: Uint8Array): void {
    if (payload.length < MESSAGE_HEADER_BYTES) {
      throw new FrameError("malformed", `Message frame too short: ${payload.length} bytes`);
    }
    const p = payload;
    const priority = p[4];
    if (priority >= PRIORITIES.length) {
      throw new FrameError("malformed", `Unknown message priority: ${priority}`);
    }
    // Header fields read byte by byte: no DataView per message on the hot path.
    const seq = ((p[8] << 24 | p[9] << 16 | p[10] << 8 | p[11]) >>> 0) * 0x1_0000_0000 +
      ((p[12] << 24 | p[13] << 16 | p[14] << 8 | p[15]) >>> 0);
    if (seq !== this.#inSeq + 1) {
      if (seq <= this.#inSeq && !this.policy.lossy) {
        this.duplicatesDropped++; // a replay of something already delivered
        return;
      }
      throw new FrameError(
        "unexpected",
        `Message out of order: expected seq ${this.#inSeq + 1}, got ${seq}`,
      );
    }
    if (!this.policy.lossy) {
      const ack = ((p[16] << 24 | p[17] << 16 | p[18] << 8 | p[19]) >>> 0) * 0x1_0000_0000 +
        ((p[20] << 24 | p[21] << 16 | p[22] << 8 | p[23]) >>> 0);
      if (ack > 0) this.#onAck(ack);
    }
    const message: Message = {
      type: (p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]) >>> 0,
      priority: PRIORITIES[priority],
      payload: this.#copyBody(payload),
      seq,
      connection: this,
    };
    this.#host.deliver(message);
    // Committed only once delivered: a message that failed on the way is not counted as
    // received, so a resumed session asks for it again.
    this.#inSeq = seq;
    this.stats.messagesReceived++;
    this.#host.counters.messagesReceived[priority]++;
  }

  /**
   * Copies a message body out of the transport's buffer. Small bodies are packed into one
   * arena per read instead of one allocation each (the hot path of small messages), so a body
   * may share its ArrayBuffer with its neighbours from the same read.
   */
  #copyBody(payload: Uint8Array): Uint8Array {
    const size = payload.length - MESSAGE_HEADER_BYTES;
    if (size > ARENA_MAX_BODY) return payload.slice(MESSAGE_HEADER_BYTES);
    if (this.#arena.length - this.#arenaPos < size) {
      // A body completed by a read shorter than itself is larger than that read: size the
      // arena by both.
      this.#arena = new Uint8Array(Math.max(this.#chunkLength, size, ARENA_MIN_BYTES));
      this.#arenaPos = 0;
    }
    const body = this.#arena.subarray(this.#arenaPos, this.#arenaPos + size);
    body.set(payload.subarray(MESSAGE_HEADER_BYTES));
    this.#arenaPos += size;
    return body;
  }

  #onClose(payload: Uint8Array): void {
    this.#closeReceived = true;
    if (this.#state === "open") {
      this.#closeReason = decodeClose(payload);
      this.#closedBy = "peer";
      this.#startClosing();
    } else {
      this.#maybeFinishClose();
    }
  }

  #linkEnded(): void {
    if (this.#state === "closing" && this.#closeSent) {
      this.#finishClose();
      return;
    }
    this.#fail(
      new ConnectionClosedError(`Peer ${this.remoteAddr} closed the link without a Close frame`),
    );
  }

  // ---- writing ----

  #scheduleFlush(): void {
    if (this.#flushScheduled || this.#writing || !this.#link || !this.#reader) return;
    this.#flushScheduled = true;
    queueMicrotask(() => {
      this.#flushScheduled = false;
      this.#flush();
    });
  }

  #hasOutgoing(): boolean {
    if (this.#control.length > 0) return true;
    if (this.#state !== "open" && this.#state !== "closing") return false;
    if (this.#replayAt >= 0) return true;
    if (this.#queuedBytes > 0 && this.#unackedBytes < this.#host.limits.maxUnackedBytes) {
      return true;
    }
    return this.#closeRequested && !this.#closeSent && this.#queuedBytes === 0;
  }

  async #flush(): Promise<void> {
    const link = this.#link;
    if (this.#writing || !link) return;
    this.#writing = true;
    try {
      while (link === this.#link && this.#state !== "closed" && this.#hasOutgoing()) {
        const batch = this.#buildBatch();
        let bytes = 0;
        for (const chunk of batch) bytes += chunk.length;
        await link.write(batch);
        this.stats.bytesSent += bytes;
        this.#host.counters.bytesSent += bytes;
      }
    } catch (error) {
      if (link === this.#link) this.#fail(error as Error);
    } finally {
      this.#writing = false;
    }
    if (this.#refusal) this.#fail(this.#refusal);
    else if (link !== this.#link && this.#link) this.#scheduleFlush(); // a new link meanwhile
    if (this.#state === "closing") this.#maybeFinishClose();
  }

  /**
   * Control frames first; then, in an open session, replayed messages, then queued data by
   * strict priority, up to BATCH_BYTES of data (and, for lossless policies, only while the
   * replay buffer has room: a full buffer holds messages in the queue, so send() waits).
   */
  #buildBatch(): Uint8Array[] {
    const batch = this.#control;
    this.stats.framesSent += batch.length;
    const counters = this.#host.counters;
    for (const frame of batch) if (frame !== BANNER) counters.framesSent[frame[0]]++;
    this.#control = [];
    if (this.#state !== "open" && this.#state !== "closing") return batch;
    const lossless = !this.policy.lossy;
    let total = 0;
    const taken: Sent[] = [];
    while (this.#replayAt >= 0 && total < BATCH_BYTES) {
      const m = this.#unacked[this.#replayAt++];
      taken.push(m);
      total += frameSize(m.payload);
      if (this.#replayAt >= this.#unacked.length) this.#replayAt = -1;
    }
    const replayed = taken.length;
    let taking = 0;
    for (const queue of this.#queues) {
      while (
        queue.length > 0 && total < BATCH_BYTES &&
        (!lossless || this.#unackedBytes < this.#host.limits.maxUnackedBytes)
      ) {
        const m = queue.shift() as Sent;
        const size = frameSize(m.payload);
        m.seq = ++this.#outSeq;
        total += size;
        taking += size;
        taken.push(m);
        if (lossless) {
          this.#unacked.push(m);
          this.#unackedBytes += size;
        }
      }
      if (total >= BATCH_BYTES) break;
    }
    if (taken.length > 0) {
      const buf = new Uint8Array(total);
      const view = new DataView(buf.buffer);
      let at = 0;
      for (const m of taken) {
        const h = at + PREAMBLE_BYTES;
        view.setUint32(h, m.type);
        buf[h + 4] = m.priority;
        setUint64(view, h + 8, m.seq);
        setUint64(view, h + 16, this.#inSeq);
        buf.set(m.payload, h + MESSAGE_HEADER_BYTES);
        sealFrame(buf, view, at, Tag.Message, 0, MESSAGE_HEADER_BYTES + m.payload.length);
        at = h + MESSAGE_HEADER_BYTES + m.payload.length;
      }
      batch.push(buf);
      if (lossless) this.#ackSent = this.#inSeq;
      this.#queuedBytes -= taking;
      this.stats.messagesSent += taken.length - replayed;
      this.stats.framesSent += taken.length;
      counters.framesSent[Tag.Message] += taken.length;
      counters.replayed += replayed;
      for (let i = replayed; i < taken.length; i++) counters.messagesSent[taken[i].priority]++;
      this.replayedMessages += replayed;
      this.#wakeSenders();
    }
    if (this.#closeRequested && !this.#closeSent && this.#queuedBytes === 0) {
      batch.push(encodeFrame(Tag.Close, encodeClose(this.#closeReason)));
      this.stats.framesSent++;
      counters.framesSent[Tag.Close]++;
      this.#closeSent = true;
    }
    return batch;
  }

  #wakeSenders(): void {
    if (this.#spaceWaiters.length === 0) return;
    if (this.#queuedBytes > this.#host.limits.maxQueueBytes) return;
    for (const w of this.#spaceWaiters.splice(0)) w.resolve();
  }

  // ---- closing ----

  #startClosing(): void {
    this.#closeRequested = true;
    this.#transition("closing");
    for (const w of this.#spaceWaiters.splice(0)) w.reject(this.#closedError());
    this.#timer?.cancel();
    this.#timer = this.#host.wheel.schedule(this.#host.limits.closeTimeoutMs, () => {
      this.#finishClose();
    });
    this.#scheduleFlush();
  }

  #maybeFinishClose(): void {
    if (this.#state === "closing" && this.#closeSent && this.#closeReceived && !this.#writing) {
      this.#finishClose();
    }
  }

  #finishClose(): void {
    if (this.#state === "closed") return;
    this.#teardown();
    this.#transition("closed");
    this.#host.ended(this, { kind: "close", by: this.#closedBy, reason: this.#closeReason });
    this.#opened.reject(this.#closedError());
    this.#closed.resolve();
  }

  /**
   * A fault. Lossy sessions end (see #end). Lossless ones keep their session: the dialing side
   * reconnects with capped exponential backoff and jitter, the accepting side waits in standby
   * for the client to come back, for at most `sessionTimeoutMs`.
   */
  #fail(error: Error): void {
    if (this.#state === "closed") return;
    const keep = !this.policy.lossy && !this.#closeRequested && this.#sessionPeerNonce !== null &&
      !(error instanceof HandshakeRefusedError);
    if (!keep) {
      this.#end(error);
      return;
    }
    this.#error = error;
    this.#detachLink();
    this.#timer?.cancel();
    this.#timer = null;
    if (this.#unackedHead < this.#unacked.length) this.#replayAt = this.#unackedHead;
    const wasOpen = this.#state === "open";
    if (this.side === "client") {
      this.#transition("reconnecting");
      const base = this.#host.limits.reconnectBaseMs * 2 ** Math.min(this.#attempt++, 16);
      const delay = Math.min(this.#host.limits.reconnectMaxMs, base) * (0.5 + Math.random() / 2);
      this.#timer = this.#host.wheel.schedule(delay, () => this.#redial());
    } else {
      if (this.#state !== "standby") this.#transition("standby");
      this.#timer = this.#host.wheel.schedule(this.#host.limits.sessionTimeoutMs, () => {
        this.#end(
          new ConnectionClosedError(
            `Session with ${this.peerName} expired after ${this.#host.limits.sessionTimeoutMs} ms in standby`,
          ),
        );
      });
    }
    if (wasOpen) this.#host.session({ kind: "disconnect", connection: this, error });
  }

  async #redial(): Promise<void> {
    this.#timer = null;
    if (this.#state !== "reconnecting") return;
    this.#transition("connecting");
    let link: Link;
    try {
      link = await this.#host.redial(this);
    } catch (error) {
      if (this.state === "connecting") this.#fail(error as Error);
      return;
    }
    if (this.state !== "connecting") { // close() may have ended it while dialing
      link.close();
      return;
    }
    this.attach(link);
  }

  /** Ends the session for good: reports queued (and unacknowledged) messages as unsent. */
  #end(error: Error): void {
    if (this.#state === "closed") return;
    const wasOpen = this.#state !== "connecting" && this.#state !== "handshaking" ||
      this.#sessionPeerNonce !== null;
    this.#error = error;
    const unsent = this.#takeUnacked();
    this.#unacked = [];
    this.#unackedHead = 0;
    this.#unackedBytes = 0;
    this.#replayAt = -1;
    for (const queue of this.#queues) {
      for (const m of queue.drain()) {
        unsent.push({ type: m.type, priority: PRIORITIES[m.priority], payload: m.payload });
      }
    }
    this.#queuedBytes = 0;
    this.#teardown();
    this.#transition("closed");
    for (const w of this.#spaceWaiters.splice(0)) w.reject(this.#closedError());
    this.#host.ended(this, { kind: "reset", error, unsent, wasOpen });
    this.#opened.reject(error);
    this.#closed.resolve();
  }

  /** The written, unacknowledged messages, in send order, as the application sent them. */
  #takeUnacked(): UnsentMessage[] {
    const out: UnsentMessage[] = [];
    for (let i = this.#unackedHead; i < this.#unacked.length; i++) {
      const m = this.#unacked[i];
      out.push({ type: m.type, priority: PRIORITIES[m.priority], payload: m.payload });
    }
    return out;
  }

  /** Stops reading and closes the current link, if any; the session state stays. */
  #detachLink(): void {
    const reader = this.#reader;
    if (reader) reader.stopped = true;
    this.#reader = null;
    this.#control = [];
    const link = this.#link;
    this.#link = null;
    link?.close();
  }

  #teardown(): void {
    this.#timer?.cancel();
    this.#timer = null;
    this.#detachLink();
  }
}
