/**
 * Messenger: one per node, and the composition root. It wires the timer wheel, the OOB
 * service, the health service, the session registry and the dialer together, implements the
 * ports that sessions report through, and owns the listeners, the inbound message queue and
 * the event stream.
 *
 * @module
 */

import { Broadcast } from "./_async_queue.ts";
import { Connection, type ConnectionPorts, type Message, sessionOf } from "./connection.ts";
import * as defaults from "./defaults.ts";
import { randomHex } from "./_random.ts";
import { type Counters, newCounters, snapshotCounters } from "./counters.ts";
import { ConnectionClosedError, HandshakeRefusedError, TimeoutError } from "./errors.ts";
import { consoleLogger, type Logger } from "./log.ts";
import {
  checkListen,
  type Limits,
  type MessengerOptions,
  resolveKeys,
  resolveLimits,
} from "./options.ts";
import type { Keys } from "./protocol/auth.ts";
import {
  type MessagesOptions,
  type MessengerEvent,
  type MessengerHealth,
  sessionEvent,
  type TimerStats,
} from "./events.ts";
import { Policies, type Policy } from "./policy.ts";
import { PROTOCOL_VERSION } from "./protocol/frame.ts";
import { printable } from "./protocol/text.ts";
import { KEEPALIVE_OP, type OobHandler, OobService } from "./oob/service.ts";
import type { OobStats } from "./oob/types.ts";
import { type HeartbeatSettings, resolveHeartbeat } from "./health/settings.ts";
import {
  HealthService,
  type NodeEvent,
  type PeerInfo,
  type WatchOptions,
} from "./health/health.ts";
import { type ConnectOptions, Dialer } from "./node/dialer.ts";
import { IdleWatch } from "./node/idle.ts";
import { InboundQueue } from "./node/inbound.ts";
import { SessionRegistry } from "./node/registry.ts";
import type { LosslessEvent, SessionEnd } from "./session/ports.ts";
import type { Clock } from "./timer/clock.ts";
import { type Timer, TimerWheel } from "./timer/timer_wheel.ts";
import { TcpTransport } from "../transports/tcp.ts";
import type { Listener, Transport } from "../transports/types.ts";

export type { ConnectOptions } from "./node/dialer.ts";
export type { MessengerOptions } from "./options.ts";
export type { MessagesOptions, MessengerEvent, MessengerHealth, TimerStats } from "./events.ts";

/**
 * A node's messenger.
 *
 * @example
 * ```ts
 * import { Messenger } from "./messenger.ts";
 * await using a = new Messenger({ name: "a" });
 * await using b = new Messenger({ name: "b" });
 * const addr = await a.listen("tcp://127.0.0.1:0");
 * const conn = await b.connect(addr);
 * await conn.send(7, new Uint8Array([1, 2, 3]));
 * for await (const m of a.messages()) {
 *   if (m.type !== 7 || m.payload.length !== 3) throw new Error("wrong message");
 *   break;
 * }
 * ```
 */
export class Messenger {
  /** This node's name. */
  readonly name: string;
  /** Random per-instance nonce: a restarted node has a new one. */
  readonly nonce: string = randomHex(8);
  readonly #wheel: TimerWheel;
  readonly #limits: Limits;
  readonly #cluster: string;
  readonly #counters: Counters = newCounters();
  #heartbeat: HeartbeatSettings;
  readonly #transports = new Map<string, Transport>();
  readonly #listeners = new Set<Listener>();
  readonly #inbound: InboundQueue;
  readonly #events = new Broadcast<MessengerEvent>();
  readonly #nodeEvents = new Broadcast<NodeEvent>(1000);
  readonly #log: Logger;
  readonly #started: number;
  #status: "running" | "closing" | "closed" = "running";
  readonly #onClose: (() => void | Promise<void>)[] = [];
  readonly #oob: OobService<Connection>;
  #health: HealthService;
  readonly #registry: SessionRegistry;
  readonly #dialer: Dialer;
  readonly #idle: IdleWatch;
  readonly #ports: ConnectionPorts;
  readonly #random: () => number;
  readonly #keys: Keys | null;
  readonly #skipsChecksums: boolean;
  readonly #insecure: boolean;

  /** Creates a messenger; it does nothing until `listen()` or `connect()`. */
  constructor(options: MessengerOptions = {}) {
    this.name = options.name ?? `node-${randomHex(3)}`;
    this.#cluster = options.cluster ?? defaults.CLUSTER;
    this.#limits = resolveLimits(options);
    this.#inbound = new InboundQueue(this.#limits);
    this.#heartbeat = resolveHeartbeat(options.heartbeat ?? {});
    this.#random = options.random ?? Math.random;
    this.#keys = resolveKeys(this.name, options.auth);
    this.#skipsChecksums = options.checksumSecureLinks !== true;
    this.#insecure = options.insecure ?? false;
    for (const t of options.transports ?? [new TcpTransport()]) {
      for (const scheme of t.schemes) this.#transports.set(scheme, t);
    }
    this.#log = options.logger ?? consoleLogger;
    this.#wheel = new TimerWheel({
      clock: options.clock,
      tickMs: options.tickMs,
      onError: (e) => this.#log("error", `timer callback failed: ${(e as Error)?.stack ?? e}`),
    });
    this.#started = this.#wheel.clock.now();
    this.#oob = new OobService<Connection>(this.#wheel, this.#log);
    this.#health = this.#makeHealth();
    this.#registry = new SessionRegistry(this.name, this.#wheel);
    this.#dialer = new Dialer({
      registry: this.#registry,
      timers: this.#wheel,
      clock: this.#wheel.clock,
      limits: this.#limits,
      transportFor: (addr) => this.#transportFor(addr),
      newConnection: (policy, addr) => this.#newConnection("client", policy, addr),
      checkRunning: () => this.#checkRunning(),
    });
    this.#ports = this.#makePorts();
    this.#idle = new IdleWatch(this.#wheel, this.#limits.idleTimeoutMs, (conn, silentMs) => {
      const ms = this.#limits.idleTimeoutMs;
      sessionOf(conn).fault(new TimeoutError(`Link silent for ${Math.round(silentMs)} ms`, ms));
    });
  }

  #makeHealth(): HealthService {
    const health = new HealthService(
      this.#wheel,
      this.#oob,
      this.#heartbeat,
      (c) => c.rttMs,
      (event) => this.#nodeEvents.publish(event),
    );
    this.#oob.onHeartbeat = (conn, echoed) => {
      health.heartbeat(conn, this.#wheel.clock.now(), echoed);
    };
    return health;
  }

  #newConnection(side: "client" | "server", policy: Policy, remoteAddr: string): Connection {
    const oob = this.#oob;
    return new Connection(this.#ports, {
      side,
      policy,
      remoteAddr,
      oob: {
        register: (conn, op, producer, options) => oob.register(conn, op, producer, options),
        rttMs: (conn) => oob.state(conn).rttMs,
      },
    });
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

  /**
   * Every node event, of the global detector and of every local watcher, as an async
   * iterable; the first items are a `current` snapshot of each known peer. Read-only: unlike
   * `watch()`, it subscribes no watcher and sends no heartbeat, so dashboards and logs can
   * follow a node in either mode. A subscriber that falls 1,000 events behind loses the
   * oldest ones.
   */
  nodeEvents(options: { signal?: AbortSignal } = {}): AsyncIterable<NodeEvent> {
    this.#checkRunning();
    return this.#nodeEvents.subscribe(options.signal, this.#health.current());
  }

  /**
   * Calls `callback` every `intervalMs` from the messenger's central timer wheel, so periodic
   * application work (samplers, dashboards) needs no timer of its own. Cancel the returned
   * timer to stop; it stops by itself when the messenger closes. A callback that throws is
   * logged and keeps its schedule.
   */
  every(intervalMs: number, callback: () => void): Timer {
    this.#checkRunning();
    return this.#wheel.every(intervalMs, callback);
  }

  /** A snapshot of every peer seen: state, phi, round-trip time, last heard. */
  peers(): PeerInfo[] {
    return this.#health.peers();
  }

  /** A snapshot of the messenger-wide counters (frames and bytes by tag, messages, resets). */
  get counters(): Readonly<Counters> {
    return snapshotCounters(this.#counters);
  }

  /** Count of `down` events since the messenger started (for the saturation check). */
  get downEvents(): number {
    return this.#health.downEvents;
  }

  /**
   * Times the failure detector found that this process had not run for longer than the
   * acceptable pause (stopped, swapped out), and the lateness in all and at most (ms). That
   * much silence is excused to every peer, so detection of a real failure is later by as much;
   * not again before the process has run for that long unexcused (docs/failure-detection.md,
   * Local pauses).
   */
  get localPauses(): Readonly<{ count: number; totalMs: number; longestMs: number }> {
    return { ...this.#health.localPauses };
  }

  /** A read-only view of the central timer wheel. */
  get timers(): TimerStats {
    const { size, tickMs, fired, lateFires, armed } = this.#wheel;
    return { size, tickMs, fired, lateFires, armed };
  }

  /** The messenger's clock (the wheel's): what `NodeEvent.at` is measured on. */
  get clock(): Clock {
    return this.#wheel.clock;
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
    if (this.#registry.size > 0) busy.push(`${this.#registry.size} connection(s)`);
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
    this.#dialer.clearRefusals();
  }

  /**
   * Routes OOB parts of `op` to `handler` (one handler per op), on the read path: parts are
   * handled as frames are read, never queued behind data. Returns a function that removes it.
   * Parts of an op with no handler are counted and logged once. A handler that throws, or
   * whose promise rejects, is counted in `oobStats.errors` and logged; it never ends the
   * connection.
   */
  onOob(op: string, handler: OobHandler<Connection>): () => void {
    return this.#oob.handle(op, handler);
  }

  /** A snapshot of the OOB layer's counters (heartbeat frames, parts by op, errors). */
  get oobStats(): OobStats {
    return this.#oob.stats;
  }

  /** The heartbeat settings this node enforces at handshake. */
  get heartbeat(): Readonly<HeartbeatSettings> {
    return this.#heartbeat;
  }

  /** The cluster id. */
  get cluster(): string {
    return this.#cluster;
  }

  /** `running`, `closing` or `closed`. */
  get status(): "running" | "closing" | "closed" {
    return this.#status;
  }

  /** Binds `addr` (`tcp://127.0.0.1:0`, `mem://a`, ...) and returns the bound address. */
  async listen(addr: string): Promise<string> {
    this.#checkRunning();
    checkListen(addr, this.#keys, this.#insecure);
    const listener = await this.#transportFor(addr).listen(addr);
    this.#listeners.add(listener);
    this.#acceptLoop(listener);
    return listener.addr;
  }

  /**
   * Accepts connections from a listener made elsewhere, for example a WebSocket endpoint
   * mounted in your own HTTP server (`WebSocketTransport.attach()`). Returns its address.
   * Like `listen()`, refuses an address beyond loopback without `auth` or `insecure: true`.
   */
  listenOn(listener: Listener): string {
    this.#checkRunning();
    checkListen(listener.addr, this.#keys, this.#insecure);
    this.#listeners.add(listener);
    this.#acceptLoop(listener);
    return listener.addr;
  }

  /**
   * Returns the connection to `addr` with `options.policy`, dialing it if there is none: one
   * per address and policy (`losslessPeer` with `expectName` also finds that node's dial to us).
   * Resolves once the handshake is done; rejects with `HandshakeRefusedError`, `FrameError`,
   * `TransportError`, `TimeoutError`, `ConnectionClosedError`, or the signal's reason.
   */
  connect(addr: string, options: ConnectOptions = {}): Promise<Connection> {
    return this.#dialer.connect(addr, options);
  }

  /**
   * Received messages, in arrival order. Iterators compete: each message goes to one of them.
   * A connection whose messages pile up untaken (`maxInboundMessages` or `maxInboundBytes`)
   * stops reading its link, so its sender feels back-pressure; the other connections read on.
   */
  messages(): AsyncIterable<Message>;
  /**
   * With `{ batch: true }`: the same messages as arrays of what arrived together (at most
   * `maxBatch`, default 1024), so a consumer pays one async step per read rather than one per
   * message. Order within and across batches is arrival order.
   */
  messages(options: MessagesOptions & { batch: true }): AsyncIterable<Message[]>;
  /** One message at a time, or batches when `options.batch` is true. */
  messages(options?: MessagesOptions): AsyncIterable<Message> | AsyncIterable<Message[]>;
  messages(options?: MessagesOptions): AsyncIterable<Message> | AsyncIterable<Message[]> {
    const queue = this.#inbound.queue;
    if (!options?.batch) return queue;
    const max = options.maxBatch ?? 1024;
    if (!(max >= 1)) throw new RangeError(`Option maxBatch must be at least 1: ${max}`);
    return {
      [Symbol.asyncIterator]: () => ({
        next: () => queue.nextBatch(max),
        return: () => Promise.resolve({ value: undefined, done: true }),
      }),
    };
  }

  /** A new subscription to this messenger's events; any number may be open. */
  events(options: { signal?: AbortSignal } = {}): AsyncIterable<MessengerEvent> {
    return this.#events.subscribe(options.signal);
  }

  /** A snapshot of the connections that are not closed. */
  connections(): Connection[] {
    return this.#registry.connections();
  }

  /** Health summary (what `GET /health` serves). */
  health(): MessengerHealth {
    return {
      name: this.name,
      nonce: this.nonce,
      status: this.#status,
      uptimeMs: Math.round(this.#wheel.clock.now() - this.#started),
      listening: [...this.#listeners].map((l) => l.addr),
      connections: this.#registry.byState(),
    };
  }

  /**
   * Closes listeners and connections (in order, each within the close timeout plus up to 2 s
   * for its link to close gracefully; docs/protocol.md, Close), the wheel
   * and the iterators.
   */
  async close(): Promise<void> {
    if (this.#status !== "running") return;
    this.#status = "closing";
    for (const l of this.#listeners) l.close();
    this.#listeners.clear();
    this.#registry.failWaiters(new ConnectionClosedError(`Messenger ${this.name} is closing`));
    await Promise.all(this.#registry.connections().map((c) => c.close("messenger closing")));
    this.#health.close();
    for (const hook of this.#onClose.splice(0)) await hook();
    this.#wheel.close();
    this.#inbound.close();
    this.#events.close();
    this.#nodeEvents.close();
    this.#status = "closed";
  }

  /** Closes the messenger (for `await using`). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
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
        const over = this.#status === "running" ? this.#registry.admit(this.#limits) : "closing";
        if (over) {
          link.close();
          // Logged on the first refusal and every 1,000th: a flood must not flood the log too.
          if (over !== "closing" && this.#counters.linksRefused++ % 1000 === 0) {
            this.#log("warn", `accepted link closed at once: ${over} reached`);
          }
          continue;
        }
        const conn = this.#newConnection("server", Policies.statelessServer, link.remoteAddr);
        this.#registry.add(conn);
        sessionOf(conn).attach(link);
      }
    } catch (error) {
      this.#log("error", `listener ${listener.addr} failed: ${(error as Error).message}`);
    } finally {
      this.#listeners.delete(listener);
    }
  }

  #makePorts(): ConnectionPorts {
    const inbound = this.#inbound;
    return {
      timers: this.#wheel,
      limits: this.#limits,
      counters: this.#counters,
      random: this.#random,
      local: {
        name: this.name,
        nonce: this.nonce,
        // The hello carries the settings of the moment (they change while stopped).
        hello: () => ({
          version: PROTOCOL_VERSION,
          name: this.name,
          nonce: this.nonce,
          cluster: this.#cluster,
          heartbeat: this.#heartbeat,
          listening: [...this.#listeners].map((l) => l.addr),
        }),
        terms: () => ({ cluster: this.#cluster, heartbeat: this.#heartbeat }),
        keys: () => this.#keys,
        skipsChecksums: this.#skipsChecksums,
      },
      inbound: {
        deliver: (connection, type, priority, payload, seq) => {
          inbound.deliver(connection, type, priority, payload, seq);
        },
        backpressure: (connection) => inbound.backpressure(connection),
        release: (connection) => inbound.release(connection),
      },
      routing: { route: (hello, from, challenge) => this.#registry.route(hello, from, challenge) },
      dialer: { redial: (addr) => this.#dialer.redial(addr) },
      observer: {
        opened: (conn) => this.#opened(conn),
        ended: (conn, how) => this.#ended(conn, how),
        handedOver: (conn) => this.#forget(conn),
        lossless: (conn, event) => this.#lossless(conn, event),
        reincarnated: (conn) => this.#health.opened(conn),
        heard: (conn) => {
          const now = this.#wheel.clock.now();
          this.#health.heard(conn, now);
          this.#idle.heard(conn, now);
          this.#oob.heard(conn);
        },
        delivered: (conn) => this.#health.delivered(conn, this.#wheel.clock.now()),
        heartbeat: (conn, payload) => this.#oob.receive(conn, payload),
        defect: (conn, error) => {
          this.#log("error", `connection ${conn.id}: defect: ${(error as Error)?.stack ?? error}`);
        },
      },
    };
  }

  #opened(conn: Connection): void {
    this.#log("info", `connection ${conn.id} open with ${printable(conn.peerName)}`);
    // At once, not when connect() resumes: a dial of the peer's that arrives in between must
    // see this session, or the pair would end up with two.
    if (conn.policy.role === "peer") this.#registry.registerPeerSession(conn);
    // The messenger's own keepalive: one more registration, coalesced like the others.
    this.#oob.register(conn, KEEPALIVE_OP, null, { intervalMs: this.#heartbeat.intervalMs });
    this.#health.opened(conn);
    this.#events.publish({ kind: conn.side === "client" ? "connect" : "accept", connection: conn });
  }

  #lossless(connection: Connection, event: LosslessEvent): void {
    if (event.kind === "resume") this.#counters.reconnects++;
    if (event.kind === "remote-reset") {
      this.#counters.remoteResets++;
      const who = printable(connection.peerName), lost = event.unacked.length;
      this.#log("warn", `session with ${who} reset (${event.reason}): ${lost} unacked lost`);
    }
    this.#events.publish(sessionEvent(connection, event));
  }

  #forget(conn: Connection): void {
    this.#registry.forget(conn);
    this.#inbound.forget(conn);
    this.#idle.forget(conn);
  }

  #ended(conn: Connection, how: SessionEnd): void {
    this.#forget(conn);
    this.#oob.forget(conn);
    if (how.kind === "close" || how.wasOpen) {
      this.#health.ended(conn, how.kind === "close" ? "closed" : "reset");
    }
    if (how.kind === "close") {
      this.#events.publish({ kind: "close", connection: conn, by: how.by, reason: how.reason });
      return;
    }
    if (how.error instanceof HandshakeRefusedError && how.error.field === "race" && !how.wasOpen) {
      // Settling a dial race is routine: the winning dial carries the session. (A session
      // that lived before its redial lost a race ends as a reset: its messages are handed back.)
      this.#log("debug", `connection ${conn.id}: ${printable(how.error.message)}`);
      return;
    }
    const what = `connection ${conn.id} (${conn.side}, ${conn.remoteAddr})`;
    this.#log(
      "warn",
      `${what} ${how.wasOpen ? "reset" : "failed"}: ${printable(how.error.message)}`,
    );
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
