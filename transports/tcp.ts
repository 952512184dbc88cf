/**
 * TCP transport on `Deno.listen` / `Deno.connect`, with Nagle off and each batch written as
 * one buffer. Addresses: `tcp://127.0.0.1:6800`, `tcp://[::1]:6800`.
 *
 * @module
 */

import { TransportError } from "../src/errors.ts";
import { dialNodeSocket, nodeNet, NodeSocketListener } from "./_node_socket.ts";
import { StreamLink, StreamListener } from "./_stream.ts";
import { type Link, type Listener, parseHostPort, type Transport } from "./types.ts";

function tcpLink(conn: Deno.TcpConn): Link {
  conn.setNoDelay(true);
  return new StreamLink(conn, "tcp");
}

/** Options of {@linkcode TcpTransport}. */
export interface TcpTransportOptions {
  /** Bind with `SO_REUSEPORT`, so other listeners may share the port. Default false. */
  reusePort?: boolean;
  /**
   * Which sockets carry the links: `"deno"` (`Deno.listen`/`Deno.connect`, the default) or
   * `"node"` (`node:net`). The two speak the same bytes and can be mixed across nodes. In
   * Deno 2.9 a `node:net` socket holds far less memory while it waits for bytes (each
   * `Deno.Conn` read is an op that costs about 10 KB while pending), so a node with
   * thousands of mostly idle connections holds much less with `"node"` (docs/operations.md,
   * Idle connections). `reusePort` needs `"deno"`.
   */
  sockets?: "deno" | "node";
}

/**
 * The TCP transport.
 *
 * @example
 * ```ts
 * import { TcpTransport } from "./tcp.ts";
 * const tcp = new TcpTransport();
 * const listener = await tcp.listen("tcp://127.0.0.1:0");
 * if (!listener.addr.startsWith("tcp://127.0.0.1:")) throw new Error(listener.addr);
 * listener.close();
 * ```
 */
export class TcpTransport implements Transport {
  /** Serves `tcp://` addresses. */
  readonly schemes = ["tcp"] as const;
  #reusePort: boolean;
  #node: boolean;

  /**
   * Creates the transport. With `reusePort` (`SO_REUSEPORT`, Linux), several listeners, one
   * per worker or process, may bind the same port, and the kernel spreads incoming
   * connections over them: a node can use more than one core (docs/operations.md, Cores).
   * Deno 2.9 counts `reusePort` as unstable: run with `--unstable-net` to use it.
   */
  constructor(options: TcpTransportOptions = {}) {
    this.#reusePort = options.reusePort ?? false;
    this.#node = options.sockets === "node";
    if (options.sockets !== undefined && options.sockets !== "deno" && !this.#node) {
      throw new TypeError(`Option sockets must be "deno" or "node": ${options.sockets}`);
    }
    if (this.#node && this.#reusePort) {
      throw new TypeError('Option reusePort needs sockets: "deno"');
    }
    if (this.#node) nodeNet(); // a runtime without node:net fails here, not at the first dial
    // Without the flag Deno 2.9 exits the process at the listen, with no error to catch.
    const deno = (globalThis as { Deno?: { listenDatagram?: unknown } }).Deno;
    if (this.#reusePort && typeof deno?.listenDatagram !== "function") {
      throw new TypeError("Option reusePort needs Deno's --unstable-net flag");
    }
  }

  /** Binds a TCP listener. */
  listen(addr: string): Promise<Listener> {
    const { hostname, port } = parseHostPort(addr, "tcp");
    if (this.#node) return NodeSocketListener.listen(hostname, port);
    const listener = Deno.listen({ hostname, port, transport: "tcp", reusePort: this.#reusePort });
    return Promise.resolve(new StreamListener(listener, "tcp", tcpLink));
  }

  /** Dials a TCP peer. */
  async connect(addr: string, options: { signal?: AbortSignal } = {}): Promise<Link> {
    const { hostname, port } = parseHostPort(addr, "tcp");
    try {
      if (this.#node) return await dialNodeSocket(hostname, port, options.signal);
      const conn = await Deno.connect({ hostname, port, transport: "tcp", signal: options.signal });
      return tcpLink(conn);
    } catch (cause) {
      throw new TransportError(`TCP connect to ${addr} failed: ${(cause as Error).message}`, {
        cause,
      });
    }
  }
}
