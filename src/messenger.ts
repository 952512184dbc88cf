/**
 * Messenger: one per node. Owns the listeners, the connection registry, the inbound message
 * queue, the event stream and the timer wheel; dispatches what connections read.
 *
 * @module
 */

import { AsyncQueue, Broadcast } from "./_async_queue.ts";
import {
  Connection,
  type ConnectionEnd,
  type ConnectionHost,
  type ConnectionState,
  type Message,
  type SessionEvent,
  SupersededError,
  type UnsentMessage,
} from "./connection.ts";
import * as defaults from "./defaults.ts";
import { type Counters, newCounters } from "./counters.ts";
import {
  ConnectionClosedError,
  type FrameError,
  HandshakeRefusedError,
  TransportError,
} from "./errors.ts";
import { consoleLogger, type Logger } from "./log.ts";
import { Policies, type PolicyName, serverPolicyFor } from "./policy.ts";
import { PROTOCOL_VERSION, Tag } from "./protocol/frame.ts";
import { KEEPALIVE_OP, type OobHandler, OobService, type OobStats } from "./oob/oob.ts";
import { HEARTBEAT_FIELDS, type HeartbeatSettings, type Hello } from "./protocol/payloads.ts";
import {
  HealthService,
  type NodeEvent,
  type PeerInfo,
  type WatchOptions,
} from "./health/health.ts";
import type { Clock } from "./timer/clock.ts";
import { TimerWheel } from "./timer/timer_wheel.ts";
import { TcpTransport } from "../transports/tcp.ts";
import type { Link, Listener, Transport } from "../transports/types.ts";

/** Options of {@linkcode Messenger}. */
export interface MessengerOptions {
  /** This node's name, sent in the handshake. Default: `node-` and a random suffix. */
  name?: string;
  /** Cluster id; peers with another id are refused. Default {@linkcode defaults.CLUSTER}. */
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
  /** Received messages held for `messages()` before reading pauses. Default 10,000. */
  maxInboundMessages?: number;
  /** Time a new link has to finish its handshake. Default 5 s. */
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
  /** `statefulServer`: how long a session waits in standby for its client. Default 30 s. */
  sessionTimeoutMs?: number;
  /** `losslessClient`: first reconnect delay; it doubles per failed try. Default 50 ms. */
  reconnectBaseMs?: number;
  /** `losslessClient`: longest reconnect delay (before jitter). Default 5 s. */
  reconnectMaxMs?: number;
}

/** Options of {@linkcode Messenger.connect}. */
export interface ConnectOptions {
  /** Client policy of the new connection. Default `lossyClient`. */
  policy?: PolicyName;
  /** Aborts the dial and handshake. */
  signal?: AbortSignal;
}

/** Events a messenger reports, as a tagged union on `kind`. */
export type MessengerEvent =
  | {
    /** A connection this node dialed completed its handshake. */
    kind: "connect";
    connection: Connection;
  }
  | {
    /** A connection this node accepted completed its handshake. */
    kind: "accept";
    connection: Connection;
  }
  | {
    /** A session ended in order, by this side or the peer. */
    kind: "close";
    connection: Connection;
    by: "local" | "peer";
    reason: string;
  }
  | {
    /** A session ended by a fault; `unsent` holds the messages that were never written. */
    kind: "reset";
    connection: Connection;
    error: Error;
    unsent: UnsentMessage[];
  }
  | {
    /** A connection failed before its session opened (bad input, refusal, timeout). */
    kind: "error";
    connection: Connection;
    error: Error;
  }
  | SessionEvent;

/** What `GET /health` reports. */
export interface MessengerHealth {
  /** Node name. */
  name: string;
  /** Instance nonce. */
  nonce: string;
  /** `running` or `closing` or `closed`. */
  status: "running" | "closing" | "closed";
  /** Milliseconds since the messenger was created. */
  uptimeMs: number;
  /** Bound listener addresses. */
  listening: string[];
  /** Connections by state. */
  connections: Record<ConnectionState, number>;
}

function randomHex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

/**
 * A node's messenger.
 *
 * @example
 * ```ts
 * import { Messenger } from "./messenger.ts";
 * const a = new Messenger({ name: "a" });
 * const b = new Messenger({ name: "b" });
 * const addr = await a.listen("tcp://127.0.0.1:0");
 * const conn = await b.connect(addr);
 * await conn.send(7, new Uint8Array([1, 2, 3]));
 * for await (const m of a.messages()) {
 *   if (m.type !== 7 || m.payload.length !== 3) throw new Error("wrong message");
 *   break;
 * }
 * await b.close();
 * await a.close();
 * ```
 */
export class Messenger {
  /** This node's name. */
  readonly name: string;
  /** Random per-instance nonce: a restarted node has a new one. */
  readonly nonce: string = randomHex(8);
  /** The central timer wheel: the only periodic timer of this messenger. */
  readonly wheel: TimerWheel;
  #options: Required<
    Pick<
      MessengerOptions,
      | "cluster"
      | "maxFrameBytes"
      | "maxQueueBytes"
      | "maxInboundMessages"
      | "handshakeTimeoutMs"
      | "closeTimeoutMs"
      | "maxUnackedBytes"
      | "sessionTimeoutMs"
      | "reconnectBaseMs"
      | "reconnectMaxMs"
    >
  >;
  #sessions = new Map<string, Connection>();
  #counters: Counters = newCounters();
  #peerAddrs = new Map<string, string>(); // listen address -> peer name (from hellos)
  #sessionWaiters = new Map<string, ((conn: Connection) => void)[]>();
  #heartbeat: HeartbeatSettings;
  #transports = new Map<string, Transport>();
  #listeners = new Set<Listener>();
  #connections = new Set<Connection>();
  #dialed = new Map<string, Connection>();
  #inbound = new AsyncQueue<Message>();
  #events = new Broadcast<MessengerEvent>();
  #log: Logger;
  #started: number;
  #status: "running" | "closing" | "closed" = "running";
  #host: ConnectionHost;
  #onClose: (() => void | Promise<void>)[] = [];
  #oob: OobService;
  #health: HealthService;
  #refused = new Map<string, { error: HandshakeRefusedError; until: number }>();
  #refusedRetryMs: number;

  /** Creates a messenger; it does nothing until `listen()` or `connect()`. */
  constructor(options: MessengerOptions = {}) {
    this.name = options.name ?? `node-${randomHex(3)}`;
    this.#options = {
      cluster: options.cluster ?? defaults.CLUSTER,
      maxFrameBytes: positive("maxFrameBytes", options.maxFrameBytes, defaults.MAX_FRAME_BYTES),
      maxQueueBytes: positive("maxQueueBytes", options.maxQueueBytes, defaults.MAX_QUEUE_BYTES),
      maxInboundMessages: positive(
        "maxInboundMessages",
        options.maxInboundMessages,
        defaults.MAX_INBOUND_MESSAGES,
      ),
      handshakeTimeoutMs: positive(
        "handshakeTimeoutMs",
        options.handshakeTimeoutMs,
        defaults.HANDSHAKE_TIMEOUT_MS,
      ),
      closeTimeoutMs: positive("closeTimeoutMs", options.closeTimeoutMs, defaults.CLOSE_TIMEOUT_MS),
      maxUnackedBytes: positive(
        "maxUnackedBytes",
        options.maxUnackedBytes,
        defaults.MAX_UNACKED_BYTES,
      ),
      sessionTimeoutMs: positive(
        "sessionTimeoutMs",
        options.sessionTimeoutMs,
        defaults.SESSION_TIMEOUT_MS,
      ),
      reconnectBaseMs: positive(
        "reconnectBaseMs",
        options.reconnectBaseMs,
        defaults.RECONNECT_BASE_MS,
      ),
      reconnectMaxMs: positive("reconnectMaxMs", options.reconnectMaxMs, defaults.RECONNECT_MAX_MS),
    };
    this.#heartbeat = resolveHeartbeat(options.heartbeat ?? {});
    this.#refusedRetryMs = options.refusedRetryMs ?? defaults.REFUSED_RETRY_MS;
    for (const t of options.transports ?? [new TcpTransport()]) {
      for (const scheme of t.schemes) this.#transports.set(scheme, t);
    }
    this.#log = options.logger ?? consoleLogger;
    this.wheel = new TimerWheel({
      clock: options.clock,
      tickMs: options.tickMs,
      onError: (e) => this.#log("error", `timer callback failed: ${(e as Error)?.stack ?? e}`),
    });
    this.#started = this.wheel.clock.now();
    this.#oob = new OobService(this.wheel, this.#log);
    this.#health = this.#makeHealth();
    this.#host = this.#makeHost();
  }

  #makeHealth(): HealthService {
    const health = new HealthService(this.wheel, this.#oob, this.#heartbeat, (c) => c.rttMs);
    this.#oob.onHeartbeat = (conn, echoed) => {
      health.heartbeat(conn, this.wheel.clock.now(), echoed);
    };
    return health;
  }

  /**
   * Node events: each peer going `up`, `suspect` or `down`, as an async iterable; any number
   * of subscribers. In global mode (the default) every subscription shares one detector per
   * peer, fed by the heartbeats on the data connections, so a thousand subscribers cost no
   * more frames than one. In local mode each distinct `name` heartbeats for itself (its own
   * OOB op, interval and detectors), and sees a peer only if that peer runs a watcher of the
   * same name.
   */
  watch(name = "default", options: WatchOptions = {}): AsyncIterable<NodeEvent> {
    this.#checkRunning();
    return this.#health.watch(name, options);
  }

  /** A snapshot of every peer seen: state, phi, round-trip time, last heard. */
  peers(): PeerInfo[] {
    return this.#health.peers();
  }

  /** Messenger-wide counters (frames and bytes by tag, messages by priority, resets...). */
  get counters(): Readonly<Counters> {
    return this.#counters;
  }

  /** Count of `down` events since the messenger started (for the saturation check). */
  get downEvents(): number {
    return this.#health.downEvents;
  }

  /**
   * Changes the heartbeat settings. Allowed only while the messenger is stopped: no listener,
   * no connection and no node-event subscription. The settings are part of the handshake, so
   * every node of a cluster must change them together.
   */
  setHeartbeat(settings: Partial<HeartbeatSettings>): void {
    this.#checkRunning();
    const busy = [];
    if (this.#listeners.size > 0) busy.push(`${this.#listeners.size} listener(s)`);
    if (this.#connections.size > 0) busy.push(`${this.#connections.size} connection(s)`);
    if (this.#health.subscribers > 0) busy.push(`${this.#health.subscribers} subscription(s)`);
    if (busy.length > 0) {
      throw new TypeError(
        `Heartbeat settings can change only while the messenger is stopped: it has ${
          busy.join(", ")
        }`,
      );
    }
    this.#heartbeat = resolveHeartbeat({ ...this.#heartbeat, ...settings });
    this.#health.close();
    this.#health = this.#makeHealth();
    this.#refused.clear();
  }

  /**
   * Routes OOB parts of `op` to `handler` (one handler per op), on the read path: parts are
   * handled as frames are read, never queued behind data. Returns a function that removes it.
   * Parts of an op with no handler are counted and logged once.
   */
  onOob(op: string, handler: OobHandler): () => void {
    return this.#oob.handle(op, handler);
  }

  /** Counters of the OOB layer (heartbeat frames, parts by op, errors). */
  get oobStats(): Readonly<OobStats> {
    return this.#oob.stats;
  }

  /** @internal the OOB engine, for the health and admin modules */
  get _oob(): OobService {
    return this.#oob;
  }

  /** The heartbeat settings this node enforces at handshake. */
  get heartbeat(): Readonly<HeartbeatSettings> {
    return this.#heartbeat;
  }

  /** The cluster id. */
  get cluster(): string {
    return this.#options.cluster;
  }

  /** `running`, `closing` or `closed`. */
  get status(): "running" | "closing" | "closed" {
    return this.#status;
  }

  /** Binds `addr` (`tcp://127.0.0.1:0`, `mem://a`, ...) and returns the bound address. */
  async listen(addr: string): Promise<string> {
    this.#checkRunning();
    const listener = await this.#transportFor(addr).listen(addr);
    this.#listeners.add(listener);
    this.#acceptLoop(listener);
    return listener.addr;
  }

  /**
   * Accepts connections from a listener made elsewhere, for example a WebSocket endpoint
   * mounted in your own HTTP server (`WebSocketTransport.attach()`). Returns its address.
   */
  listenOn(listener: Listener): string {
    this.#checkRunning();
    this.#listeners.add(listener);
    this.#acceptLoop(listener);
    return listener.addr;
  }

  /**
   * Returns the connection to `addr`, dialing it if there is none: one connection per peer
   * address. Resolves once the handshake is done; rejects with `HandshakeRefusedError`,
   * `FrameError`, `TransportError` or `ConnectionClosedError`.
   */
  async connect(addr: string, options: ConnectOptions = {}): Promise<Connection> {
    this.#checkRunning();
    options.signal?.throwIfAborted();
    const refused = this.#refused.get(addr);
    if (refused) {
      if (refused.until > this.wheel.clock.now()) throw refused.error;
      this.#refused.delete(addr);
    }
    const existing = this.#dialed.get(addr) ?? this.#sessionAt(addr);
    if (existing && existing.state !== "closed" && existing.state !== "closing") {
      await existing.opened();
      return existing;
    }
    const policy = Policies[options.policy ?? "lossyClient"];
    if (!policy || policy.role === "server") {
      throw new TypeError(`Not a dialing policy: ${options.policy}`);
    }
    const transport = this.#transportFor(addr);
    const conn = new Connection(this.#host, "client", policy, addr);
    this.#dialed.set(addr, conn);
    this.#connections.add(conn);
    const abort = () => conn.dialFailed(options.signal!.reason);
    options.signal?.addEventListener("abort", abort, { once: true });
    try {
      let link;
      // The dial itself is bounded by the handshake timeout too (a wheel timer, no host timer).
      const dial = new AbortController();
      const timeout = this.wheel.schedule(this.#options.handshakeTimeoutMs, () => {
        dial.abort(new TransportError(`Dial to ${addr} timed out`));
      });
      const signal = options.signal ? AbortSignal.any([options.signal, dial.signal]) : dial.signal;
      try {
        link = await transport.connect(addr, { signal });
      } catch (error) {
        const why = dial.signal.aborted ? dial.signal.reason as Error : error as Error;
        conn.dialFailed(why);
        throw why;
      } finally {
        timeout.cancel();
      }
      if (conn.state === "closed" || this.#status !== "running") {
        // Aborted, superseded by the peer's winning dial, or the messenger is closing.
        link.close();
        if (this.#status !== "running") {
          throw conn.error ?? new ConnectionClosedError(`Messenger ${this.name} is closing`);
        }
      } else {
        conn.attach(link);
      }
      try {
        await conn.opened();
      } catch (error) {
        if (error instanceof SupersededError) {
          // A dial race: the peer's own dial carries the session.
          await error.winner.opened();
          return error.winner;
        }
        if (error instanceof HandshakeRefusedError && error.field === "race") {
          return await this.#awaitSession(String(error.peer));
        }
        if (error instanceof HandshakeRefusedError) {
          const until = this.wheel.clock.now() + this.#refusedRetryMs;
          this.#refused.set(addr, { error, until });
        }
        throw error;
      }
      if (policy.role === "peer") this.#registerPeerSession(conn);
      return conn;
    } finally {
      options.signal?.removeEventListener("abort", abort);
    }
  }

  /** The live peer session with the node known to listen at `addr`, if any. */
  #sessionAt(addr: string): Connection | undefined {
    const name = this.#peerAddrs.get(addr);
    return name === undefined ? undefined : this.#sessions.get(name);
  }

  #registerPeerSession(conn: Connection): void {
    const name = conn.peerName!;
    const current = this.#sessions.get(name);
    if (!current || current.state === "closed") this.#sessions.set(name, conn);
    for (const w of this.#sessionWaiters.get(name) ?? []) w(conn);
    this.#sessionWaiters.delete(name);
  }

  /** Resolves with the session for `name` once its handshake is done (after a lost race). */
  async #awaitSession(name: string): Promise<Connection> {
    let session = this.#sessions.get(name);
    if (!session || session.state === "closed") {
      session = await new Promise<Connection>((resolve, reject) => {
        const list = this.#sessionWaiters.get(name) ?? [];
        const timer = this.wheel.schedule(this.#options.handshakeTimeoutMs, () => {
          const i = list.indexOf(waiter);
          if (i >= 0) list.splice(i, 1);
          reject(new ConnectionClosedError(`Lost a dial race to ${name}, whose dial never came`));
        });
        const waiter = (conn: Connection) => {
          timer.cancel();
          resolve(conn);
        };
        list.push(waiter);
        this.#sessionWaiters.set(name, list);
      });
    }
    await session.opened();
    return session;
  }

  /**
   * Received messages, in arrival order. Iterators compete: each message goes to one of them.
   * While nobody consumes, up to `maxInboundMessages` wait here and then the messenger stops
   * reading its sockets, so senders feel back-pressure.
   */
  messages(): AsyncIterable<Message> {
    return this.#inbound;
  }

  /** A new subscription to this messenger's events; any number may be open. */
  events(options: { signal?: AbortSignal } = {}): AsyncIterable<MessengerEvent> {
    return this.#events.subscribe(options.signal);
  }

  /** A snapshot of the connections that are not closed. */
  connections(): Connection[] {
    return [...this.#connections];
  }

  /** Health summary (what `GET /health` serves). */
  health(): MessengerHealth {
    const connections: Record<ConnectionState, number> = {
      connecting: 0,
      handshaking: 0,
      open: 0,
      standby: 0,
      reconnecting: 0,
      closing: 0,
      closed: 0,
    };
    for (const c of this.#connections) connections[c.state]++;
    return {
      name: this.name,
      nonce: this.nonce,
      status: this.#status,
      uptimeMs: Math.round(this.wheel.clock.now() - this.#started),
      listening: [...this.#listeners].map((l) => l.addr),
      connections,
    };
  }

  /**
   * Closes listeners and connections (in order, each within the close timeout), the wheel
   * and the iterators.
   */
  async close(): Promise<void> {
    if (this.#status !== "running") return;
    this.#status = "closing";
    for (const l of this.#listeners) l.close();
    this.#listeners.clear();
    await Promise.all([...this.#connections].map((c) => c.close("messenger closing")));
    this.#health.close();
    for (const hook of this.#onClose.splice(0)) await hook();
    this.wheel.close();
    this.#inbound.close();
    this.#events.close();
    this.#status = "closed";
  }

  /** @internal runs `hook` when the messenger closes, after its connections (the admin server) */
  _onClose(hook: () => void | Promise<void>): void {
    this.#onClose.push(hook);
  }

  #checkRunning(): void {
    if (this.#status !== "running") {
      throw new ConnectionClosedError(`Messenger ${this.name} is ${this.#status}`);
    }
  }

  #transportFor(addr: string): Transport {
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(addr)?.[1]?.toLowerCase();
    const transport = scheme ? this.#transports.get(scheme) : undefined;
    if (!transport) {
      throw new TypeError(
        `No transport for address: ${addr} (have ${[...this.#transports.keys()].join(", ")})`,
      );
    }
    return transport;
  }

  async #acceptLoop(listener: Listener): Promise<void> {
    try {
      for await (const link of listener) {
        if (this.#status !== "running") {
          link.close();
          continue;
        }
        const conn = new Connection(
          this.#host,
          "server",
          Policies.statelessServer,
          link.remoteAddr,
        );
        this.#connections.add(conn);
        conn.attach(link);
      }
    } catch (error) {
      this.#log("error", `listener ${listener.addr} failed: ${(error as Error).message}`);
    } finally {
      this.#listeners.delete(listener);
    }
  }

  #checkPeer(hello: Hello, conn: Connection): HandshakeRefusedError | undefined {
    const differs = (field: string, local: unknown, peer: unknown) =>
      new HandshakeRefusedError(field, `${field} differs: local ${local}, peer ${peer}`, {
        local,
        peer,
      });
    if (hello.version !== PROTOCOL_VERSION) {
      return differs("version", PROTOCOL_VERSION, hello.version);
    }
    if (hello.cluster !== this.#options.cluster) {
      return differs("cluster", this.#options.cluster, hello.cluster);
    }
    for (const field of HEARTBEAT_FIELDS) {
      if (hello.heartbeat[field] !== this.#heartbeat[field]) {
        return differs(`heartbeat.${field}`, this.#heartbeat[field], hello.heartbeat[field]);
      }
    }
    const expected = conn.side === "server"
      ? serverPolicyFor(hello.policy) && hello.policy
      : serverPolicyFor(conn.policy.name)?.name;
    if (!expected || expected !== hello.policy) {
      return new HandshakeRefusedError(
        "policy",
        `policy does not fit: local ${conn.policy.name}, peer ${hello.policy}`,
        { local: conn.policy.name, peer: hello.policy },
      );
    }
    return undefined;
  }

  #makeHost(): ConnectionHost {
    const inbound = this.#inbound;
    const limit = this.#options.maxInboundMessages;
    const hello = (): Omit<Hello, "policy"> => ({
      version: PROTOCOL_VERSION,
      name: this.name,
      nonce: this.nonce,
      cluster: this.#options.cluster,
      heartbeat: this.#heartbeat,
      listening: [...this.#listeners].map((l) => l.addr),
    });
    const host: ConnectionHost = {
      counters: this.#counters,
      // A getter: the hello carries the settings of the moment (they change while stopped).
      get localHello() {
        return hello();
      },
      wheel: this.wheel,
      limits: this.#options,
      checkPeer: (hello, conn) => this.#checkPeer(hello, conn),
      deliver: (message) => {
        inbound.push(message);
      },
      inboundBackpressure: () =>
        inbound.size >= limit ? inbound.waitBelow(Math.max(1, limit >> 1)) : undefined,
      heard: (conn) => this.#health.heard(conn, this.wheel.clock.now()),
      registerOob: (conn, op, producer, options) => this.#oob.register(conn, op, producer, options),
      rttMs: (conn) => this.#oob.state(conn).rttMs,
      frame: (conn, tag, payload) => {
        if (tag !== Tag.Heartbeat) return false;
        this.#oob.receive(conn, payload);
        return true;
      },
      opened: (conn) => {
        this.#log("info", `connection ${conn.id} open with ${conn.peerName}`);
        // The messenger's own keepalive: one more registration, coalesced like the others.
        this.#oob.register(conn, KEEPALIVE_OP, null, { intervalMs: this.#heartbeat.intervalMs });
        this.#health.opened(conn);
        this.#events.publish({
          kind: conn.side === "client" ? "connect" : "accept",
          connection: conn,
        });
      },
      ended: (conn, how) => this.#ended(conn, how),
      route: (hello, conn) => this.#route(hello, conn),
      abandoned: (conn) => {
        this.#connections.delete(conn);
        if (this.#dialed.get(conn.remoteAddr) === conn) this.#dialed.delete(conn.remoteAddr);
      },
      redial: (conn) => this.#redial(conn.remoteAddr),
      bug: (conn, error) => {
        this.#log("error", `connection ${conn.id}: defect: ${(error as Error)?.stack ?? error}`);
      },
      reincarnated: (conn) => this.#health.opened(conn),
      session: (event) => {
        if (event.kind === "resume") this.#counters.reconnects++;
        if (event.kind === "remote-reset") {
          this.#counters.remoteResets++;
          this.#log(
            "warn",
            `session with ${event.connection.peerName} reset (${event.reason}): ${event.lost} unacknowledged message(s) lost`,
          );
        }
        this.#events.publish(event);
      },
    };
    return host;
  }

  /** A lossless client's redial, bounded by the handshake timeout like the first dial. */
  async #redial(addr: string): Promise<Link> {
    const dial = new AbortController();
    const timeout = this.wheel.schedule(this.#options.handshakeTimeoutMs, () => {
      dial.abort(new TransportError(`Redial to ${addr} timed out`));
    });
    try {
      return await this.#transportFor(addr).connect(addr, { signal: dial.signal });
    } finally {
      timeout.cancel();
    }
  }

  /**
   * Server side: the connection a hello belongs to. Lossless sessions are kept by peer name;
   * a lossless peer's dial that races one of ours is settled here (docs/policies.md).
   */
  #route(hello: Hello, conn: Connection): Connection | HandshakeRefusedError | FrameError {
    const policy = serverPolicyFor(hello.policy)!;
    conn._assumePolicy(policy);
    if (policy.lossy) return conn;
    for (const addr of hello.listening ?? []) this.#peerAddrs.set(addr, hello.name);
    if (policy.role === "peer") {
      const raced = this.#raceWith(hello);
      if (raced instanceof HandshakeRefusedError) return raced;
    }
    const existing = this.#sessions.get(hello.name);
    if (
      existing && existing !== conn && existing.state !== "closed" && existing.state !== "closing"
    ) {
      return existing._checkAdopt(hello) ?? existing;
    }
    this.#sessions.set(hello.name, conn);
    if (policy.role === "peer") {
      const listening = new Set(hello.listening ?? []);
      for (const [addr, ours] of this.#dialed) {
        if (listening.has(addr) && ours.policy.role === "peer" && ours !== conn) {
          if (ours.state === "connecting" || ours.state === "handshaking") ours._supersede(conn);
        }
      }
      conn.opened().then(() => this.#registerPeerSession(conn), () => {});
    }
    return conn;
  }

  /**
   * A peer dialed us while we may be dialing it. The link dialed by the node whose name sorts
   * first wins: if that is the peer, our pending dial is superseded; if it is us, the peer's
   * dial is refused with `race` and its connect() waits for ours.
   */
  #raceWith(hello: Hello): HandshakeRefusedError | undefined {
    const race = () =>
      new HandshakeRefusedError("race", `Dial race: ${this.name} keeps its session`, {
        local: this.name,
        peer: this.name,
      });
    // A healthy session already joins us: a fresh dial from the same incarnation (one that
    // does not know of the session) loses, and its connect() resolves to that session.
    const session = this.#sessions.get(hello.name);
    if (session?.state === "open" && session.peerNonce === hello.nonce && !hello.resumeNonce) {
      return race();
    }
    const listening = new Set(hello.listening ?? []);
    const ours = [...this.#dialed.entries()].find(([addr, c]) =>
      listening.has(addr) && c.policy.role === "peer" &&
      (c.state === "connecting" || c.state === "handshaking")
    )?.[1];
    if (!ours) return undefined;
    if (hello.name < this.name) return undefined; // theirs wins; ours is superseded in #route
    return race();
  }

  #ended(conn: Connection, how: ConnectionEnd): void {
    this.#connections.delete(conn);
    const name = conn.peerName;
    if (name !== undefined && this.#sessions.get(name) === conn) this.#sessions.delete(name);
    this.#oob.forget(conn);
    if (how.kind === "close" || how.wasOpen) {
      this.#health.ended(conn, how.kind === "close" ? "closed" : "reset");
    }
    if (this.#dialed.get(conn.remoteAddr) === conn) this.#dialed.delete(conn.remoteAddr);
    if (how.kind === "close") {
      this.#events.publish({ kind: "close", connection: conn, by: how.by, reason: how.reason });
      return;
    }
    if (how.kind === "reset" && how.error instanceof HandshakeRefusedError) {
      if (how.error.field === "race") {
        // Settling a dial race is routine: the winning dial carries the session.
        this.#log("debug", `connection ${conn.id}: ${how.error.message}`);
        return;
      }
    }
    const what = `connection ${conn.id} (${conn.side}, ${conn.remoteAddr})`;
    this.#log("warn", `${what} ${how.wasOpen ? "reset" : "failed"}: ${how.error.message}`);
    if (how.wasOpen) {
      this.#counters.resets++;
      this.#events.publish({
        kind: "reset",
        connection: conn,
        error: how.error,
        unsent: how.unsent,
      });
    } else {
      this.#events.publish({ kind: "error", connection: conn, error: how.error });
    }
  }
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new RangeError(`Option ${name} must be a positive number: ${value}`);
  }
  return value;
}

function resolveHeartbeat(h: Partial<HeartbeatSettings>): HeartbeatSettings {
  const intervalMs = positive("heartbeat.intervalMs", h.intervalMs, defaults.HEARTBEAT_INTERVAL_MS);
  const settings: HeartbeatSettings = {
    mode: h.mode ?? "global",
    detector: h.detector ?? "phi",
    intervalMs,
    phiThreshold: positive("heartbeat.phiThreshold", h.phiThreshold, defaults.PHI_THRESHOLD),
    acceptablePauseMs: h.acceptablePauseMs ?? defaults.ACCEPTABLE_PAUSE_MS,
    minStdDevMs: positive("heartbeat.minStdDevMs", h.minStdDevMs, defaults.MIN_STD_DEV_MS),
    graceMs: positive("heartbeat.graceMs", h.graceMs, defaults.GRACE_MS),
  };
  if (settings.mode !== "global" && settings.mode !== "local") {
    throw new TypeError(`Unknown heartbeat mode: ${settings.mode}`);
  }
  if (settings.detector !== "phi" && settings.detector !== "grace") {
    throw new TypeError(`Unknown heartbeat detector: ${settings.detector}`);
  }
  if (!(settings.acceptablePauseMs >= 0)) {
    throw new RangeError(`Option heartbeat.acceptablePauseMs must be >= 0: ${h.acceptablePauseMs}`);
  }
  return settings;
}
