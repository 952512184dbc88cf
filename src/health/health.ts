/**
 * The heartbeat service: turns frames and heartbeats arriving on connections into node up/down
 * events. Global mode: one detector pair per peer, shared by every subscriber. Local mode:
 * each subscriber heartbeats for itself with its own OOB op and detectors. See
 * docs/failure-detection.md.
 *
 * @module
 */

import { Broadcast } from "../_async_queue.ts";
import type { Connection } from "../connection.ts";
import type { OobService } from "../oob/service.ts";
import type { OobRegistration } from "../oob/types.ts";
import type { HeartbeatSettings } from "./settings.ts";
import type { Timer, TimerWheel } from "../timer/timer_wheel.ts";
import { type FailureDetector, makeDetector, silenceToDownMs } from "./detector.ts";

/** The state of a peer as a detector sees it. */
export type PeerState = "up" | "suspect" | "down";

/** A node event: a peer changed state. */
export interface NodeEvent {
  /** The peer's node name. */
  readonly peer: string;
  /** Its new state. */
  readonly state: PeerState;
  /** Clock reading (the messenger's clock, ms) when the change was seen. */
  readonly at: number;
  /** Phi (or the grace detector's scaled silence) when the change was seen. */
  readonly phi: number;
  /** Last round-trip time measured to the peer, ms (NaN if none yet). */
  readonly rttMs: number;
  /**
   * Why: `connected`, `heard`, `silent`, `not-echoing`, `closed`, `reset`, `restarted`, or
   * `current` for the snapshot a new subscriber receives first.
   */
  readonly reason: string;
  /** The subscription name for local-mode watchers, `global` otherwise. */
  readonly watcher: string;
}

/** A snapshot row of `messenger.peers()`. */
export interface PeerInfo {
  /** Node name. */
  name: string;
  /** Instance nonce of the incarnation seen last. */
  nonce: string;
  /** State in global mode; in local mode `up` while a connection is open, else `down`. */
  state: PeerState;
  /** Current phi (global mode; NaN in local mode). */
  phi: number;
  /** Last round-trip time, ms. */
  rttMs: number;
  /** Milliseconds since anything arrived from the peer. */
  lastHeardMsAgo: number;
  /** The heartbeat mode. */
  mode: "global" | "local";
  /** Open connections to the peer. */
  connections: number;
  /** New incarnations of the peer seen (restarts detected by its instance nonce). */
  restarts: number;
  /** Local mode: the state each watcher sees. */
  watchers?: Record<string, PeerState>;
}

/** Options of `messenger.watch()`. */
export interface WatchOptions {
  /** Ends the subscription. */
  signal?: AbortSignal;
  /** Local mode only: this watcher's heartbeat interval (default: the messenger's). */
  intervalMs?: number;
}

/** One peer's detector state, for one watcher (or the global one). */
class Tracked {
  state: PeerState = "up";
  constructor(public heard: FailureDetector, public echo: FailureDetector | null) {}
}

class Peer {
  /**
   * Open connections to the peer: nearly always one. An array replaced on each change (they
   * are rare), not a Set: a Set and its table cost about 200 bytes per idle connection.
   */
  connections: readonly Connection[] = [];
  tracked: Tracked;
  lastHeard = 0;
  /** New incarnations seen after the first one. */
  restarts = 0;
  constructor(public name: string, public nonce: string, tracked: Tracked) {
    this.tracked = tracked;
  }
}

/** A local-mode subscriber: its own op, registrations and detectors. */
class LocalWatcher {
  regs = new Map<Connection, OobRegistration>();
  tracked = new Map<string, Tracked>();
  events = new Broadcast<NodeEvent>();
  unhandle: () => void = () => {};
  constructor(public name: string, public op: string, public intervalMs: number) {}
}

/** Disconnected peers remembered for `peers()` before the oldest are forgotten. */
const FORGET_AFTER = 1000;

/** Prefix of the OOB op of a local-mode watcher. */
export const LOCAL_OP_PREFIX = "heartline.local.";

/** @internal one per messenger */
export class HealthService {
  #wheel: TimerWheel;
  #oob: OobService<Connection>;
  #settings: HeartbeatSettings;
  #peers = new Map<string, Peer>();
  #byConn = new Map<Connection, Peer>();
  #global = new Broadcast<NodeEvent>();
  #watchers = new Map<string, LocalWatcher>();
  #check: Timer | null = null;
  #rtt: (conn: Connection) => number;
  #tap: (event: NodeEvent) => void;
  /** False positives are impossible to know here; this counts every `down` event. */
  downEvents = 0;
  /** Times this process was found to have stopped running, and for how long in all (ms). */
  readonly localPauses = { count: 0, totalMs: 0, longestMs: 0 };
  #lastCheck = NaN;
  /** Time run since the last excused pause (see #excuseLocalPause): none yet, so any. */
  #runSinceExcuseMs = Infinity;

  constructor(
    wheel: TimerWheel,
    oob: OobService<Connection>,
    settings: HeartbeatSettings,
    rtt: (conn: Connection) => number,
    tap: (event: NodeEvent) => void = () => {},
  ) {
    this.#tap = tap;
    this.#wheel = wheel;
    this.#oob = oob;
    this.#settings = settings;
    this.#rtt = rtt;
  }

  /** How often detectors are evaluated: a quarter interval, at least one tick. */
  get checkIntervalMs(): number {
    return Math.max(this.#wheel.tickMs, Math.floor(this.#settings.intervalMs / 4));
  }

  /** Global subscribers and local watchers currently open. */
  get subscribers(): number {
    let n = this.#global.subscribers;
    for (const w of this.#watchers.values()) n += w.events.subscribers;
    return n;
  }

  watch(name: string, options: WatchOptions): AsyncIterable<NodeEvent> {
    if (this.#settings.mode === "global") {
      // A new subscriber first learns the current state of every known peer.
      return this.#global.subscribe(options.signal, this.current());
    }
    return this.#watchLocal(name, options);
  }

  #watchLocal(name: string, options: WatchOptions): AsyncIterable<NodeEvent> {
    let watcher = this.#watchers.get(name);
    if (!watcher) {
      const interval = options.intervalMs ?? this.#settings.intervalMs;
      const w = watcher = new LocalWatcher(name, LOCAL_OP_PREFIX + name, interval);
      this.#watchers.set(name, w);
      w.unhandle = this.#oob.handle(w.op, (part) => {
        const peer = this.#byConn.get(part.connection);
        if (peer) this.#trackedFor(w, peer).heard.heartbeat(this.#wheel.clock.now());
      });
      for (const conn of this.#byConn.keys()) this.#registerLocal(w, conn);
      this.#ensureCheck();
    }
    const w = watcher;
    const inner = w.events.subscribe(options.signal);
    // A subscription ended by its signal drops the watcher too once it was the last one.
    options.signal?.addEventListener("abort", () => {
      if (w.events.subscribers === 0 && this.#watchers.get(w.name) === w) this.#dropWatcher(w);
    }, { once: true });
    return {
      [Symbol.asyncIterator]: () => {
        const it = inner[Symbol.asyncIterator]();
        return {
          next: () => it.next(),
          return: async () => {
            const r = await it.return!();
            if (w.events.subscribers === 0) this.#dropWatcher(w);
            return r;
          },
        };
      },
    };
  }

  #dropWatcher(w: LocalWatcher): void {
    for (const reg of w.regs.values()) reg.cancel();
    w.regs.clear();
    w.unhandle();
    this.#watchers.delete(w.name);
    w.events.close();
  }

  #registerLocal(w: LocalWatcher, conn: Connection): void {
    if (w.regs.has(conn) || conn.state !== "open") return;
    w.regs.set(conn, conn.registerOob(w.op, () => EMPTY, { intervalMs: w.intervalMs }));
  }

  #trackedFor(w: LocalWatcher, peer: Peer): Tracked {
    let t = w.tracked.get(peer.name);
    if (!t) {
      t = new Tracked(makeDetector({ ...this.#settings, intervalMs: w.intervalMs }), null);
      t.heard.mark(this.#wheel.clock.now());
      w.tracked.set(peer.name, t);
    }
    return t;
  }

  #newTracked(): Tracked {
    return new Tracked(makeDetector(this.#settings), makeDetector(this.#settings));
  }

  /** A session opened: the handshake itself is a sign of life. */
  opened(conn: Connection): void {
    const name = conn.peerName!, nonce = conn.peerNonce!;
    const now = this.#wheel.clock.now();
    let peer = this.#peers.get(name);
    let reason = "connected";
    if (peer && peer.nonce !== nonce) {
      // A new incarnation: its history says nothing about this one.
      peer.nonce = nonce;
      peer.tracked = this.#newTracked();
      for (const w of this.#watchers.values()) w.tracked.delete(name);
      peer.restarts++;
      reason = "restarted";
    }
    if (!peer) {
      peer = new Peer(name, nonce, this.#newTracked());
      this.#peers.set(name, peer);
    }
    if (!peer.connections.includes(conn)) peer.connections = [...peer.connections, conn];
    peer.lastHeard = now;
    this.#byConn.set(conn, peer);
    peer.tracked.heard.mark(now);
    peer.tracked.echo!.mark(now);
    if (peer.tracked.state !== "up" || peer.connections.length === 1 || reason === "restarted") {
      peer.tracked.state = "up";
      this.#publish(this.#global, this.#event(peer, "up", reason, "global", 0));
    }
    for (const w of this.#watchers.values()) this.#registerLocal(w, conn);
    this.#ensureCheck();
  }

  /** A session ended; a peer with no session left is down. */
  ended(conn: Connection, how: "closed" | "reset"): void {
    const peer = this.#byConn.get(conn);
    if (!peer) return;
    this.#byConn.delete(conn);
    peer.connections = peer.connections.filter((c) => c !== conn);
    for (const w of this.#watchers.values()) w.regs.delete(conn);
    if (peer.connections.length > 0) return;
    if (peer.tracked.state !== "down") {
      peer.tracked.state = "down";
      this.#publish(this.#global, this.#event(peer, "down", how, "global", NaN));
    }
    for (const w of this.#watchers.values()) {
      const t = w.tracked.get(peer.name);
      if (t && t.state !== "down") {
        t.state = "down";
        this.#publish(w.events, this.#event(peer, "down", how, w.name, NaN));
      }
    }
    if (this.#byConn.size === 0) {
      this.#check?.cancel();
      this.#check = null;
    }
    this.#forgetOldPeers();
  }

  /** Keeps at most FORGET_AFTER disconnected peers (clients come and go); oldest go first. */
  #forgetOldPeers(): void {
    let disconnected = 0;
    for (const p of this.#peers.values()) if (p.connections.length === 0) disconnected++;
    for (const [name, p] of this.#peers) {
      if (disconnected <= FORGET_AFTER) break;
      if (p.connections.length > 0) continue;
      this.#peers.delete(name);
      for (const w of this.#watchers.values()) w.tracked.delete(name);
      disconnected--;
    }
  }

  /** Anything arrived on `conn` (called per read, so kept small): a sign of life. */
  heard(conn: Connection, now: number): void {
    const peer = this.#byConn.get(conn);
    if (!peer) return;
    peer.lastHeard = now;
    peer.tracked.heard.touch(now);
  }

  /**
   * A write to `conn` that had waited for the link completed: our bytes reach the peer (its
   * kernel acknowledged earlier ones and took more), so the echo detector hears of it, without
   * an interval sample. On a saturated link the peer's echoes wait behind its data; a peer that
   * stops reading fills the buffers and our writes stop completing, so that still goes down.
   */
  delivered(conn: Connection, now: number): void {
    this.#byConn.get(conn)?.tracked.echo?.touch(now);
  }

  /**
   * A heartbeat frame arrived: an interval sample for the detector; with `echoed`, it also
   * proves that our heartbeats reach the peer.
   */
  heartbeat(conn: Connection, now: number, echoed: boolean): void {
    const tracked = this.#byConn.get(conn)?.tracked;
    if (!tracked) return;
    tracked.heard.heartbeat(now);
    if (echoed) tracked.echo?.heartbeat(now);
  }

  peers(): PeerInfo[] {
    const now = this.#wheel.clock.now();
    return [...this.#peers.values()].map((p) => {
      const conn = p.connections[0];
      const info: PeerInfo = {
        name: p.name,
        nonce: p.nonce,
        state: this.#settings.mode === "global" ? p.tracked.state : (conn ? "up" : "down"),
        phi: this.#settings.mode === "global" ? this.#phi(p.tracked, now) : NaN,
        rttMs: conn ? this.#rtt(conn) : NaN,
        lastHeardMsAgo: Math.max(0, now - p.lastHeard),
        mode: this.#settings.mode,
        connections: p.connections.length,
        restarts: p.restarts,
      };
      if (this.#settings.mode === "local") {
        info.watchers = {};
        for (const w of this.#watchers.values()) {
          info.watchers[w.name] = w.tracked.get(p.name)?.state ?? (conn ? "up" : "down");
        }
      }
      return info;
    });
  }

  close(): void {
    this.#check?.cancel();
    this.#check = null;
    for (const w of [...this.#watchers.values()]) this.#dropWatcher(w);
    this.#global.close();
  }

  #now(): number {
    return this.#wheel.clock.now();
  }

  #phi(t: Tracked, now: number): number {
    const heard = t.heard.phi(now);
    return t.echo ? Math.max(heard, t.echo.phi(now)) : heard;
  }

  #ensureCheck(): void {
    if (this.#check) return;
    this.#lastCheck = NaN;
    this.#check = this.#wheel.every(this.checkIntervalMs, () => this.#evaluate());
  }

  #evaluate(): void {
    const now = this.#wheel.clock.now();
    this.#excuseLocalPause(now);
    const threshold = this.#settings.phiThreshold;
    for (const peer of this.#peers.values()) {
      if (peer.connections.length === 0) continue;
      if (this.#settings.mode === "global") {
        const t = peer.tracked;
        const phi = this.#phi(t, now);
        const next = this.#next(t.state, phi, threshold);
        if (next !== t.state) {
          t.state = next;
          const reason = next === "up"
            ? "heard"
            : t.heard.phi(now) >= (t.echo?.phi(now) ?? 0)
            ? "silent"
            : "not-echoing";
          this.#publish(this.#global, this.#event(peer, next, reason, "global", phi));
        }
      }
      for (const w of this.#watchers.values()) {
        const t = this.#trackedFor(w, peer);
        const phi = t.heard.phi(now);
        const next = this.#next(t.state, phi, threshold);
        if (next !== t.state) {
          t.state = next;
          const reason = next === "up" ? "heard" : "silent";
          this.#publish(w.events, this.#event(peer, next, reason, w.name, phi));
        }
      }
    }
  }

  /**
   * A check that runs late by more than the acceptable pause (and a check interval) means this
   * process did not run meanwhile (SIGSTOP, swapping, a very long collection): every peer then
   * looks silent, though what arrived is only waiting to be read. That lateness is taken off
   * every detector's silence before judging, as Cassandra's detector skips a round after a
   * local pause, so a node that resumes does not declare its whole cluster down. Shorter
   * lateness is what `acceptablePauseMs` absorbs already. A pause is excused only after the
   * process has run, unexcused, for the silence that makes a peer down: a process whose
   * timers are late again and again (a starved CPU, a throttled browser tab) would otherwise
   * excuse every silence and never judge a peer that died; so a dead peer is found at most one
   * pause later than it would have been.
   */
  #excuseLocalPause(now: number): void {
    const gap = now - this.#lastCheck;
    const late = gap - this.checkIntervalMs;
    this.#lastCheck = now;
    const threshold = Math.max(this.checkIntervalMs, this.#settings.acceptablePauseMs);
    if (!(late >= threshold) || this.#runSinceExcuseMs < silenceToDownMs(this.#settings)) {
      if (gap > 0) this.#runSinceExcuseMs += gap; // NaN on the first check: nothing added
      return;
    }
    this.#runSinceExcuseMs = 0;
    const p = this.localPauses;
    p.count++;
    p.totalMs += late;
    p.longestMs = Math.max(p.longestMs, late);
    for (const peer of this.#peers.values()) {
      peer.tracked.heard.excuse(late, now);
      peer.tracked.echo?.excuse(late, now);
    }
    for (const w of this.#watchers.values()) {
      for (const t of w.tracked.values()) t.heard.excuse(late, now);
    }
  }

  /** Publishes to one stream and to the read-only tap that sees every stream. */
  #publish(stream: Broadcast<NodeEvent>, event: NodeEvent): void {
    stream.publish(event);
    this.#tap(event);
  }

  /** A snapshot event per known peer (reason `current`), as a new global subscriber gets. */
  current(): NodeEvent[] {
    const now = this.#now();
    return [...this.#peers.values()].map((p) =>
      this.#event(p, p.tracked.state, "current", "global", this.#phi(p.tracked, now))
    );
  }

  /** Down at the threshold, suspect from half of it, up again only below half. */
  #next(state: PeerState, phi: number, threshold: number): PeerState {
    if (phi >= threshold) return "down";
    if (phi >= threshold / 2) return state === "down" ? "down" : "suspect";
    return "up";
  }

  #event(peer: Peer, state: PeerState, reason: string, watcher: string, phi: number): NodeEvent {
    if (state === "down" && reason !== "current") this.downEvents++;
    const conn = peer.connections[0];
    return {
      peer: peer.name,
      state,
      at: this.#wheel.clock.now(),
      phi,
      rttMs: conn ? this.#rtt(conn) : NaN,
      reason,
      watcher,
    };
  }
}

const EMPTY = new Uint8Array(0);
