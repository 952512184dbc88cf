/**
 * A userland TCP proxy on loopback that injects faults on command: cut every connection,
 * stall forwarding (bytes back up into the sockets, as a peer that stops reading), blackhole
 * (bytes vanish, the connections stay up), and delay each chunk. For tests and benchmarks.
 *
 * @module
 */

/** Options of {@linkcode FaultProxy.start}. */
export interface FaultProxyOptions {
  /** Target port on 127.0.0.1. */
  targetPort: number;
}

interface Pair {
  client: Deno.TcpConn;
  server: Deno.TcpConn;
  closed: boolean;
  /** Set while an end of stream is held back (see `holdEnds`). */
  held?: () => void;
}

/** The proxy. Every loop it runs is bounded by its connections; `close()` ends them all. */
export class FaultProxy {
  /** `tcp://127.0.0.1:<port>`: dial this instead of the target. */
  readonly addr: string;
  #listener: Deno.TcpListener;
  #target: number;
  #pairs = new Set<Pair>();
  #stalled = false;
  #blackhole = false;
  #holdEnds = false;
  #delayMs = 0;
  #wakeStalled: (() => void)[] = [];
  /** Connections accepted so far. */
  accepted = 0;

  private constructor(listener: Deno.TcpListener, targetPort: number) {
    this.#listener = listener;
    this.#target = targetPort;
    this.addr = `tcp://127.0.0.1:${listener.addr.port}`;
    this.#acceptLoop();
  }

  /** Starts a proxy in front of `127.0.0.1:targetPort`. */
  static start(options: FaultProxyOptions): FaultProxy {
    return new FaultProxy(Deno.listen({ hostname: "127.0.0.1", port: 0 }), options.targetPort);
  }

  /** Open proxied connections. */
  get connections(): number {
    return this.#pairs.size;
  }

  /** Closes every current connection (both sides see the link end). */
  cut(): void {
    for (const pair of this.#pairs) this.#closePair(pair);
  }

  /** While on, nothing is forwarded; the sockets fill up and writers block. */
  stall(on: boolean): void {
    this.#stalled = on;
    if (!on) { for (const wake of this.#wakeStalled.splice(0)) wake(); }
  }

  /** While on, bytes read are dropped; connections stay up. */
  /**
   * While on, an end of stream from either side is not passed on: the other side never sees
   * the FIN (a peer that went silent without closing, as a NAT or firewall can make it look).
   */
  holdEnds(on: boolean): void {
    this.#holdEnds = on;
  }

  blackhole(on: boolean): void {
    this.#blackhole = on;
  }

  /** Delays each forwarded chunk by `ms`. */
  delay(ms: number): void {
    this.#delayMs = ms;
  }

  /** Stops listening and cuts everything. */
  close(): void {
    try {
      this.#listener.close();
    } catch {
      // closed already
    }
    this.stall(false);
    this.cut();
  }

  async #acceptLoop(): Promise<void> {
    for (;;) {
      let client: Deno.TcpConn;
      try {
        client = await this.#listener.accept();
      } catch {
        return; // listener closed
      }
      this.accepted++;
      let server: Deno.TcpConn;
      try {
        server = await Deno.connect({ hostname: "127.0.0.1", port: this.#target });
      } catch {
        client.close();
        continue;
      }
      const pair: Pair = { client, server, closed: false };
      this.#pairs.add(pair);
      this.#pump(pair, client, server);
      this.#pump(pair, server, client);
    }
  }

  async #pump(pair: Pair, from: Deno.TcpConn, to: Deno.TcpConn): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null && this.#holdEnds && !pair.closed) {
          await new Promise<void>((resolve) => pair.held = resolve); // until the pair closes
          break;
        }
        if (n === null || pair.closed) break;
        while (this.#stalled && !pair.closed) {
          await new Promise<void>((resolve) => this.#wakeStalled.push(resolve));
        }
        if (pair.closed) break;
        if (this.#blackhole) continue;
        if (this.#delayMs > 0) await new Promise((r) => setTimeout(r, this.#delayMs));
        let at = 0;
        while (at < n) at += await to.write(buf.subarray(at, n));
      }
    } catch {
      // either side failed: the pair ends
    }
    this.#closePair(pair);
  }

  #closePair(pair: Pair): void {
    if (pair.closed) return;
    pair.closed = true;
    pair.held?.();
    this.#pairs.delete(pair);
    for (const conn of [pair.client, pair.server]) {
      try {
        conn.close();
      } catch {
        // closed already
      }
    }
  }
}
