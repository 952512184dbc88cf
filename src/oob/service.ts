/**
 * Out-of-band parts: registration on a connection, coalescing of every part due in one tick
 * into one heartbeat frame, RTT from echoed stamps, and dispatch by op on the receiving side.
 * See docs/protocol.md (Heartbeat frame) and docs/oob.md.
 *
 * @module
 */

import { encodeFrame, Tag } from "../protocol/frame.ts";
import {
  decodeHeartbeat,
  encodeBareHeartbeatFrame,
  encodeHeartbeatCounted,
  heartbeatPartCount,
  MAX_OOB_PART_BYTES,
  type OobPart,
  OpDictionary,
} from "../protocol/heartbeat.ts";
import { printable } from "../protocol/text.ts";
import {
  OOB_UNCHANGED,
  type OobLink,
  type OobOptions,
  type OobProducer,
  type OobRegistration,
  type OobStats,
} from "./types.ts";
import type { Timer, TimerWheel } from "../timer/timer_wheel.ts";
import type { LogLevel } from "../log.ts";

/** One OOB part as delivered to a handler; `C` is the connection type. */
export interface OobDelivery<C = OobLink> {
  /** The op the sender registered under. */
  readonly op: string;
  /** The bytes its producer returned. */
  readonly data: Uint8Array;
  /** The connection it arrived on. */
  readonly connection: C;
}

/**
 * Handles parts of one op; runs on the read path, so it must be quick. A handler that throws,
 * or returns a promise that rejects, is counted in `errors` and logged once per op.
 */
export type OobHandler<C = OobLink> = (part: OobDelivery<C>) => unknown;

/** Per-connection heartbeat stamps kept by the OOB layer. */
export interface HeartbeatState {
  /** Last measured round-trip time in ms (NaN until the first echo). */
  rttMs: number;
  /** The peer's newest stamp (-1 before the first), when it came, and on which link. */
  peerStamp: number;
  peerStampAt: number;
  peerStampEpoch: number;
  /**
   * Whether anything (a heartbeat, a message, any frame) arrived from the peer since our last
   * heartbeat to it: then our next heartbeat echoes `peerStamp`, proving the peer reaches us.
   */
  heardSinceEcho: boolean;
}

/** What the service keeps per connection: its liveness data, and what is due this tick. */
interface ConnState<C extends OobLink> extends HeartbeatState {
  /** Registrations due at the end of this tick: one alone (the common case), or several. */
  due: Registration<C> | Registration<C>[] | null;
}

/** The op of the messenger's own keepalive registration (carries no part). */
export const KEEPALIVE_OP = "heartline.keepalive";

class Registration<C extends OobLink> implements OobRegistration {
  timer: Timer | null = null;
  /** The producer's last bytes, for a part it says is unchanged. */
  last: Uint8Array | null = null;
  constructor(
    readonly service: OobService<C>,
    readonly conn: C,
    readonly op: string,
    readonly producer: OobProducer | null,
    readonly intervalMs: number,
  ) {}
  get active(): boolean {
    return this.timer !== null;
  }
  cancel(): void {
    if (!this.timer) return;
    this.timer.cancel();
    this.timer = null;
    this.service._cancelled(this);
  }
  [Symbol.dispose](): void {
    this.cancel();
  }
  [Symbol.asyncDispose](): Promise<void> {
    this.cancel();
    return Promise.resolve();
  }
}

const encoder = new TextEncoder();
/** The dictionary a heartbeat without parts is decoded against (it is never consulted). */
const NO_OPS = new OpDictionary();
/** Distinct OOB warnings logged per messenger at most. */
const MAX_WARNED = 256;
/** Ops counted by name per messenger at most; the rest are counted under OTHER_OPS. */
export const MAX_COUNTED_OPS = 1024;
/** The name the parts of ops beyond {@linkcode MAX_COUNTED_OPS} are counted under. */
export const OTHER_OPS = "(other)";

/** Counts one part of `op`, in a table that a peer's op names cannot grow without bound. */
function countOp(counts: Map<string, number>, op: string): void {
  const known = counts.get(op);
  if (known !== undefined) counts.set(op, known + 1);
  else if (counts.size < MAX_COUNTED_OPS) counts.set(op, 1);
  else counts.set(OTHER_OPS, (counts.get(OTHER_OPS) ?? 0) + 1);
}

/**
 * @internal The messenger's OOB engine: one per messenger, driven by its timer wheel.
 */
export class OobService<C extends OobLink> {
  #wheel: TimerWheel;
  #log: (level: LogLevel, message: string) => void;
  /**
   * Each connection's registrations: a lone one as it is (the common case, the messenger's
   * keepalive), several in a set (a set per connection would cost an idle one about 100 bytes).
   */
  #byConn = new Map<C, Registration<C> | Set<Registration<C>>>();
  /**
   * Connections with registrations due at the end of this tick, each once; what is due is in
   * its state (`ConnState.due`). Arrays that keep their room, not maps: every connection's
   * keepalive falls due once a second, and a map of 10,000 connections rebuilt per tick was
   * a large part of what an idle node allocated (and, promoted, of its old generation). Two
   * arrays take turns: a producer that runs during a flush may make more due.
   */
  #dueConns: (C | null)[] = [];
  #dueCount = 0;
  #spareDueConns: (C | null)[] = [];
  #handlers = new Map<string, OobHandler<C>>();
  #state = new WeakMap<C, ConnState<C>>();
  #txOps = new WeakMap<C, { epoch: number; dict: OpDictionary }>();
  #rxOps = new WeakMap<C, { epoch: number; dict: OpDictionary }>();
  #warned = new Set<string>();
  #onHeartbeat: ((conn: C, echoed: boolean) => void) | null = null;
  /** Counters (read them through `stats`). */
  readonly #stats = {
    heartbeatFramesSent: 0,
    heartbeatFramesReceived: 0,
    heartbeatBytesSent: 0,
    partsRepeated: 0,
    partsSent: new Map<string, number>(),
    partsReceived: new Map<string, number>(),
    errors: 0,
    unhandled: 0,
    registrations: 0,
  };

  /** A snapshot of the counters. */
  get stats(): OobStats {
    const s = this.#stats;
    return { ...s, partsSent: new Map(s.partsSent), partsReceived: new Map(s.partsReceived) };
  }

  constructor(wheel: TimerWheel, log: (level: LogLevel, message: string) => void) {
    this.#wheel = wheel;
    this.#log = log;
    wheel.onTickEnd(() => this.#flush());
  }

  /**
   * Sets the listener told of every heartbeat that arrives (the failure detector), with
   * whether it echoed one of our stamps (proof that our heartbeats reach the peer).
   */
  set onHeartbeat(fn: ((conn: C, echoed: boolean) => void) | null) {
    this.#onHeartbeat = fn;
  }

  /** Liveness data of a connection. */
  state(conn: C): HeartbeatState {
    return this.#stateOf(conn);
  }

  #stateOf(conn: C): ConnState<C> {
    let s = this.#state.get(conn);
    if (!s) {
      s = {
        rttMs: NaN,
        peerStamp: -1,
        peerStampAt: 0,
        peerStampEpoch: 0,
        heardSinceEcho: false,
        due: null,
      };
      this.#state.set(conn, s);
    }
    return s;
  }

  register(
    conn: C,
    op: string,
    producer: OobProducer | null,
    options: OobOptions,
  ): OobRegistration {
    if (typeof op !== "string" || op.length === 0 || encoder.encode(op).length > 255) {
      throw new TypeError(`OOB op must be a non-empty string of at most 255 bytes: ${op}`);
    }
    if (producer !== null && typeof producer !== "function") {
      throw new TypeError("OOB producer must be a function");
    }
    const interval = options?.intervalMs;
    if (!(interval >= this.#wheel.tickMs) || !Number.isFinite(interval)) {
      throw new RangeError(
        `OOB intervalMs must be at least one wheel tick (${this.#wheel.tickMs} ms): ${interval}`,
      );
    }
    const reg = new Registration(this, conn, op, producer, interval);
    reg.timer = this.#wheel.every(interval, () => this.#markDue(reg));
    const known = this.#byConn.get(conn);
    if (known === undefined) this.#byConn.set(conn, reg);
    else if (known instanceof Set) known.add(reg);
    else this.#byConn.set(conn, new Set([known, reg]));
    this.#stats.registrations++;
    return reg;
  }

  handle(op: string, handler: OobHandler<C>): () => void {
    if (this.#handlers.has(op)) throw new TypeError(`OOB op already has a handler: ${op}`);
    this.#handlers.set(op, handler);
    return () => {
      if (this.#handlers.get(op) === handler) this.#handlers.delete(op);
    };
  }

  /** Cancels every registration of a connection that ended. */
  forget(conn: C): void {
    const known = this.#byConn.get(conn);
    if (known instanceof Set) { for (const reg of [...known]) reg.cancel(); }
    else known?.cancel();
    this.#byConn.delete(conn);
    const s = this.#state.get(conn);
    if (s) s.due = null; // (it may still be listed as due: the flush finds nothing)
  }

  _cancelled(reg: Registration<C>): void {
    this.#stats.registrations--;
    const known = this.#byConn.get(reg.conn);
    if (known === reg) this.#byConn.delete(reg.conn);
    else if (known instanceof Set) {
      known.delete(reg);
      // Down to one: kept alone again, as a connection's only registration always is.
      if (known.size === 1) this.#byConn.set(reg.conn, known.values().next().value!);
      else if (known.size === 0) this.#byConn.delete(reg.conn);
    }
  }

  #markDue(reg: Registration<C>): void {
    const s = this.#stateOf(reg.conn);
    const due = s.due;
    if (due === null) {
      s.due = reg;
      this.#dueConns[this.#dueCount++] = reg.conn;
    } else if (Array.isArray(due)) due.push(reg);
    else s.due = [due, reg];
  }

  /** End of a wheel tick: one heartbeat frame per connection with anything due. */
  #flush(): void {
    const n = this.#dueCount;
    if (n === 0) return;
    const conns = this.#dueConns;
    this.#dueConns = this.#spareDueConns;
    this.#dueCount = 0;
    let i = 0;
    try {
      this.#flushNow = this.#wheel.clock.now(); // (a clock that throws ends this tick's flush)
      for (; i < n; i++) {
        const conn = conns[i]!;
        conns[i] = null;
        const s = this.#state.get(conn);
        const due = s?.due;
        if (!due) continue; // forgotten since
        s.due = null;
        this.#flushOne(due, conn, s);
      }
    } finally {
      // A throw goes to the wheel's error handler: what was not flushed is dropped for this
      // tick (as a map cleared after its forEach would), and the arrays still take turns.
      for (; i < n; i++) {
        const s = this.#state.get(conns[i]!);
        if (s) s.due = null;
        conns[i] = null;
      }
      this.#spareDueConns = conns;
    }
  }

  /** The time of the flush in progress. */
  #flushNow = 0;

  /** One connection's heartbeat frame, if anything of it is due. */
  #flushOne(regs: Registration<C> | Registration<C>[], conn: C, s: ConnState<C>): void {
    if (conn.state !== "open") return;
    let parts: OobPart[] | null = null;
    let keepalive = false;
    const many = Array.isArray(regs);
    for (let i = 0, n = many ? regs.length : 1; i < n; i++) {
      const reg = many ? regs[i] : regs;
      if (!reg.active) continue; // cancelled after it was marked due
      if (reg.producer === null) {
        keepalive = true;
        continue;
      }
      const data = this.#produce(reg);
      if (data) (parts ??= []).push({ op: reg.op, data });
    }
    if (parts === null && !keepalive) return;
    const now = this.#flushNow;
    // Echoed whenever the peer was heard since our last heartbeat, even if only its data got
    // through: on a saturated link its heartbeat may wait behind that data for seconds. The
    // same stamp may go twice; its echoDelay has grown, so the round trip stays right. Only a
    // stamp of the current link: one from an earlier link may be a restarted peer's clock.
    const echo = s.heardSinceEcho && s.peerStampEpoch === conn.linkEpoch ? s.peerStamp : -1;
    const echoDelay = echo >= 0 ? now - s.peerStampAt : 0;
    s.heardSinceEcho = false;
    let frame: Uint8Array;
    if (parts === null) {
      frame = encodeBareHeartbeatFrame(now, echo, echoDelay); // a keepalive: the common case
    } else {
      const { payload, same } = encodeHeartbeatCounted(
        { stamp: now, echo, echoDelay, parts },
        this.#opsFor(this.#txOps, conn),
      );
      frame = encodeFrame(Tag.Heartbeat, payload);
      this.#stats.partsRepeated += same;
      for (const p of parts) countOp(this.#stats.partsSent, p.op);
    }
    conn.sendControl(frame);
    this.#stats.heartbeatFramesSent++;
    this.#stats.heartbeatBytesSent += frame.length;
  }

  /** Asks a registration's producer for its part: bytes, or null to skip (counted if bad). */
  #produce(reg: Registration<C>): Uint8Array | null {
    let data: ReturnType<OobProducer>;
    try {
      data = reg.producer!();
    } catch (error) {
      this.#stats.errors++;
      this.#warnOnce(`producer:${reg.op}`, `OOB producer for ${reg.op} threw: ${error}`);
      return null;
    }
    if (data === OOB_UNCHANGED) return reg.last;
    if (data === undefined || data === null) return null;
    if (!(data instanceof Uint8Array) || data.length > MAX_OOB_PART_BYTES) {
      this.#stats.errors++;
      this.#warnOnce(
        `producer:${reg.op}`,
        `OOB producer for ${reg.op} returned no bytes, or more than ${MAX_OOB_PART_BYTES}`,
      );
      return null;
    }
    reg.last = data;
    return data;
  }

  /** Read path: something arrived on `conn` (called per read, so kept small). */
  heard(conn: C): void {
    const s = this.#state.get(conn);
    if (s) s.heardSinceEcho = true;
  }

  /** Read path: a heartbeat frame arrived on `conn`. */
  receive(conn: C, payload: Uint8Array): void {
    // A keepalive (no parts) needs no dictionary: an idle link never makes one.
    const dict = heartbeatPartCount(payload) === 0 ? NO_OPS : this.#opsFor(this.#rxOps, conn);
    const hb = decodeHeartbeat(payload, dict);
    const now = this.#wheel.clock.now();
    const s = this.state(conn);
    s.peerStamp = hb.stamp;
    s.peerStampAt = now;
    s.peerStampEpoch = conn.linkEpoch;
    s.heardSinceEcho = true;
    if (hb.echo >= 0) s.rttMs = Math.max(0, now - hb.echo - hb.echoDelay);
    this.#stats.heartbeatFramesReceived++;
    for (const part of hb.parts) {
      countOp(this.#stats.partsReceived, part.op);
      const handler = this.#handlers.get(part.op);
      if (!handler) {
        this.#stats.unhandled++;
        this.#warnOnce(`op:${part.op}`, `OOB part for op ${part.op} has no handler (ignored)`);
        continue;
      }
      try {
        const result = handler({ op: part.op, data: part.data, connection: conn });
        if (result instanceof Promise) result.catch((error) => this.#handlerFailed(part.op, error));
      } catch (error) {
        this.#handlerFailed(part.op, error);
      }
    }
    this.#onHeartbeat?.(conn, hb.echo >= 0);
  }

  /** The op dictionary of the connection's current link (a new link starts a new one). */
  #opsFor(
    map: WeakMap<C, { epoch: number; dict: OpDictionary }>,
    conn: C,
  ): OpDictionary {
    let entry = map.get(conn);
    if (!entry || entry.epoch !== conn.linkEpoch) {
      entry = { epoch: conn.linkEpoch, dict: new OpDictionary() };
      map.set(conn, entry);
    }
    return entry.dict;
  }

  #handlerFailed(op: string, error: unknown): void {
    this.#stats.errors++;
    this.#warnOnce(`handler:${op}`, `OOB handler for ${op} threw: ${error}`);
  }

  /** Logs `message` once per `key`, for at most MAX_WARNED keys (op names come from peers). */
  #warnOnce(key: string, message: string): void {
    if (this.#warned.has(key) || this.#warned.size > MAX_WARNED) return;
    this.#warned.add(key);
    if (this.#warned.size > MAX_WARNED) message = "more OOB warnings follow, not logged";
    this.#log("warn", printable(message, 500));
  }
}
