/**
 * The admin endpoint: a small hono app over a messenger, served with `Deno.serve`.
 *
 * Routes: `GET /` (the live cluster page, with its scripts under `/ui/`), `GET /health` (JSON:
 * node name, status, uptime, connections by state, peers down; 503 while the messenger is
 * stopping or when too many peers are down), `GET /metrics` (Prometheus text), `GET /peers`
 * and `GET /connections` (JSON), `GET /events` (server-sent events: a `hello` with the history,
 * then a `sample` a second and every `node` event). With a token, every route but the page's
 * static files needs it; the page asks for it and sends it as a bearer token.
 *
 * @module
 */

import { Hono } from "npm:hono@4";
import { bearerAuth } from "npm:hono@4/bearer-auth";
import { streamSSE } from "npm:hono@4/streaming";
import type { Messenger } from "../messenger.ts";
import { renderMetrics } from "./metrics.ts";
import { LiveFeed, type LiveFeedOptions } from "./live.ts";
import { pageAsset } from "./page.ts";
import { serveHttp } from "./_serve.ts";

/** Options of {@linkcode createAdminApp}. */
export interface AdminAppOptions {
  /** When set, every request needs `Authorization: Bearer <token>`. */
  token?: string;
  /** `GET /health` answers 503 when at least this many peers are down. Default: never. */
  unhealthyPeersDown?: number;
  /** History and sampling of the live feed (`/events` and the page). */
  live?: LiveFeedOptions;
  /**
   * Ends every open `/events` stream when it aborts, so that the server serving the app can
   * shut down while live pages are open (`serveAdmin` and `serveNode` do this on `close()`).
   */
  signal?: AbortSignal;
}

/**
 * Builds the admin app for a messenger; test it without a socket with `app.request()`.
 *
 * @example
 * ```ts
 * import { Messenger } from "../messenger.ts";
 * import { createAdminApp } from "./app.ts";
 * const messenger = new Messenger({ name: "a" });
 * const res = await createAdminApp(messenger).request("/health");
 * const body = await res.json();
 * if (body.name !== "a") throw new Error("wrong node");
 * await messenger.close();
 * ```
 */
export function createAdminApp(messenger: Messenger, options: AdminAppOptions = {}): Hono {
  const app = new Hono();
  // The page and its scripts hold no data: they load without the token, then ask for it.
  app.get("/", (c) => pageAsset(c, "index.html"));
  app.get("/ui/:file", (c) => pageAsset(c, c.req.param("file")));
  if (options.token !== undefined) {
    // hono's own middleware: the token is compared in constant time.
    const unauthorized = { error: "unauthorized" };
    app.use(
      "*",
      bearerAuth({
        token: options.token,
        noAuthenticationHeader: { message: unauthorized },
        invalidAuthenticationHeader: { message: unauthorized },
        invalidToken: { message: unauthorized },
      }),
    );
  }
  app.get("/health", (c) => {
    const health = messenger.health();
    const peersDown = messenger.status === "closed"
      ? 0
      : messenger.peers().filter((p) => p.state === "down").length;
    const limit = options.unhealthyPeersDown ?? Infinity;
    const ok = health.status === "running" && peersDown < limit;
    // Instance nonces stay off the wire: they identify sessions (docs/security.md).
    const { nonce: _nonce, ...shown } = health;
    return c.json({ ...shown, peersDown }, ok ? 200 : 503);
  });
  app.get("/metrics", (c) => {
    c.header("content-type", "text/plain; version=0.0.4; charset=utf-8");
    return c.body(renderMetrics(messenger));
  });
  app.get("/peers", (c) => c.json(messenger.peers().map(({ nonce: _nonce, ...peer }) => peer)));
  app.get("/connections", (c) =>
    c.json(
      messenger.connections().map((conn) => ({
        id: conn.id,
        peer: conn.peerName ?? null,
        side: conn.side,
        policy: conn.policy.name,
        state: conn.state,
        transport: conn.remoteAddr.split(":")[0],
        remoteAddr: conn.remoteAddr,
        queuedMessages: conn.queuedMessages,
        queuedBytes: conn.queuedBytes,
        unackedMessages: conn.unackedMessages,
        rttMs: conn.rttMs,
        ...conn.stats,
      })),
    ));
  const feed = new LiveFeed(messenger, options.live);
  app.get("/events", (c) =>
    streamSSE(c, async (stream) => {
      const done = new AbortController();
      stream.onAbort(() => done.abort());
      const signal = options.signal ? AbortSignal.any([done.signal, options.signal]) : done.signal;
      const { samples, events } = feed.history();
      const node = { name: messenger.name, heartbeat: messenger.heartbeat };
      await stream.writeSSE({ event: "hello", data: JSON.stringify({ node, samples, events }) });
      if (signal.aborted) return;
      for await (const item of feed.subscribe(signal)) {
        const data = JSON.stringify(item.kind === "sample" ? item.sample : item.event);
        await stream.writeSSE({ event: item.kind, data });
      }
    }));
  app.notFound((c) => c.json({ error: "not found", path: c.req.path }, 404));
  return app;
}

/** Options of {@linkcode serveAdmin}. */
export interface ServeAdminOptions extends AdminAppOptions {
  /** Interface to bind. Default `127.0.0.1`: the admin endpoint is not public by default. */
  hostname?: string;
  /** Port; 0 picks a free one. Default 0. */
  port?: number;
}

/** A running admin server. */
export interface AdminServer {
  /** Base URL, e.g. `http://127.0.0.1:9100`. */
  readonly url: string;
  /** Stops the server. */
  close(): Promise<void>;
  /** Stops the server (for `await using`). */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Serves the admin app over HTTP; it stops when the messenger closes (or on `close()`).
 *
 * @example
 * ```ts
 * import { Messenger } from "../messenger.ts";
 * import { serveAdmin } from "./app.ts";
 * const messenger = new Messenger({ name: "a" });
 * const admin = await serveAdmin(messenger, { port: 0 });
 * const res = await fetch(`${admin.url}/health`);
 * if (res.status !== 200) throw new Error("unhealthy");
 * await res.body?.cancel();
 * await messenger.close();
 * ```
 */
export function serveAdmin(
  messenger: Messenger,
  options: ServeAdminOptions = {},
): Promise<AdminServer> {
  // The app needs the server's signal; requests reach it only once both exist.
  const server = serveHttp(options, (req, info) => app.fetch(req, info));
  const app = createAdminApp(messenger, { ...options, signal: server.signal });
  const admin: AdminServer = {
    url: server.url,
    close: server.close,
    [Symbol.asyncDispose]: server.close,
  };
  messenger._onClose(() => admin.close());
  return Promise.resolve(admin);
}
