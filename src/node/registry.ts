/**
 * The session registry of one node: every live connection, the dials in flight by address,
 * lossless sessions by peer name, and the routing of accepted links (a new session, a resume,
 * a restarted peer, or a dial race). See docs/policies.md (resume and races).
 *
 * @module
 */

import {
  type Connection,
  CONNECTION_TRANSITIONS,
  type ConnectionState,
  sessionOf,
} from "../connection.ts";
import type { Limits } from "../options.ts";
import { HandshakeRefusedError, type HeartlineError, TimeoutError } from "../errors.ts";
import { type PolicyName, serverPolicyFor } from "../policy.ts";
import type { Hello } from "../protocol/handshake.ts";
import type { Session } from "../session/session.ts";
import type { TimerPort } from "../session/state.ts";

/** A connect() that lost a dial race, waiting for the winning session. */
interface RaceWaiter {
  resolve(conn: Connection): void;
  reject(error: Error): void;
}

/** Listen addresses remembered per node at most (a peer cannot grow the table by lying). */
const MAX_REMEMBERED_ADDRS = 4096;

/**
 * Who is connected to whom.
 *
 * @example
 * ```ts
 * import { SessionRegistry } from "./registry.ts";
 * const timers = { schedule: () => ({ cancel() {} }) };
 * const registry = new SessionRegistry("a", timers);
 * if (registry.size !== 0 || registry.sessionAt("tcp://127.0.0.1:1")) throw new Error("empty");
 * ```
 */
export class SessionRegistry {
  readonly #localName: string;
  readonly #timers: TimerPort;
  /** Every connection that is not closed. */
  readonly #connections = new Set<Connection>();
  /** Accepted connections that may still be handshaking (pruned lazily: see admit()). */
  readonly #pending = new Set<Connection>();
  /**
   * Our dials, by policy and address dialed (one connection per policy and address: a lossy
   * and a lossless connection to one node are two sessions, and neither stands in for the
   * other). See {@linkcode dialKey}.
   */
  readonly #dialed = new Map<string, Connection>();
  /** Lossless sessions, by peer name. */
  readonly #sessions = new Map<string, Connection>();
  /** Listen address -> node name, from lossless Hellos. */
  readonly #peerAddrs = new Map<string, string>();
  /** connect() calls that lost a dial race and wait for the winner's session, by peer name. */
  readonly #waiters = new Map<string, Set<RaceWaiter>>();

  /** A registry for the node `localName`, with timers from `timers`. */
  constructor(localName: string, timers: TimerPort) {
    this.#localName = localName;
    this.#timers = timers;
  }

  /** Live connections. */
  get size(): number {
    return this.#connections.size;
  }

  /** A snapshot of the live connections. */
  connections(): Connection[] {
    return [...this.#connections];
  }

  /** Records a connection this node accepted (it handshakes until it opens or ends). */
  add(conn: Connection): void {
    this.#connections.add(conn);
    this.#pending.add(conn);
  }

  /**
   * Whether one more accepted link may be taken: the limit it would pass (`maxConnections`
   * or `maxPendingHandshakes`), or undefined if it may.
   */
  admit(limits: Pick<Limits, "maxConnections" | "maxPendingHandshakes">): string | undefined {
    if (this.#connections.size >= limits.maxConnections) return "maxConnections";
    if (this.#pending.size >= limits.maxPendingHandshakes) {
      for (const c of this.#pending) if (c.peerName !== undefined) this.#pending.delete(c);
    }
    if (this.#pending.size >= limits.maxPendingHandshakes) return "maxPendingHandshakes";
    return undefined;
  }

  /** Connections by state (what `/health` shows). */
  byState(): Record<ConnectionState, number> {
    const counts = Object.fromEntries(
      Object.keys(CONNECTION_TRANSITIONS).map((state) => [state, 0]),
    ) as Record<ConnectionState, number>;
    for (const c of this.#connections) counts[c.state]++;
    return counts;
  }

  /** Records our dial to `addr`. */
  addDial(addr: string, conn: Connection): void {
    this.#dialed.set(dialKey(addr, conn.policy.name), conn);
    this.#connections.add(conn);
  }

  /**
   * The live connection to `addr`: our own dial to it, or, when the caller names the node it
   * expects there, that node's session even if the node dialed us. A Hello's claim to listen at
   * an address is the peer's word only: on its own it never makes `connect(addr)` resolve to
   * that peer.
   */
  existing(addr: string, policy: PolicyName, expectName?: string): Connection | undefined {
    let conn = this.#dialed.get(dialKey(addr, policy));
    if (!conn && expectName !== undefined && policy === "losslessPeer") {
      const session = this.sessionAt(addr);
      if (session?.peerName === expectName && session.policy.name === policy) conn = session;
    }
    if (!conn || conn.state === "closed" || conn.state === "closing") return undefined;
    return conn;
  }

  /**
   * Our live lossless dial to `addr` with another lossless policy than `policy`, if any: a
   * pair of nodes keeps one lossless session (the accepting side finds it by name).
   */
  otherLossless(addr: string, policy: PolicyName): Connection | undefined {
    for (const other of ["losslessClient", "losslessPeer"] as const) {
      if (other === policy) continue;
      const conn = this.#dialed.get(dialKey(addr, other));
      if (conn && conn.state !== "closed" && conn.state !== "closing") return conn;
    }
    return undefined;
  }

  /** The live peer session with the node known to listen at `addr`, if any. */
  sessionAt(addr: string): Connection | undefined {
    const name = this.#peerAddrs.get(addr);
    return name === undefined ? undefined : this.#sessions.get(name);
  }

  /** A connection is gone (closed, reset, or handed its link to another session). */
  forget(conn: Connection): void {
    this.#connections.delete(conn);
    this.#pending.delete(conn);
    const name = conn.peerName;
    if (name !== undefined && this.#sessions.get(name) === conn) this.#sessions.delete(name);
    const key = dialKey(conn.remoteAddr, conn.policy.name);
    if (this.#dialed.get(key) === conn) this.#dialed.delete(key);
  }

  /** A dialed lossless peer session opened: it becomes the session for its peer. */
  registerPeerSession(conn: Connection): void {
    const name = conn.peerName!;
    const current = this.#sessions.get(name);
    if (!current || current.state === "closed") this.#sessions.set(name, conn);
    const waiters = this.#waiters.get(name);
    this.#waiters.delete(name);
    for (const w of waiters ?? []) w.resolve(this.#sessions.get(name)!);
  }

  /**
   * Resolves with the session for `name` once its handshake is done (after our dial lost a
   * race); rejects with `TimeoutError` if the winning dial does not come within `timeoutMs`.
   */
  async awaitSession(name: string, timeoutMs: number): Promise<Connection> {
    let session = this.#sessions.get(name);
    if (!session || session.state === "closed") {
      session = await new Promise<Connection>((resolve, reject) => {
        const set = this.#waiters.get(name) ?? new Set();
        this.#waiters.set(name, set);
        const waiter: RaceWaiter = {
          resolve: (conn) => {
            timer.cancel();
            resolve(conn);
          },
          reject: (error) => {
            timer.cancel();
            reject(error);
          },
        };
        const timer = this.#timers.schedule(timeoutMs, () => {
          set.delete(waiter);
          if (set.size === 0) this.#waiters.delete(name);
          reject(
            new TimeoutError(`Lost a dial race to ${name}, whose dial never came`, timeoutMs),
          );
        });
        set.add(waiter);
      });
    }
    await session.opened();
    return session;
  }

  /** Fails every connect() waiting for a race winner (the messenger is closing). */
  failWaiters(error: Error): void {
    for (const set of this.#waiters.values()) for (const w of set) w.reject(error);
    this.#waiters.clear();
  }

  /**
   * Accepting side: the session a Hello belongs to. Lossy Hellos open a session of their own;
   * lossless ones are kept by peer name, and a lossless peer's dial that races one of ours is
   * settled here (docs/policies.md).
   */
  route(
    hello: Hello,
    from: Session<Connection>,
    challenge: string,
  ): Session<Connection> | HeartlineError {
    const policy = serverPolicyFor(hello.policy)!;
    from.assumePolicy(policy);
    if (policy.lossy) return from;
    this.#rememberAddrs(hello);
    if (policy.role === "peer") {
      const raced = this.#raceWith(hello);
      if (raced) return raced;
    }
    const existing = this.#sessions.get(hello.name);
    if (
      existing && existing !== from.handle && existing.state !== "closed" &&
      existing.state !== "closing"
    ) {
      const session = sessionOf(existing);
      return session.checkAdopt(hello, challenge) ?? session;
    }
    const conn = from.handle;
    this.#sessions.set(hello.name, conn);
    if (policy.role === "peer") {
      const listening = new Set(hello.listening ?? []);
      for (const ours of this.#dialed.values()) {
        if (!listening.has(ours.remoteAddr) || ours === conn || ours.policy.role !== "peer") {
          continue;
        }
        if (ours.state === "connecting" || ours.state === "handshaking") {
          sessionOf(ours).supersede(conn);
        }
      }
      // Waiting connect() calls are woken when it opens (the messenger's registerPeerSession).
    }
    return from;
  }

  #rememberAddrs(hello: Hello): void {
    for (const addr of hello.listening ?? []) {
      if (this.#peerAddrs.size >= MAX_REMEMBERED_ADDRS && !this.#peerAddrs.has(addr)) break;
      this.#peerAddrs.set(addr, hello.name);
    }
  }

  /**
   * A peer dialed us while we may be dialing it. The link dialed by the node whose name sorts
   * first wins: if that is the peer, our pending dial is superseded (in `route`); if it is us,
   * the peer's dial is refused with `race` and its connect() waits for ours.
   */
  #raceWith(hello: Hello): HandshakeRefusedError | undefined {
    const race = () =>
      new HandshakeRefusedError("race", `Dial race: ${this.#localName} keeps its session`, {
        local: this.#localName,
        peer: this.#localName,
      });
    // A healthy session already joins us: a fresh dial from the same incarnation (one that
    // does not know of the session) loses, and its connect() resolves to that session.
    const session = this.#sessions.get(hello.name);
    if (session?.state === "open" && session.peerNonce === hello.nonce && !hello.resumeNonce) {
      return race();
    }
    const listening = new Set(hello.listening ?? []);
    let pending = false;
    for (const c of this.#dialed.values()) {
      if (
        listening.has(c.remoteAddr) && c.policy.role === "peer" &&
        (c.state === "connecting" || c.state === "handshaking")
      ) {
        pending = true;
        break;
      }
    }
    if (!pending || hello.name < this.#localName) return undefined; // theirs wins
    return race();
  }
}

/** The key of a dial in the registry: its policy and the address dialed. */
function dialKey(addr: string, policy: string): string {
  return `${policy} ${addr}`;
}
