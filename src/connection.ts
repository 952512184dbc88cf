/**
 * Connection: the application's handle on one session with one peer. A thin facade: the
 * session (src/session/) holds the state machine, queues and links; this class checks
 * arguments, turns every failure of `send()` into a rejected promise, and adds `AbortSignal`
 * and `Symbol.asyncDispose` support. Created by a `Messenger`, never directly.
 *
 * @module
 */

import { ConnectionClosedError } from "./errors.ts";
import { MESSAGE_HEADER_BYTES, type Priority, priorityIndex } from "./protocol/message.ts";
import type { Policy } from "./policy.ts";
import type { OobOptions, OobProducer, OobRegistration } from "./oob/types.ts";
import type { SessionPorts, UnsentMessage } from "./session/ports.ts";
import { Session, type SessionStats } from "./session/session.ts";
import type { ConnectionState } from "./session/state.ts";
import type { HeartbeatSettings } from "./protocol/handshake.ts";

export { CONNECTION_TRANSITIONS, type ConnectionState } from "./session/state.ts";
export type { UnsentMessage } from "./session/ports.ts";

/** A message received from a peer. */
export interface Message {
  /** Application-defined message type (u32). */
  readonly type: number;
  /** The priority it was sent with. */
  readonly priority: Priority;
  /**
   * The body: a copy, not a view of transport buffers. It may share its ArrayBuffer with
   * other bodies from the same connection (never another's): small ones are packed into
   * buffers of 256 bytes to 8 KiB, and bodies batched in one larger frame (up to 64 KiB) share
   * its copy. Keep
   * `payload.slice()` rather than `payload` if you hold a message for long (a kept view pins
   * its whole buffer), and transfer or `structuredClone` only a copy (transferring the buffer
   * would empty the bodies it shares it with; cloning would copy all of it).
   */
  readonly payload: Uint8Array;
  /** Session sequence number (1, 2, 3, ... per direction and session). */
  readonly seq: number;
  /** The connection it arrived on; reply with `message.connection.send(...)`. */
  readonly connection: Connection;
}

/** Options of {@linkcode Connection.send}. */
export interface SendOptions {
  /** `"high"`, `"normal"` (default) or `"low"`: strict between levels, FIFO within one. */
  priority?: Priority;
  /**
   * Stops waiting for room under back-pressure: the promise rejects with `signal.reason`.
   * A message already queued stays queued (it is not taken back).
   */
  signal?: AbortSignal;
}

/** Options of {@linkcode Connection.close}. */
export interface CloseOptions {
  /**
   * Stops waiting for the peer: the session is aborted at once (no more Close exchange) and
   * the promise rejects with `signal.reason`.
   */
  signal?: AbortSignal;
}

/**
 * What the peer said of itself in its last Hello or Welcome: the settings the handshake
 * compared, so a tool can show what a node runs with (nonces and proofs are left out).
 */
export interface PeerSettings {
  /** The peer's node name. */
  readonly name: string;
  /** Its protocol version. */
  readonly version: number;
  /** Its cluster id (equal to ours: the handshake refuses any other). */
  readonly cluster: string;
  /** The policy its end of the session runs (`statelessServer`, `losslessPeer`, ...). */
  readonly policy: string;
  /** Its heartbeat mode, interval and detector settings (equal to ours, likewise). */
  readonly heartbeat: Readonly<HeartbeatSettings>;
  /** The addresses it listens on, as it announced them (at most 16). */
  readonly listening: readonly string[];
}

/** Counters of one connection (a snapshot). */
export type ConnectionStats = Readonly<SessionStats>;

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
     * the application decides what to send again. Payloads of small messages are copies (they
     * were kept as the frames they went out in); large ones are the buffers that were sent.
     */
    unacked: UnsentMessage[];
    reason: string;
  };

/** What a connection needs from the OOB layer of its messenger. */
export interface ConnectionOobPort {
  /** Registers a producer on `conn`. */
  register(
    conn: Connection,
    op: string,
    producer: OobProducer,
    options: OobOptions,
  ): OobRegistration;
  /** Last round-trip time measured on `conn`, ms (NaN before one). */
  rttMs(conn: Connection): number;
}

/** The ports a connection's session uses, with connections as the handles. */
export type ConnectionPorts = SessionPorts<Connection, Session<Connection>>;

const sessions = new WeakMap<Connection, Session<Connection>>();

/**
 * @internal the session behind a connection, for the messenger's registry and dialer (kept
 * off the public surface)
 */
export function sessionOf(conn: Connection): Session<Connection> {
  return sessions.get(conn)!;
}

let nextId = 1;

/**
 * One session with one peer. Get one from `messenger.connect(addr)` (or from an `accept` event
 * or `message.connection`).
 *
 * @example
 * ```ts
 * import { Messenger } from "./messenger.ts";
 * const a = new Messenger({ name: "a" });
 * const b = new Messenger({ name: "b" });
 * const addr = await a.listen("tcp://127.0.0.1:0");
 * {
 *   await using conn = await b.connect(addr);
 *   await conn.send(1, new Uint8Array([42]), { priority: "high" });
 *   if (conn.state !== "open" || conn.peerName !== "a") throw new Error("not open");
 * } // closed in order here
 * await b.close();
 * await a.close();
 * ```
 */
export class Connection {
  /** Process-unique id, shown in admin views and logs. */
  readonly id: number = nextId++;
  /** The address dialed (client) or the peer's address (server). */
  readonly remoteAddr: string;
  readonly #session: Session<Connection>;
  readonly #oob: ConnectionOobPort;
  readonly #maxFrameBytes: number;

  /** @internal created by the messenger */
  constructor(
    ports: ConnectionPorts,
    init: { side: "client" | "server"; policy: Policy; remoteAddr: string; oob: ConnectionOobPort },
  ) {
    this.remoteAddr = init.remoteAddr;
    this.#oob = init.oob;
    this.#maxFrameBytes = ports.limits.maxFrameBytes;
    this.#session = new Session(ports, {
      side: init.side,
      policy: init.policy,
      remoteAddr: init.remoteAddr,
      handle: this,
    });
    sessions.set(this, this.#session);
  }

  /**
   * Which end dialed the current link: `client` dialed (and redials after a fault), `server`
   * accepted (and waits in standby). A lossless peer session can change sides when a dial
   * race hands it the other node's link.
   */
  get side(): "client" | "server" {
    return this.#session.side;
  }

  /** The policy of this end (on the accepting side, set by the client's hello). */
  get policy(): Policy {
    return this.#session.policy;
  }

  /** Current state; see docs/state-machine.md. */
  get state(): ConnectionState {
    return this.#session.state;
  }

  /** The peer's node name, once the handshake is done. */
  get peerName(): string | undefined {
    return this.#session.peer?.name;
  }

  /** The peer's instance nonce, once the handshake is done. */
  get peerNonce(): string | undefined {
    return this.#session.peer?.nonce;
  }

  /**
   * The settings the peer announced in the handshake (a frozen copy), once the handshake is
   * done; `undefined` before.
   *
   * @example
   * ```ts
   * import { Messenger } from "./messenger.ts";
   * await using a = new Messenger({ name: "a", heartbeat: { intervalMs: 500 } });
   * await using b = new Messenger({ name: "b", heartbeat: { intervalMs: 500 } });
   * const conn = await b.connect(await a.listen("tcp://127.0.0.1:0"));
   * const peer = conn.peerSettings;
   * if (peer?.name !== "a" || peer.heartbeat.intervalMs !== 500) throw new Error("settings");
   * ```
   */
  get peerSettings(): PeerSettings | undefined {
    const hello = this.#session.peer;
    if (!hello) return undefined;
    return Object.freeze({
      name: hello.name,
      version: hello.version,
      cluster: hello.cluster,
      policy: hello.policy,
      heartbeat: Object.freeze({ ...hello.heartbeat }),
      listening: Object.freeze([...(hello.listening ?? [])]),
    });
  }

  /** Bytes of messages queued and not yet written. */
  get queuedBytes(): number {
    return this.#session.queue.bytes;
  }

  /** Messages queued and not yet written. */
  get queuedMessages(): number {
    return this.#session.queue.messages;
  }

  /** Messages written and not yet acknowledged by the peer (lossless policies). */
  get unackedMessages(): number {
    return this.#session.sequence.replay.count;
  }

  /** Highest sequence number received in this session. */
  get receivedSeq(): number {
    return this.#session.sequence.inSeq;
  }

  /** Messages written again after a resume (lossless). */
  get replayedMessages(): number {
    return this.#session.stats.replayed;
  }

  /** Replayed messages that had already been delivered and were dropped (lossless). */
  get duplicatesDropped(): number {
    return this.#session.stats.duplicatesDropped;
  }

  /** A snapshot of this connection's counters. */
  get stats(): ConnectionStats {
    return this.#session.stats;
  }

  /** @internal which link the session is on (1 for the first, +1 per new link) */
  get linkEpoch(): number {
    return this.#session.linkEpoch;
  }

  /** The error that ended the session, if it ended by a fault. */
  get error(): Error | null {
    return this.#session.error;
  }

  /** Last round-trip time measured from echoed heartbeat stamps, in ms (NaN before one). */
  get rttMs(): number {
    return this.#oob.rttMs(this);
  }

  /** Resolves when the handshake completes; rejects with the error if it fails. */
  opened(): Promise<void> {
    return this.#session.opened();
  }

  /** Resolves when the connection has reached `closed`, whatever the cause. */
  closed(): Promise<void> {
    return this.#session.closed();
  }

  /**
   * Queues a message. Resolves at once while the queue is under its limit; otherwise waits
   * until the writer has drained it below the limit (back-pressure). Every failure is a
   * rejected promise, never a throw: `TypeError`/`RangeError` for bad arguments,
   * `ConnectionClosedError` for a send made once the connection is closing or closed,
   * `QueueFullError` for one that would take the queue past twice `maxQueueBytes` (a sender
   * that did not wait), `signal.reason` when the signal aborts. A send already waiting for
   * room when an orderly close begins resolves: its message is queued and goes out before the
   * Close frame (should the close fail, it comes back in the `reset` event's `unsent`, as on
   * every fault).
   *
   * The payload is not copied: it must not change once sent, until it is written (lossy
   * policies) or acknowledged (lossless ones, which may write it again after a reconnect).
   * Large bodies (128 KiB or more) are written from where they lie. A body detached
   * (transferred), or a view whose length changed with its resizable buffer, before it is
   * written or written again ends the connection with an `UnwritableMessageError` in its
   * `reset` event, which hands back what it held.
   */
  send(type: number, payload: Uint8Array, options?: SendOptions): Promise<void> {
    try {
      if (!Number.isInteger(type) || type < 0 || type > 0xffff_ffff) {
        throw new RangeError(`Message type must be a u32: ${type}`);
      }
      if (!(payload instanceof Uint8Array)) {
        throw new TypeError("Message payload must be a Uint8Array");
      }
      const limit = this.#maxFrameBytes;
      if (MESSAGE_HEADER_BYTES + payload.length > limit) {
        throw new RangeError(`Message too large: ${payload.length} bytes, frame limit ${limit}`);
      }
      const priority = options?.priority === undefined ? 1 : priorityIndex(options.priority);
      options?.signal?.throwIfAborted();
      return this.#session.send(type, priority, payload, options?.signal);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Closes the session in order: queued messages are written first, then a Close frame; the
   * promise resolves when the peer has answered (or the close timeout passed). A connection
   * that is not open (handshaking, reconnecting, standby) ends at once.
   */
  close(reason = "closed by application", options: CloseOptions = {}): Promise<void> {
    const { signal } = options;
    if (signal?.aborted) {
      this.abort(new ConnectionClosedError(`Close aborted: ${reason}`, { cause: signal.reason }));
      return Promise.reject(signal.reason);
    }
    const done = this.#session.close(reason);
    if (!signal) return done;
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const onAbort = () => {
      this.abort(new ConnectionClosedError(`Close aborted: ${reason}`, { cause: signal.reason }));
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    done.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    return promise;
  }

  /**
   * Ends the session at once, without the Close exchange: the link is cut, queued and
   * unacknowledged messages are reported as `unsent` in the `reset` event, whose error is
   * `error`.
   */
  abort(error: Error = new ConnectionClosedError("Connection aborted")): void {
    this.#session.abort(error);
  }

  /** Closes in order (for `await using`). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close("disposed");
  }

  /**
   * Registers an out-of-band producer on this connection: every `intervalMs` (aligned, so
   * related intervals meet) the producer is asked for bytes, and every part due in the same
   * wheel tick travels in one heartbeat frame ahead of queued data. The peer's handler for
   * `op` (`messenger.onOob(op, handler)`) receives it. Cancelled with the connection, or with
   * `using`.
   */
  registerOob(op: string, producer: OobProducer, options: OobOptions): OobRegistration {
    const state = this.#session.state;
    if (state === "closed" || state === "closing") throw this.#session.closedError();
    return this.#oob.register(this, op, producer, options);
  }

  /** @internal queues an encoded control frame ahead of all data (heartbeats) */
  sendControl(frame: Uint8Array): void {
    this.#session.sendControl(frame);
  }
}
