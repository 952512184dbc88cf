/**
 * QUIC transport on Deno's QUIC endpoint (`Deno.QuicEndpoint`, `Deno.connectQuic`; run with
 * `--unstable-net`). Addresses: `quic://127.0.0.1:6800`. TLS is mandatory: the listening side
 * needs a certificate and key, the dialing side the CA that signed it. ALPN is
 * {@linkcode QUIC_ALPN}.
 *
 * Mapping: one QUIC connection per link and **one bidirectional stream** per session, opened
 * by the dialer. Frames, heartbeats included, share that stream, so a stalled data channel
 * shows as a missed heartbeat exactly as on TCP (a second stream for heartbeats would dodge
 * head-of-line blocking, and so hide the very stall heartbeats are meant to reveal). See
 * docs/transports.md.
 *
 * Not exported from mod.ts: it needs `--unstable-net`, and importing it must stay optional.
 *
 * @module
 */

import { TransportError } from "../src/errors.ts";
import { AsyncQueue } from "../src/_async_queue.ts";
import {
  abortable,
  concatChunks,
  formatHostPort,
  type Link,
  type Listener,
  parseHostPort,
  type Transport,
} from "./types.ts";

/**
 * Default ALPN protocol id: the protocol's name and wire version (a test checks it against
 * `PROTOCOL_VERSION`; transports import nothing from the protocol layer).
 */
export const QUIC_ALPN = "heartline/1";

/** Options of {@linkcode QuicTransport}. */
export interface QuicTransportOptions {
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
  /** ALPN protocol id offered and required. Default {@linkcode QUIC_ALPN}. */
  alpn?: string;
  /** Seconds of idle before QUIC itself gives up on a silent peer (default: QUIC's own). */
  maxIdleTimeoutMs?: number;
}

class QuicLink implements Link {
  readonly localAddr: string;
  readonly remoteAddr: string;
  /** QUIC protects integrity (TLS 1.3 inside). */
  readonly integrity = true;
  #conn: Deno.QuicConn;
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #closed = false;
  /** Settles when a read sees the peer's end of stream, a read fails, or the link closes. */
  #ended = Promise.withResolvers<void>();

  /** Called once when the link closes (an accepting listener counts its live links). */
  #onGone: () => void;

  constructor(
    conn: Deno.QuicConn,
    stream: Deno.QuicBidirectionalStream,
    localAddr: string,
    onGone: () => void = () => {},
  ) {
    this.#conn = conn;
    this.#onGone = onGone;
    this.#reader = stream.readable.getReader();
    this.#writer = stream.writable.getWriter();
    this.localAddr = localAddr;
    this.remoteAddr = formatHostPort("quic", conn.remoteAddr.hostname, conn.remoteAddr.port);
    conn.closed.then(() => this.close(), () => this.close());
  }

  async read(): Promise<Uint8Array | null> {
    if (this.#closed) return null;
    try {
      const { value, done } = await this.#reader.read();
      if (done) this.#ended.resolve();
      return done ? null : value;
    } catch (cause) {
      this.#ended.resolve();
      if (this.#closed) return null;
      throw new TransportError(`QUIC read failed: ${(cause as Error).message}`, { cause });
    }
  }

  async write(chunks: Uint8Array[]): Promise<void> {
    if (this.#closed) throw new TransportError("QUIC link is closed");
    try {
      // The writer's ready promise carries QUIC's flow control: a peer that does not read
      // makes this wait.
      await this.#writer.ready;
      await this.#writer.write(concatChunks(chunks));
    } catch (cause) {
      throw new TransportError(`QUIC write failed: ${(cause as Error).message}`, { cause });
    }
  }

  /**
   * A lingering close's first half: finishes our stream and resolves once the peer has
   * finished its own (while the session keeps reading) or closed the connection. The writer's
   * close resolves before the peer has the bytes, and closing the connection then drops what
   * is still in flight; the peer's end of stream comes after everything it was sent before.
   */
  async flush(): Promise<void> {
    if (this.#closed) return;
    await this.#writer.close().catch(() => {});
    await this.#ended.promise;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#ended.resolve();
    queueMicrotask(this.#onGone);
    this.#reader.cancel().catch(() => {});
    this.#writer.close().catch(() => {});
    try {
      this.#conn.close({ closeCode: 0, reason: "closed" });
    } catch {
      // closed already
    }
  }
}

class QuicListener implements Listener {
  readonly addr: string;
  #endpoint: Deno.QuicEndpoint;
  #listener: Deno.QuicListener;
  #hostname: string;
  /** Links accepted and not yet closed. */
  #live = 0;
  #stopped = false;

  constructor(endpoint: Deno.QuicEndpoint, listener: Deno.QuicListener, hostname: string) {
    this.#endpoint = endpoint;
    this.#listener = listener;
    this.#hostname = hostname;
    this.addr = formatHostPort("quic", hostname, endpoint.addr.port);
  }

  [Symbol.asyncIterator](): AsyncIterator<Link> {
    // Each incoming connection completes its QUIC handshake and opens its stream on its own,
    // so a slow dialer does not hold up the others; links come out in the order they are ready.
    const ready = new AsyncQueue<Link>();
    (async () => {
      try {
        for await (const incoming of this.#listener) {
          // A link accepted after close() is not handed out: it is closed.
          this.#accept(incoming).then((link) => link && !ready.push(link) && link.close());
        }
      } catch {
        // listener stopped
      } finally {
        ready.close();
      }
    })();
    return ready[Symbol.asyncIterator]();
  }

  async #accept(incoming: Deno.QuicIncoming): Promise<Link | null> {
    try {
      const conn = await incoming.accept();
      const streams = conn.incomingBidirectionalStreams.getReader();
      const { value } = await streams.read();
      streams.releaseLock();
      if (!value) {
        conn.close({ closeCode: 1, reason: "no stream" });
        return null;
      }
      this.#live++;
      return new QuicLink(
        conn,
        value,
        formatHostPort("quic", this.#hostname, this.#endpoint.addr.port),
        () => {
          this.#live--;
          this.#closeEndpointIfIdle();
        },
      );
    } catch {
      return null; // a peer that failed its handshake does not end the listener
    }
  }

  /**
   * Stops accepting. The endpoint itself closes once the links accepted from it are closed:
   * closing it ends every connection on it at once, cutting their orderly closes short.
   */
  close(): void {
    this.#stopped = true;
    try {
      this.#listener.stop();
    } catch {
      // stopped already
    }
    this.#closeEndpointIfIdle();
  }

  #closeEndpointIfIdle(): void {
    if (!this.#stopped || this.#live > 0) return;
    try {
      this.#endpoint.close();
    } catch {
      // closed already
    }
  }
}

/**
 * The QUIC transport.
 *
 * @example
 * ```ts ignore
 * import { Messenger } from "../mod.ts";
 * import { QuicTransport } from "./quic.ts";
 * const quic = new QuicTransport({ cert, key, caCerts: [caCert] });
 * const node = new Messenger({ name: "a", transports: [quic] });
 * await node.listen("quic://127.0.0.1:6800");
 * ```
 */
export class QuicTransport implements Transport {
  /** Serves `quic://` addresses. */
  readonly schemes = ["quic"] as const;
  #options: QuicTransportOptions;

  /** Creates the transport; `cert` and `key` are needed to listen. */
  constructor(options: QuicTransportOptions = {}) {
    this.#options = options;
  }

  /** Binds a QUIC endpoint and listens on it. */
  listen(addr: string): Promise<Listener> {
    const { hostname, port } = parseHostPort(addr, "quic");
    const { cert, key } = this.#options;
    if (!cert || !key) {
      return Promise.reject(new TypeError("QUIC listening needs a certificate and key"));
    }
    const endpoint = new Deno.QuicEndpoint({ hostname, port });
    const listener = endpoint.listen({
      alpnProtocols: [this.#options.alpn ?? QUIC_ALPN],
      cert,
      key,
      maxIdleTimeout: this.#options.maxIdleTimeoutMs,
    });
    return Promise.resolve(new QuicListener(endpoint, listener, hostname));
  }

  /** Dials a QUIC peer and opens the session's stream; `signal` abandons the attempt. */
  async connect(addr: string, options: { signal?: AbortSignal } = {}): Promise<Link> {
    const { hostname, port } = parseHostPort(addr, "quic");
    const signal = options.signal;
    try {
      signal?.throwIfAborted();
      const dialing = Promise.resolve(Deno.connectQuic({
        hostname,
        port,
        alpnProtocols: [this.#options.alpn ?? QUIC_ALPN],
        caCerts: this.#options.caCerts,
        serverName: this.#options.serverName,
        maxIdleTimeout: this.#options.maxIdleTimeoutMs,
      }));
      // connectQuic takes no signal: race it, and close a connection that arrives too late.
      const conn = await abortable(dialing, signal, (late) => {
        late.close({ closeCode: 0, reason: "dial abandoned" });
        try {
          late.endpoint.close();
        } catch {
          // closed already
        }
      });
      // connectQuic made an endpoint (a UDP socket) for this connection alone: it closes with
      // the link, or it would stay open after the connection is gone.
      const closeEndpoint = () => {
        try {
          conn.endpoint.close();
        } catch {
          // closed already
        }
      };
      const local = formatHostPort("quic", hostname, conn.endpoint.addr.port);
      try {
        const stream = await conn.createBidirectionalStream();
        return new QuicLink(conn, stream, local, closeEndpoint);
      } catch (error) {
        conn.close({ closeCode: 1, reason: "no stream" });
        closeEndpoint();
        throw error;
      }
    } catch (cause) {
      throw new TransportError(`QUIC connect to ${addr} failed: ${(cause as Error).message}`, {
        cause,
      });
    }
  }
}
