/**
 * The admin endpoint: a small hono app over a messenger, served with `Deno.serve`.
 *
 * Routes: `GET /health` (JSON: node name, status, uptime, connections by state).
 *
 * @module
 */

import { Hono } from "npm:hono@4";
import type { Messenger } from "../messenger.ts";
import { ADMIN_HOSTNAME } from "../defaults.ts";

/** Options of {@linkcode createAdminApp}. */
export interface AdminAppOptions {
  /** When set, every request needs `Authorization: Bearer <token>`. */
  token?: string;
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
  if (options.token !== undefined) {
    const expected = `Bearer ${options.token}`;
    app.use("*", async (c, next) => {
      if (c.req.header("authorization") !== expected) {
        return c.json({ error: "unauthorized" }, 401);
      }
      await next();
    });
  }
  app.get("/health", (c) => {
    const health = messenger.health();
    return c.json(health, health.status === "running" ? 200 : 503);
  });
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
  const app = createAdminApp(messenger, options);
  const hostname = options.hostname ?? ADMIN_HOSTNAME;
  const server = Deno.serve(
    { hostname, port: options.port ?? 0, onListen: () => {} },
    app.fetch,
  );
  const addr = server.addr;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  let closing: Promise<void> | null = null;
  const admin: AdminServer = {
    url: `http://${host}:${addr.port}`,
    close: () => closing ??= server.shutdown(),
  };
  messenger._extend({ onClose: () => admin.close() });
  return Promise.resolve(admin);
}
