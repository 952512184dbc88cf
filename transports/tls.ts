/**
 * TLS transport (`tls://host:port`): TCP with TLS 1.3 from Deno (`Deno.listenTls`, and
 * `Deno.connect` + `Deno.startTls` so that the dialing side can turn Nagle off first). The
 * listening side needs a certificate and key; the dialing side the CA that signed them (Deno
 * trusts `caCerts` in addition to its built-in roots: a certificate from a public CA for the
 * same name would pass too, so give cluster nodes names no public CA will certify, or
 * terminate TLS where you control the roots).
 *
 * @module
 */

import { TransportError } from "../src/errors.ts";
import { StreamLink, StreamListener } from "./_stream.ts";
import { abortable, type Link, type Listener, parseHostPort, type Transport } from "./types.ts";

/** Options of {@linkcode TlsTransport}. */
export interface TlsTransportOptions {
  /** Certificate chain (PEM) for listening. */
  cert?: string;
  /** Private key (PEM) for listening. */
  key?: string;
  /**
   * Root certificates (PEM) that sign the peers' certificates, for dialing: the cluster CA.
   * Deno trusts them in addition to its public roots (it has no way to replace them), so pin
   * `serverName` too.
   */
  caCerts?: string[];
  /**
   * Name to verify every server certificate against (default: the address's host). Set it to
   * a cluster name under `.internal` (e.g. `nodes.mycluster.internal`) that only the cluster
   * CA certifies: public CAs may not issue certificates for it, so only a certificate the
   * cluster CA signed passes (docs/security.md).
   */
  serverName?: string;
}

/**
 * The TLS transport.
 *
 * @example
 * ```ts ignore
 * import { Messenger } from "../mod.ts";
 * import { TlsTransport } from "./tls.ts";
 * const tls = new TlsTransport({ cert, key, caCerts: [ca] });
 * const node = new Messenger({ name: "a", transports: [tls] });
 * await node.listen("tls://127.0.0.1:6800");
 * ```
 */
export class TlsTransport implements Transport {
  /** Serves `tls://` addresses. */
  readonly schemes = ["tls"] as const;
  readonly #options: TlsTransportOptions;

  /** Creates the transport. */
  constructor(options: TlsTransportOptions = {}) {
    this.#options = options;
  }

  /** Binds a TLS listener (needs `cert` and `key`). */
  listen(addr: string): Promise<Listener> {
    const { hostname, port } = parseHostPort(addr, "tls");
    const { cert, key } = this.#options;
    if (!cert || !key) {
      return Promise.reject(new TypeError("Listening on tls:// needs a certificate and key"));
    }
    const listener = Deno.listenTls({ hostname, port, cert, key, transport: "tcp" });
    return Promise.resolve(new StreamListener(listener, "tls", (c) => new StreamLink(c, "tls")));
  }

  /** Dials a TLS peer and completes the TLS handshake. */
  async connect(addr: string, options: { signal?: AbortSignal } = {}): Promise<Link> {
    const { hostname, port } = parseHostPort(addr, "tls");
    const { signal } = options;
    let tcp: Deno.TcpConn | undefined, conn: Deno.TlsConn | undefined;
    try {
      tcp = await Deno.connect({ hostname, port, transport: "tcp", signal });
      tcp.setNoDelay(true);
      conn = await Deno.startTls(tcp, {
        hostname: this.#options.serverName ?? hostname,
        caCerts: this.#options.caCerts,
      });
      await abortable(conn.handshake(), signal, () => {});
      return new StreamLink(conn, "tls");
    } catch (cause) {
      try {
        (conn ?? tcp)?.close(); // whichever holds the socket now
      } catch { /* closed already */ }
      if (signal?.aborted) throw signal.reason;
      throw new TransportError(`TLS connect to ${addr} failed: ${(cause as Error).message}`, {
        cause,
      });
    }
  }
}
