// heartline inside a real browser (headless chromium via playwright-core): the bundle that
// `deno task bundle` builds, loaded by examples/browser/, joins a Deno node over WebSocket as
// a lossy client. Messages flow both ways, the page's out-of-band producer reaches the node's
// handler, and the page's failure detector sees the node up, then down when the node drops it.

import assert from "node:assert/strict";
import { deadline, runDeno } from "../_helpers.ts";
import { launchBrowser, NO_BROWSER, SCREENSHOT_DIR } from "./_browser.ts";
import { type Connection, type Message, Messenger, WebSocketTransport } from "../../mod.ts";
import { serveNode } from "../../admin.ts";
import { demoFiles, REPLY, serveDemo, TEXT } from "../../examples/browser/serve.ts";

const BUNDLE = new URL("../../dist/heartline.browser.js", import.meta.url);
/** `Deno.` references the bundle may hold: TCP and listening, which a page never reaches. */
const DENO_OFF_PAGE = new Set([
  "Deno.connect", // TcpTransport.connect (the messenger's default transport; a page passes its own)
  "Deno.listen", // TcpTransport.listen
  "Deno.errors.BadResource", // the TCP listener's accept loop
  "Deno.errors.Interrupted",
  "Deno.serve", // WebSocketTransport.listen
  "Deno.upgradeWebSocket", // WebSocketTransport.attach's handler
  "Deno?.unrefTimer", // systemClock, guarded
]);

let built: Promise<void> | null = null;
/** Builds dist/ once per run with the task users run, bounded. */
function buildBundle(): Promise<void> {
  return built ??= (async () => {
    const out = await runDeno(["task", "bundle"], 120_000);
    assert.equal(out.code, 0, `deno task bundle failed:\n${out.stderr}`);
  })();
}

/** The first value of `iterable` that matches `pred`, within the test's bound. */
async function first<T>(iterable: AsyncIterable<T>, pred: (v: T) => boolean, what: string) {
  const iter = iterable[Symbol.asyncIterator]();
  const find = async () => {
    for (;;) {
      const { value, done } = await iter.next();
      if (done) throw new Error(`Ended before ${what}`);
      if (pred(value)) return value;
    }
  };
  try {
    return await deadline(find(), what);
  } finally {
    void iter.return?.();
  }
}

Deno.test({
  name: "the browser bundle is one ES module without hono, playwright or node: imports",
  ignore: NO_BROWSER,
  fn: async () => {
    await buildBundle();
    const code = await Deno.readTextFile(BUNDLE);
    assert.doesNotMatch(code, /\bimport\s*["'{*]|\bfrom\s*["']|require\(/, "nothing imported");
    assert.doesNotMatch(code, /hono|playwright/);
    // The only "node:" names are lookups a runtime may answer, never imports: the CRC-32
    // module asking for node:zlib, and TCP over node:net sockets (an option off the page).
    assert.deepEqual(
      [...new Set(code.match(/node:[a-z_]+/g) ?? [])].sort(),
      ["node:net", "node:zlib"],
      "no other node: module",
    );
    assert.match(code, /getBuiltinModule\?\.\("node:zlib"\)/);
    assert.match(code, /getBuiltinModule\?\.\("node:net"\)/);
    const refs = new Set(code.match(/Deno[?]?\.[A-Za-z.]*[A-Za-z]/g) ?? []);
    for (const ref of refs) assert.ok(DENO_OFF_PAGE.has(ref), `unexpected ${ref} in the bundle`);
    assert.match(code, /sourceMappingURL=heartline\.browser\.js\.map/);
  },
});

Deno.test({
  name: "a page joins a node as a lossy client: messages both ways, OOB parts, node up and down",
  ignore: NO_BROWSER,
  fn: async () => {
    await buildBundle();
    // The page comes from one origin, the node serves another port that lets that origin in.
    const pages = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen: () => {} },
      (req) => demoFiles(req) ?? new Response("not found", { status: 404 }),
    );
    const origin = `http://127.0.0.1:${pages.addr.port}`;
    const transport = new WebSocketTransport({ allowedOrigins: [origin] });
    const node = new Messenger({ name: "node", transports: [transport], logger: () => {} });
    const server = await serveNode(node, { port: 0, transport });
    const encoder = new TextEncoder();
    const pageName = "page-1";

    const accepted = first(
      node.events(),
      (e) => e.kind === "accept" && e.connection.peerName === pageName,
      "the node to accept the page",
    );
    const { promise: pinged, resolve: gotPing } = Promise.withResolvers<Uint8Array>();
    node.onOob("WatchPing", (part) => {
      if (part.connection.peerName === pageName) gotPing(part.data.slice());
    });
    const received = first(
      node.messages(),
      (m: Message) => m.connection.peerName === pageName,
      "the page's message",
    );
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      const query = `node=${encodeURIComponent(server.addr)}&name=${pageName}`;
      await page.goto(`${origin}/demo/?${query}`, { timeout: 30_000 });

      // The page's messenger connects; the node accepts it as the lossy client's server.
      const accept = await accepted;
      assert.equal(accept.kind, "accept");
      const conn: Connection = accept.connection;
      assert.equal(conn.policy.name, "statelessServer", "the server side of a lossy client");
      await page.waitForSelector(`#status[data-state="open"]`, { timeout: 30_000 });
      assert.equal(await page.textContent("#policy"), "lossyClient");
      assert.equal(await page.textContent("#peer"), "node");

      // The page's watch() sees the node up.
      await page.waitForSelector(`#events li[data-peer="node"][data-state="up"]`, {
        timeout: 30_000,
      });

      // A message from the page arrives with its bytes; the node's reply shows on the page.
      const text = "hello from chromium";
      await page.fill("#text", text);
      await page.click("#send");
      const message = await received;
      assert.equal(message.type, TEXT);
      assert.deepEqual(message.payload, encoder.encode(text));
      await conn.send(REPLY, encoder.encode(`echo: ${text}`));
      const reply = await page.waitForSelector(`#messages li[data-type="${REPLY}"]`, {
        timeout: 30_000,
      });
      assert.equal(await reply.textContent(), `node: echo: ${text}`);
      // The page accepts CRC-32 and checks it from tables (a browser has no node:zlib).
      assert.ok(node.counters.crc32Frames >= 1, "the reply went with CRC-32");
      await page.waitForSelector(`#sent li:has-text("${text}")`, { timeout: 30_000 });

      // The page's OOB producer's parts ride the heartbeat frames to the node's handler.
      const part = await deadline(pinged, "a WatchPing part from the page");
      assert.match(new TextDecoder().decode(part), new RegExp(`^${pageName} \\d+$`));
      assert.ok(Number(await page.textContent("#pings")) >= 1);

      // The page's own heartbeats come back echoed: its timer wheel runs in the browser.
      await page.waitForSelector(`#rtt:has-text(" ms")`, { timeout: 30_000 });

      await Deno.mkdir(SCREENSHOT_DIR, { recursive: true });
      const file = `${SCREENSHOT_DIR}/browser-client.png`;
      await page.screenshot({ path: file, fullPage: true });
      assert.ok((await Deno.stat(file)).size > 10_000, "a screenshot was saved");

      // The node drops the page: the page's detector reports the node down, the session ends.
      conn.abort();
      await page.waitForSelector(`#events li[data-peer="node"][data-state="down"]`, {
        timeout: 30_000,
      });
      await page.waitForSelector(`#status[data-state="closed"]`, { timeout: 30_000 });
      assert.ok(await page.isVisible("#reconnect"), "a lossy client offers to connect again");
      assert.equal(await page.locator(`#log li[data-level="error"]`).count(), 0);
      assert.deepEqual(errors, [], "no script error on the page");
    } finally {
      await browser.close();
      await node.close();
      await server.close();
      await pages.shutdown();
    }
  },
});

Deno.test({
  name: "the browser demo serves the page and the bundle and echoes what the page sends",
  ignore: NO_BROWSER,
  fn: async () => {
    await buildBundle();
    const demo = await serveDemo({ port: 0 });
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      // No `node` parameter: the page dials its own origin's /heartline.
      await page.goto(`${demo.pageUrl}?name=demo-page`, { timeout: 30_000 });
      await page.waitForSelector(`#status[data-state="open"]`, { timeout: 30_000 });
      await page.click("#send");
      const reply = await page.waitForSelector(`#messages li[data-type="${REPLY}"]`, {
        timeout: 30_000,
      });
      assert.equal(await reply.textContent(), "demo-node: echo: hello from the page");
      // The node lists the page as a peer (the live cluster page reads the same).
      const peers = demo.messenger.peers().map((p) => p.name);
      assert.deepEqual(peers, ["demo-page"]);
      assert.deepEqual(errors, [], "no script error on the page");
    } finally {
      await browser.close();
      await demo.close();
    }
  },
});
