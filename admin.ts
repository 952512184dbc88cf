/**
 * The admin endpoint of a messenger, built with hono: `/health`, Prometheus `/metrics`,
 * `/peers` and `/connections` as JSON; for edge nodes, `serveNode` and `createNodeHandler` put
 * the admin routes and heartline's WebSocket endpoint on one port. A separate entry point, so
 * that importing `mod.ts` does not pull hono into every user's module graph.
 *
 * @example
 * ```ts
 * import { Messenger } from "./mod.ts";
 * import { createAdminApp } from "./admin.ts";
 * await using m = new Messenger({ name: "a" });
 * const res = await createAdminApp(m).request("/health");
 * if (res.status !== 200) throw new Error("unhealthy");
 * ```
 *
 * @module
 */

export {
  type AdminAppOptions,
  type AdminServer,
  createAdminApp,
  serveAdmin,
  type ServeAdminOptions,
} from "./src/admin/app.ts";
export {
  createNodeHandler,
  type NodeHandler,
  type NodeHandlerOptions,
  type NodeServer,
  serveNode,
  type ServeNodeOptions,
} from "./src/admin/edge.ts";
export { renderMetrics } from "./src/admin/metrics.ts";
