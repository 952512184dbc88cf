/**
 * WebSocket transport, for nodes that can only accept HTTP (edge runtimes). Addresses:
 * `ws://127.0.0.1:6800/heartline`, `wss://host/heartline`. The listening side uses
 * `Deno.serve` with `Deno.upgradeWebSocket`; the dialing side the standard `WebSocket`.
 * Each batch of frames is one binary WebSocket message.
 *
 * To share a port with other HTTP routes (the admin endpoint, say), use
 * {@linkcode WebSocketTransport.attach}: it returns a listener for `messenger.listenOn()` and
 * a request handler to mount in your own server.
 *
 * Back-pressure: writes wait while the socket's `bufferedAmount` is above
 * {@linkcode WS_HIGH_WATER}. The WebSocket API cannot pause reading, so a link whose unread
 * data passes {@linkcode WS_MAX_UNREAD} is closed with a `TransportError` instead of letting
 * memory grow without bound.
 *
 * @module
 */

import { TransportError } from "../src/errors.ts";
import { AsyncQueue } from "../src/_async_queue.ts";
import { concatChunks, type Link, type Listener, type Transport } from "./types.ts";

/** Default path of the WebSocket endpoint. */
export const WS_PATH = "/heartline";
/** Bytes a writer may leave in `bufferedAmount` before `write()` waits. */
export const WS_HIGH_WATER = 1024 * 1024;
/** Unread bytes a link holds before it gives up on a reader that does not keep up. */
export const WS_MAX_UNREAD = 64 * 1024 * 1024;

class WebSocketLink implements Link {
  readonly localAddr: string;
  readonly remoteAddr: string;
  /** A `wss://` dial protects integrity; an accepted link may sit behind a TLS terminator. */
  readonly integrity: boolean;
  #ws: WebSocket;
  #queue: Uint8Array[] = [];
  #unread = 0;
  #wake: (() => void) | null = null;
  #ended = false;
  #error: Error | null = null;
  #closed = false;
  #maxUnread: number;
  /** Settles when the socket is closed (the `close` event). */
  #gone = Promise.withResolvers<void>();

  constructor(
    ws: WebSocket,
    localAddr: string,
    remoteAddr: string,
    maxUnread: number,
    onGone: () => void = () => {},
  ) {
    this.#ws = ws;
    this.#maxUnread = maxUnread;
    this.localAddr = localAddr;
    this.remoteAddr = remoteAddr;
    this.integrity = remoteAddr.startsWith("wss:");
    ws.binaryType = "arraybuffer";
    ws.onmessage = (e) => {
      if (!(e.data instanceof ArrayBuffer)) {
        this.#fail(new TransportError("WebSocket text message on a heartline link"));
        return;
      }
      const chunk = new Uint8Array(e.data);
      this.#queue.push(chunk);
      this.#unread += chunk.length;
      if (this.#unread > this.#maxUnread) {
        this.#fail(new TransportError(`WebSocket reader fell behind by ${this.#unread} bytes`));
        return;
      }
      this.#wakeReader();
    };
    ws.onclose = (e) => {
      onGone();
      this.#gone.resolve();
      if (!e.wasClean && !this.#closed) {
        this.#error ??= new TransportError(`WebSocket closed: ${e.code} ${e.reason}`);
      }
      this.#ended = true;
      this.#wakeReader();
    };
    ws.onerror = () => {
      this.#error ??= new TransportError("WebSocket error");
      this.#wakeReader();
    };
  }

  #wakeReader(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  #fail(error: Error): void {
    this.#error ??= error;
    this.#queue = [];
    this.#unread = 0;
    this.#wakeReader();
    try {
      this.#ws.close(1011, error.message.slice(0, 100));
    } catch {
      // closing already
    }
  }

  async read(): Promise<Uint8Array | null> {
    for (;;) {
      if (this.#error && !this.#closed) throw this.#error;
      const chunk = this.#queue.shift();
      if (chunk) {
        this.#unread -= chunk.length;
        return chunk;
      }
      if (this.#ended || this.#closed) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
  }

  async write(chunks: Uint8Array[]): Promise<void> {
    if (this.#closed || this.#ended) throw new TransportError("WebSocket link is closed");
    if (this.#error) throw this.#error;
    try {
      this.#ws.send(concatChunks(chunks));
    } catch (cause) {
      throw new TransportError(`WebSocket send failed: ${(cause as Error).message}`, { cause });
    }
    // No drain event exists: poll, only while over the high-water mark.
    while (this.#ws.bufferedAmount > WS_HIGH_WATER && !this.#ended && !this.#error) {
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  /**
   * A graceful close's first half: waits until what was sent has left this process (no drain
   * event exists, so `bufferedAmount` is polled while it is above 0), then starts the
   * WebSocket closing handshake and resolves when the peer has answered it, so everything
   * before it reached the peer. The session closes the link after (bounded).
   */
  async flush(): Promise<void> {
    while (this.#ws.bufferedAmount > 0 && !this.#ended && !this.#error && !this.#closed) {
      await new Promise((r) => setTimeout(r, 1));
    }
    if (this.#ended || this.#closed) return;
    try {
      this.#ws.close(1000, "closed");
    } catch {
      return; // closing already
    }
    await this.#gone.promise;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#wakeReader();
    try {
      this.#ws.close(1000, "closed");
    } catch {
      // closing already
    }
  }
}

function wsParts(addr: string): { url: URL; hostname: string; port: number; path: string } {
  let url: URL;
  try {
    url = new URL(addr);
  } catch (cause) {
    throw new TypeError(`Invalid address: ${addr}`, { cause });
  }
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new TypeError(`Address scheme must be ws or wss: ${addr}`);
  }
  const port = url.port === "" ? (url.protocol === "wss:" ? 443 : 80) : Number(url.port);
  const path = url.pathname === "/" ? WS_PATH : url.pathname;
  return { url, hostname: url.hostname.replace(/^\[(.*)\]$/, "$1"), port, path };
}

/** A listener fed by an HTTP handler; see {@linkcode WebSocketTransport.attach}. */
export interface AttachedListener {
  /** The listener to give to `messenger.listenOn()`. */
  listener: Listener;
  /** Mount this in any `Deno.serve` (or hono) app: it answers the upgrade, or returns null. */
  handle(req: Request, info?: Deno.ServeHandlerInfo): Response | null;
}

class HandlerListener implements Listener {
  readonly addr: string;
  readonly queue = new AsyncQueue<Link>();
  /** Links accepted through this listener whose socket is still open. */
  live = 0;
  /** Called on `close()`, and each time an accepted link's socket is gone. */
  onChange: () => void = () => {};
  constructor(addr: string) {
    this.addr = addr;
  }
  [Symbol.asyncIterator](): AsyncIterator<Link> {
    return this.queue[Symbol.asyncIterator]();
  }
  close(): void {
    this.queue.close();
    this.onChange();
  }
}

/**
 * The WebSocket transport.
 *
 * @example
 * ```ts
 * import { Messenger } from "../mod.ts";
 * import { WebSocketTransport } from "./websocket.ts";
 * const ws = new WebSocketTransport();
 * const a = new Messenger({ name: "a", transports: [ws] });
 * const b = new Messenger({ name: "b", transports: [ws] });
 * const addr = await a.listen("ws://127.0.0.1:0/heartline");
 * const conn = await b.connect(addr);
 * await conn.send(1, new Uint8Array([1]));
 * for await (const m of a.messages()) {
 *   if (m.type !== 1) throw new Error("wrong message");
 *   break;
 * }
 * await b.close();
 * await a.close();
 * ```
 */
export class WebSocketTransport implements Transport {
  /** Serves `ws://` and `wss://` addresses. */
  readonly schemes = ["ws", "wss"] as const;
  #maxUnread: number;
  #allowedOrigins: ReadonlySet<string>;

  /**
   * Creates the transport. An upgrade request that carries an `Origin` header (every browser
   * sends one) is refused with 403 unless that origin is in `allowedOrigins` (default: none),
   * so a web page the machine happens to open cannot dial into the cluster; peers that send no
   * `Origin` (other nodes, the CLI) are not affected.
   */
  constructor(options: { maxUnreadBytes?: number; allowedOrigins?: string[] } = {}) {
    this.#maxUnread = options.maxUnreadBytes ?? WS_MAX_UNREAD;
    this.#allowedOrigins = new Set(options.allowedOrigins ?? []);
  }

  /**
   * A listener without a server of its own: mount `handle` in your HTTP server (for example
   * beside the admin routes, to use one port) and pass `listener` to `messenger.listenOn()`.
   * `addr` is the address peers dial (`ws://host:port/path`).
   */
  attach(addr: string): AttachedListener {
    const { path } = wsParts(addr);
    const listener = new HandlerListener(addr);
    return {
      listener,
      handle: (req, info) => {
        const url = new URL(req.url);
        if (url.pathname !== path) return null;
        if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
          return new Response("heartline WebSocket endpoint: upgrade required", { status: 426 });
        }
        const origin = req.headers.get("origin");
        if (origin !== null && !this.#allowedOrigins.has(origin)) {
          return new Response("origin not allowed", { status: 403 });
        }
        if (listener.queue.closed) return new Response("closed", { status: 503 });
        const remote = info?.remoteAddr as Deno.NetAddr | undefined; // read before upgrading
        const remoteAddr = remote ? `ws://${remote.hostname}:${remote.port}` : "ws://unknown";
        const { socket, response } = Deno.upgradeWebSocket(req, { idleTimeout: 0 });
        socket.onopen = () => {
          listener.live++;
          const gone = () => {
            listener.live--;
            listener.onChange();
          };
          const link = new WebSocketLink(socket, addr, remoteAddr, this.#maxUnread, gone);
          if (!listener.queue.push(link)) link.close(); // the listener closed meanwhile
        };
        return response;
      },
    };
  }

  /** Serves the endpoint with `Deno.serve` on the address's host and port. */
  listen(addr: string): Promise<Listener> {
    const { url, hostname, port, path } = wsParts(addr);
    if (url.protocol === "wss:") {
      return Promise.reject(
        new TypeError("Listening on wss:// needs TLS: terminate it in front, or use attach()"),
      );
    }
    return new Promise((resolve) => {
      let attached: AttachedListener;
      const server = Deno.serve({
        hostname,
        port,
        onListen: (bound) => {
          const host = bound.hostname.includes(":") ? `[${bound.hostname}]` : bound.hostname;
          attached = this.attach(`ws://${host}:${bound.port}${path}`);
          // Closing the listener stops accepting (new upgrades get 503); the server itself
          // stays up until the links it accepted are gone, since shutting it down ends them.
          const listener = attached.listener as HandlerListener;
          let down = false;
          listener.onChange = () => {
            if (down || !listener.queue.closed || listener.live > 0) return;
            down = true;
            void server.shutdown();
          };
          resolve(attached.listener);
        },
      }, (req, info) => attached.handle(req, info) ?? new Response("not found", { status: 404 }));
    });
  }

  /** Dials a WebSocket endpoint. */
  connect(addr: string, options: { signal?: AbortSignal } = {}): Promise<Link> {
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const { url } = wsParts(addr);
    if (url.pathname === "/") url.pathname = WS_PATH;
    return new Promise((resolve, reject) => {
      let ws: WebSocket;
      try {
        ws = new WebSocket(url.href);
      } catch (cause) {
        reject(new TransportError(`WebSocket connect to ${addr} failed`, { cause }));
        return;
      }
      // An abort before the socket opens closes it and rejects with the signal's reason.
      const onAbort = () => {
        ws.onopen = ws.onerror = null;
        ws.close();
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      ws.binaryType = "arraybuffer";
      ws.onopen = () => {
        signal?.removeEventListener("abort", onAbort);
        ws.onerror = null;
        resolve(new WebSocketLink(ws, "ws://local", url.href, this.#maxUnread));
      };
      ws.onerror = () => {
        signal?.removeEventListener("abort", onAbort);
        reject(new TransportError(`WebSocket connect to ${addr} failed`));
      };
    });
  }
}
