/**
 * The dialer of one node: `connect()` (one connection per address, dials bounded by the
 * handshake timeout, aborts, dial races) and redials of lossless sessions, with a cache of
 * refusals so that a peer that refused us is not redialed in a storm.
 *
 * @module
 */

import { type Connection, sessionOf } from "../connection.ts";
import { HandshakeRefusedError, TimeoutError, UnexpectedPeerError } from "../errors.ts";
import type { Limits } from "../options.ts";
import { Policies, type Policy, type PolicyName } from "../policy.ts";
import { SupersededError } from "../session/session.ts";
import type { Clock } from "../timer/clock.ts";
import type { TimerPort } from "../session/state.ts";
import type { Link, Transport } from "../../transports/types.ts";
import type { SessionRegistry } from "./registry.ts";

/** Refusals remembered at most; the oldest go first. */
const MAX_REMEMBERED_REFUSALS = 1024;

/** Options of `Messenger.connect`. */
export interface ConnectOptions {
  /** Client policy of the new connection. Default `lossyClient`. */
  policy?: PolicyName;
  /** Aborts the dial and handshake: `connect()` rejects with `signal.reason`. */
  signal?: AbortSignal;
  /**
   * The node name the caller expects at `addr`. A peer that gives another name is not
   * returned: `connect()` rejects with `UnexpectedPeerError` (and a dial of its own is closed).
   * It also lets `connect()` reuse a session the named node dialed in, instead of dialing.
   */
  expectName?: string;
}

/** What the dialer needs from its node. */
export interface DialerPorts {
  /** The registry of connections. */
  readonly registry: SessionRegistry;
  /** The wheel's timers, for dial bounds. */
  readonly timers: TimerPort;
  /** The wheel's clock, for the refusal cache. */
  readonly clock: Clock;
  /** Limits (handshake timeout, refusal retry). */
  readonly limits: Limits;
  /** The transport for an address; throws `TypeError` for an unknown scheme. */
  transportFor(addr: string): Transport;
  /** A new client connection to `addr`. */
  newConnection(policy: Policy, addr: string): Connection;
  /** Throws unless the node is running. */
  checkRunning(): void;
}

/**
 * Dials for one node.
 *
 * @example
 * ```ts ignore
 * const conn = await dialer.connect("tcp://127.0.0.1:7000", { policy: "losslessClient" });
 * ```
 */
export class Dialer {
  readonly #p: DialerPorts;
  readonly #refused = new Map<string, { error: HandshakeRefusedError; until: number }>();

  /** A dialer over `ports`. */
  constructor(ports: DialerPorts) {
    this.#p = ports;
  }

  /** Forgets every refusal (the heartbeat settings changed). */
  clearRefusals(): void {
    this.#refused.clear();
  }

  /** See `Messenger.connect`. */
  async connect(addr: string, options: ConnectOptions = {}): Promise<Connection> {
    const p = this.#p;
    p.checkRunning();
    options.signal?.throwIfAborted();
    this.#checkRefused(addr);
    const policy = Policies[options.policy ?? "lossyClient"];
    if (!policy || policy.role === "server") {
      throw new TypeError(`Not a dialing policy: ${options.policy}`);
    }
    if (!policy.lossy && p.registry.otherLossless(addr, policy.name)) {
      throw new TypeError(
        `A lossless session to ${addr} with another policy exists: one per pair of nodes`,
      );
    }
    const existing = p.registry.existing(addr, policy.name, options.expectName);
    if (existing) return this.#expected(await this.#opened(existing, addr), options);
    const transport = p.transportFor(addr);
    const conn = p.newConnection(policy, addr);
    const session = sessionOf(conn);
    p.registry.addDial(addr, conn);
    const signal = options.signal;
    const onAbort = () => session.abort(signal!.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      let link: Link;
      try {
        link = await this.#dial(transport, addr, signal);
      } catch (error) {
        session.abort(error as Error);
        throw error;
      }
      if (conn.state !== "connecting") {
        // Aborted, superseded by the peer's winning dial, or the messenger is closing.
        link.close();
      } else {
        session.attach(link);
      }
      const reached = await this.#opened(conn, addr);
      // A dial of our own that reached the wrong node is closed; a session that other calls
      // use (an existing one, or a race winner) is only not returned.
      if (reached === conn) return this.#expected(conn, options, conn);
      return this.#expected(reached, options);
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /** `conn`, if its peer is the one `options.expectName` names; `ours` is closed if not. */
  #expected(conn: Connection, options: ConnectOptions, ours?: Connection): Connection {
    const expected = options.expectName;
    if (expected === undefined || conn.peerName === expected) return conn;
    const error = new UnexpectedPeerError(expected, conn.peerName);
    ours?.abort(error);
    throw error;
  }

  /** A lossless session's redial, bounded by the handshake timeout like the first dial. */
  redial(addr: string): Promise<Link> {
    return this.#dial(this.#p.transportFor(addr), addr);
  }

  #checkRefused(addr: string): void {
    const refused = this.#refused.get(addr);
    if (!refused) return;
    if (refused.until > this.#p.clock.now()) throw refused.error;
    this.#refused.delete(addr);
  }

  /** Opens a link, bounded by the handshake timeout (a wheel timer) and by `signal`. */
  async #dial(transport: Transport, addr: string, signal?: AbortSignal): Promise<Link> {
    const ms = this.#p.limits.handshakeTimeoutMs;
    const bound = new AbortController();
    const timer = this.#p.timers.schedule(ms, () => {
      bound.abort(new TimeoutError(`Dial to ${addr} timed out after ${ms} ms`, ms));
    });
    const both = signal ? AbortSignal.any([signal, bound.signal]) : bound.signal;
    try {
      return await transport.connect(addr, { signal: both });
    } catch (error) {
      throw both.aborted ? both.reason : error;
    } finally {
      timer.cancel();
    }
  }

  /** Waits for the handshake; a lost dial race resolves to the winning session. */
  async #opened(conn: Connection, addr: string): Promise<Connection> {
    try {
      await conn.opened();
    } catch (error) {
      if (error instanceof SupersededError) {
        // A dial race: the peer's own dial carries the session.
        const winner = error.winner as Connection;
        await winner.opened();
        return winner;
      }
      if (error instanceof HandshakeRefusedError && error.field === "race") {
        // The refusal names the node that keeps the session: only its word. Its session is
        // returned only if that node's own Hello listed `addr` among its listen addresses.
        const name = String(error.peer);
        const winner = await this.#p.registry.awaitSession(name, this.#p.limits.handshakeTimeoutMs);
        if (this.#p.registry.sessionAt(addr) === winner) return winner;
        throw new UnexpectedPeerError(`the node at ${addr}`, name);
      }
      if (error instanceof HandshakeRefusedError) this.#remember(addr, error);
      throw error;
    }
    return conn;
  }

  #remember(addr: string, error: HandshakeRefusedError): void {
    const now = this.#p.clock.now();
    for (const [key, r] of this.#refused) {
      if (r.until <= now || this.#refused.size >= MAX_REMEMBERED_REFUSALS) {
        this.#refused.delete(key);
      }
    }
    this.#refused.set(addr, { error, until: now + this.#p.limits.refusedRetryMs });
  }
}
