/**
 * Edge nodes: one HTTP port for both the admin routes and heartline's WebSocket endpoint, for
 * runtimes that offer `Deno.serve` and outbound connections but no `Deno.listen` (edge
 * platforms). Peers dial `ws://host:port/heartline` (or `wss://` behind the platform's TLS) and
 * authenticate with heartline's own handshake keys; the admin routes keep their bearer token.
 *
 * {@linkcode serveNode} serves both with `Deno.serve`; {@linkcode createNodeHandler} returns a
 * plain `fetch` handler for platforms that own the server themselves
 * (`export default { fetch }`).
 *
 * @module
 */

import type { Messenger } from "../messenger.ts";
import { type AttachedListener, WebSocketTransport, WS_PATH } from "../../transports/websocket.ts";
import { type AdminAppOptions, createAdminApp } from "./app.ts";
import { serveHttp } from "./_serve.ts";

/** Paths the admin app answers; the WebSocket endpoint may not take one of them. */
const ADMIN_PATHS = ["/", "/health", "/metrics", "/peers", "/connections", "/events"];

/** Options of {@linkcode createNodeHandler}. */
export interface NodeHandlerOptions extends AdminAppOptions {
  /**
   * The address peers dial, `ws://host:port/path` or `wss://host/path` (the public URL of the
   * node); its path is where the endpoint is served. Without `auth` on the messenger, an
   * address beyond loopback is refused unless the messenger was made with `insecure: true`.
   */
  url: string;
  /**
   * The transport that serves the endpoint, to set its options (`allowedOrigins`,
   * `maxUnreadBytes`). Default: a new `WebSocketTransport()`.
   */
  transport?: WebSocketTransport;
}

/** A `fetch` handler for the admin routes and the WebSocket endpoint of one messenger. */
export interface NodeHandler {
  /** The address peers dial (the listener's address in `messenger.health().listening`). */
  readonly addr: string;
  /**
   * Answers a request: a WebSocket upgrade on the endpoint's path (no token needed), or the
   * admin app for every other path (with the token, when one is set).
   */
  fetch(req: Request, info?: Deno.ServeHandlerInfo): Response | Promise<Response>;
  /** Stops accepting peers (the endpoint then answers 503); the admin routes still answer. */
  close(): void;
}

/**
 * Mounts the WebSocket endpoint and the admin app of `messenger` in one `fetch` handler, for a
 * platform that owns the HTTP server (`export default { fetch }`, `deno serve`). The messenger
 * accepts peers from it at once; closing the messenger closes the endpoint.
 *
 * @example
 * ```ts
 * import { Messenger } from "../messenger.ts";
 * import { createNodeHandler } from "./edge.ts";
 * await using messenger = new Messenger({ name: "edge" });
 * const node = createNodeHandler(messenger, { url: "ws://127.0.0.1:8000/heartline" });
 * const health = await node.fetch(new Request("http://127.0.0.1:8000/health"));
 * if ((await health.json()).name !== "edge") throw new Error("wrong node");
 * // The endpoint answers plain requests by asking for an upgrade.
 * const plain = await node.fetch(new Request("http://127.0.0.1:8000/heartline"));
 * if (plain.status !== 426) throw new Error("expected 426");
 * // On a platform: export default { fetch: node.fetch };
 * ```
 */
export function createNodeHandler(messenger: Messenger, options: NodeHandlerOptions): NodeHandler {
  const transport = options.transport ?? new WebSocketTransport();
  const attached = transport.attach(options.url);
  const path = new URL(attached.listener.addr).pathname;
  if (ADMIN_PATHS.includes(path) || path.startsWith("/ui/")) {
    throw new TypeError(`WebSocket path is an admin route: ${path}`);
  }
  const addr = messenger.listenOn(attached.listener);
  return handlerFor(messenger, attached, addr, options);
}

function handlerFor(
  messenger: Messenger,
  attached: AttachedListener,
  addr: string,
  options: AdminAppOptions,
): NodeHandler {
  const app = createAdminApp(messenger, options);
  return {
    addr,
    // The endpoint first: it answers only its own path, before the admin app's token check.
    fetch: (req, info) => attached.handle(req, info) ?? app.fetch(req, info),
    close: () => attached.listener.close(),
  };
}

/** Options of {@linkcode serveNode}. */
export interface ServeNodeOptions extends AdminAppOptions {
  /** Interface to bind. Default `127.0.0.1`. */
  hostname?: string;
  /** Port; 0 picks a free one. Default 0. */
  port?: number;
  /** Path of the WebSocket endpoint. Default `/heartline`. */
  path?: string;
  /** The transport that serves the endpoint (see {@linkcode NodeHandlerOptions.transport}). */
  transport?: WebSocketTransport;
}

/** A running edge node server: the admin routes and the WebSocket endpoint on one port. */
export interface NodeServer {
  /** Base URL of the admin routes, e.g. `http://127.0.0.1:8000`. */
  readonly url: string;
  /** The address peers dial, e.g. `ws://127.0.0.1:8000/heartline`. */
  readonly addr: string;
  /**
   * Stops accepting peers and stops the server. While the messenger runs, the WebSocket links
   * it accepted end with it (their sessions see a fault); on `messenger.close()` they have
   * closed in order first.
   */
  close(): Promise<void>;
  /** Stops the server (for `await using`). */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Serves the admin app and the WebSocket endpoint of `messenger` on one `Deno.serve` port; it
 * needs no `Deno.listen` and no unstable API. The WebSocket route takes no bearer token (peers
 * authenticate in heartline's handshake); the admin routes need it when `token` is set. The
 * server stops after the messenger's connections when the messenger closes (or on `close()`).
 * Rejects with a `TypeError`, and releases the port, when the messenger may not listen there
 * (an interface beyond loopback without `auth` or `insecure: true`).
 *
 * @example
 * ```ts
 * import { Messenger } from "../messenger.ts";
 * import { WebSocketTransport } from "../../transports/websocket.ts";
 * import { serveNode } from "./edge.ts";
 * const ws = new WebSocketTransport();
 * const edge = new Messenger({ name: "edge", transports: [ws] });
 * const node = await serveNode(edge, { port: 0, token: "s3cret" });
 * const peer = new Messenger({ name: "peer", transports: [ws] });
 * const conn = await peer.connect(node.addr); // no token: peers use heartline's handshake
 * if (conn.peerName !== "edge") throw new Error("wrong peer");
 * const res = await fetch(`${node.url}/health`, { headers: { authorization: "Bearer s3cret" } });
 * if (res.status !== 200) throw new Error("unhealthy");
 * await res.body?.cancel();
 * await peer.close();
 * await edge.close(); // stops the server too
 * ```
 */
export async function serveNode(
  messenger: Messenger,
  options: ServeNodeOptions = {},
): Promise<NodeServer> {
  const path = options.path ?? WS_PATH;
  if (!path.startsWith("/")) throw new TypeError(`WebSocket path must start with "/": ${path}`);
  // The endpoint's address needs the bound port; the handler exists before any request runs.
  let handler: NodeHandler | undefined;
  const server = serveHttp(
    options,
    (req, info) => handler?.fetch(req, info) ?? new Response("closed", { status: 503 }),
  );
  try {
    handler = createNodeHandler(messenger, {
      ...options,
      signal: server.signal,
      url: `ws://${server.host}:${server.port}${path}`,
    });
  } catch (error) {
    await server.close();
    throw error;
  }
  const node = handler;
  let closing: Promise<void> | null = null;
  const close = () =>
    closing ??= (async () => {
      node.close();
      await server.close(); // live streams end first: shutdown waits for every response
    })();
  messenger._onClose(close);
  return {
    url: server.url,
    addr: node.addr,
    close,
    [Symbol.asyncDispose]: close,
  };
}
