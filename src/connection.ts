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
  decodeClose,
  decodeHello,
  decodeRefusal,
  encodeClose,
  encodeJson,
  type Hello,
} from "./protocol/payloads.ts";
import type { Policy } from "./policy.ts";
import type { Link } from "../transports/types.ts";
import type { Timer, TimerWheel } from "./timer/timer_wheel.ts";
import type { OobOptions, OobProducer, OobRegistration } from "./oob/oob.ts";

/** The states of a connection. */
export type ConnectionState = "connecting" | "handshaking" | "open" | "closing" | "closed";

/**
 * Every legal transition: the state machine written as data. `docs/state-machine.md` shows the
 * same table and a test checks that the two agree.
 */
export const CONNECTION_TRANSITIONS: Readonly<
  Record<ConnectionState, readonly ConnectionState[]>
> = Object.freeze({
  connecting: ["handshaking", "closed"],
  handshaking: ["open", "closed"],
  open: ["closing", "closed"],
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

/** What a connection reports to its owner; implemented by the messenger. */
export interface ConnectionHost {
  readonly localHello: Omit<Hello, "policy">;
  readonly wheel: TimerWheel;
  readonly limits: {
    maxFrameBytes: number;
    maxQueueBytes: number;
    handshakeTimeoutMs: number;
    closeTimeoutMs: number;
  };
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

interface Outgoing {
  type: number;
  priority: number;
  payload: Uint8Array;
}

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
const ARENA_MIN_BYTES = 4096;
const PRIORITY_INDEX: Record<string, number> = { high: 0, normal: 1, low: 2 };

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
  readonly side: "client" | "server";
  /** The policy of this end. */
  readonly policy: Policy;
  /** The address dialed (client) or the peer's address (server). */
  readonly remoteAddr: string;
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
    this.side = side;
    this.policy = policy;
    this.remoteAddr = remoteAddr;
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
    this.#queues[priority].push({ type, priority, payload });
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
    if (this.#state === "connecting" || this.#state === "handshaking") {
      this.#fail(new ConnectionClosedError(`Connection closed during handshake: ${reason}`));
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
    this.#readLoop(link);
  }

  /** @internal the dial failed before a link existed */
  dialFailed(error: Error): void {
    this.#fail(error);
  }

  #helloBody(): Hello {
    return { ...this.#host.localHello, policy: this.policy.name };
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

  // ---- reading ----

  async #readLoop(link: Link): Promise<void> {
    const decoder = new FrameDecoder({ maxFrameBytes: this.#host.limits.maxFrameBytes });
    try {
      for (;;) {
        const chunk = await link.read();
        if (this.#link !== link || this.#state === "closed") return;
        if (chunk === null) {
          decoder.end();
          this.#linkEnded();
          return;
        }
        this.stats.bytesReceived += chunk.length;
        this.#chunkLength = chunk.length;
        this.#host.heard(this);
        decoder.push(chunk, this.#onFrame);
        const wait = this.#host.inboundBackpressure();
        if (wait) await wait;
      }
    } catch (error) {
      this.#fail(error as Error);
    }
  }

  #onFrame = (tag: TagValue, _flags: number, payload: Uint8Array): void => {
    if (this.#state === "closed" || this.#refusal) return;
    this.stats.framesReceived++;
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
        return; // lossy sessions keep no replay buffer
      default:
        if (!this.#host.frame(this, tag, payload)) {
          throw new FrameError("unexpected", `Unexpected frame tag ${tag} in an open session`);
        }
    }
  };

  #onHandshakeFrame(tag: TagValue, payload: Uint8Array): void {
    const expected = this.side === "server" ? Tag.Hello : Tag.Welcome;
    if (tag === Tag.Refuse && this.side === "client") {
      const refusal = decodeRefusal(payload);
      // Say it from this side: our value is "local", the refusing peer's is "peer".
      const message = "local" in refusal
        ? `${refusal.field} differs: local ${refusal.peer}, peer ${refusal.local} (refused by peer)`
        : `Peer refused: ${refusal.message}`;
      throw new HandshakeRefusedError(refusal.field, message);
    }
    if (tag !== expected) {
      throw new FrameError("unexpected", `Unexpected frame tag ${tag} during handshake`);
    }
    const hello = decodeHello(payload);
    const refusal = this.#host.checkPeer(hello, this);
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
    this.#peer = hello;
    if (this.side === "server") {
      this.#control.push(encodeFrame(Tag.Welcome, encodeJson(this.#helloBody())));
    }
    this.#timer?.cancel();
    this.#timer = null;
    this.#transition("open");
    this.#host.opened(this);
    this.#opened.resolve();
    this.#scheduleFlush();
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
      throw new FrameError(
        "unexpected",
        `Message out of order: expected seq ${this.#inSeq + 1}, got ${seq}`,
      );
    }
    this.#inSeq = seq;
    this.stats.messagesReceived++;
    this.#host.deliver({
      type: (p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]) >>> 0,
      priority: PRIORITIES[priority],
      payload: this.#copyBody(payload),
      seq,
      connection: this,
    });
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
      this.#arena = new Uint8Array(Math.max(this.#chunkLength, ARENA_MIN_BYTES));
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
    if (this.#flushScheduled || this.#writing || !this.#link) return;
    this.#flushScheduled = true;
    queueMicrotask(() => {
      this.#flushScheduled = false;
      this.#flush();
    });
  }

  #hasOutgoing(): boolean {
    if (this.#control.length > 0) return true;
    if (this.#state !== "open" && this.#state !== "closing") return false;
    return this.#queuedBytes > 0 || (this.#closeRequested && !this.#closeSent);
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
      }
    } catch (error) {
      this.#fail(error as Error);
    } finally {
      this.#writing = false;
    }
    if (this.#refusal) this.#fail(this.#refusal);
    if (this.#state === "closing") this.#maybeFinishClose();
  }

  /** Control frames first, then data by strict priority, up to BATCH_BYTES of data. */
  #buildBatch(): Uint8Array[] {
    const batch = this.#control;
    this.stats.framesSent += batch.length;
    this.#control = [];
    if (this.#state !== "open" && this.#state !== "closing") return batch;
    let total = 0;
    let count = 0;
    const taken: Outgoing[] = [];
    for (const queue of this.#queues) {
      while (queue.length > 0 && total < BATCH_BYTES) {
        const m = queue.shift();
        total += PREAMBLE_BYTES + MESSAGE_HEADER_BYTES + m.payload.length;
        taken.push(m);
        count++;
      }
      if (total >= BATCH_BYTES) break;
    }
    if (count > 0) {
      const buf = new Uint8Array(total);
      const view = new DataView(buf.buffer);
      let at = 0;
      for (const m of taken) {
        const h = at + PREAMBLE_BYTES;
        view.setUint32(h, m.type);
        buf[h + 4] = m.priority;
        setUint64(view, h + 8, ++this.#outSeq);
        setUint64(view, h + 16, this.#inSeq);
        buf.set(m.payload, h + MESSAGE_HEADER_BYTES);
        sealFrame(buf, view, at, Tag.Message, 0, MESSAGE_HEADER_BYTES + m.payload.length);
        at = h + MESSAGE_HEADER_BYTES + m.payload.length;
      }
      batch.push(buf);
      this.#queuedBytes -= total;
      this.stats.messagesSent += count;
      this.stats.framesSent += count;
      this.#wakeSenders();
    }
    if (this.#closeRequested && !this.#closeSent && this.#queuedBytes === 0) {
      batch.push(encodeFrame(Tag.Close, encodeClose(this.#closeReason)));
      this.stats.framesSent++;
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

  /** Ends the session after a fault: reports queued messages as unsent. */
  #fail(error: Error): void {
    if (this.#state === "closed") return;
    const wasOpen = this.#state === "open" || this.#state === "closing";
    this.#error = error;
    const unsent: UnsentMessage[] = [];
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

  #teardown(): void {
    this.#timer?.cancel();
    this.#timer = null;
    this.#control = [];
    const link = this.#link;
    this.#link = null;
    link?.close();
  }
}
