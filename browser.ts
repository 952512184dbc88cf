/**
 * heartline for a web page: the messenger, its connections, policies, errors, out-of-band
 * producers and node events, with the WebSocket transport, and nothing that needs Deno (no TCP,
 * TLS or QUIC transport, no admin endpoint, no test helpers). `deno task bundle` builds it into
 * one ES module, `dist/heartline.browser.js`, that a page loads with
 * `<script type="module">`. A page dials a node's WebSocket endpoint (`serveNode()` in
 * `./admin.ts`, whose transport must list the page's origin in `allowedOrigins`) as a client;
 * it cannot listen. See docs/browser.md.
 *
 * @example
 * ```ts ignore
 * import { Messenger, WebSocketTransport } from "./dist/heartline.browser.js";
 * const messenger = new Messenger({ name: "page-1", transports: [new WebSocketTransport()] });
 * const conn = await messenger.connect("ws://127.0.0.1:8000/heartline", {
 *   policy: "lossyClient",
 * });
 * await conn.send(1, new TextEncoder().encode("hello"));
 * conn.registerOob("WatchPing", () => new Uint8Array([1]), { intervalMs: 1000 });
 * for await (const ev of messenger.watch()) console.log(ev.peer, ev.state);
 * ```
 *
 * @module
 */

export * from "./src/api.ts";
