import assert from "node:assert/strict";
import { Messenger, WebSocketTransport } from "../mod.ts";
import { createAdminApp, serveAdmin } from "../admin.ts";
import { readSse } from "../src/cli/admin_client.ts";
import { captureLogger, deadline, pair, take, waitEvent } from "./_helpers.ts";

Deno.test("GET /health (app.request) reports name, uptime and connections by state", async () => {
  await using p = await pair("tcp://127.0.0.1:0");
  const res = await createAdminApp(p.server).request("/health");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /application\/json/);
  const body = await res.json();
  assert.equal(body.name, "server");
  assert.equal(body.status, "running");
  assert.equal(typeof body.uptimeMs, "number");
  assert.equal(body.connections.open, 1);
  assert.deepEqual(Object.keys(body.connections).sort(), [
    "closed",
    "closing",
    "connecting",
    "handshaking",
    "open",
    "reconnecting",
    "standby",
  ]);
  assert.deepEqual(body.listening, [p.addr]);
  assert.equal(body.nonce, undefined, "instance nonces stay off the admin JSON");
  const peers = await (await createAdminApp(p.server).request("/peers")).json();
  assert.equal(peers[0].name, "client");
  assert.equal(peers[0].nonce, undefined);
});

Deno.test("admin endpoint over a real socket: health, 404, bearer token, stops with messenger", async () => {
  const m = new Messenger({ name: "node-a", logger: captureLogger().log });
  const admin = await serveAdmin(m, { port: 0, token: "s3cret" });
  assert.match(admin.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const denied = await fetch(`${admin.url}/health`);
  assert.equal(denied.status, 401);
  assert.deepEqual(await denied.json(), { error: "unauthorized" });
  const wrong = await fetch(`${admin.url}/health`, { headers: { authorization: "Bearer s3creT" } });
  assert.equal(wrong.status, 401);
  await wrong.body?.cancel();
  const auth = { headers: { authorization: "Bearer s3cret" } };
  const ok = await fetch(`${admin.url}/health`, auth);
  assert.equal(ok.status, 200);
  assert.equal((await ok.json()).name, "node-a");
  const missing = await fetch(`${admin.url}/nope`, auth);
  assert.equal(missing.status, 404);
  await missing.body?.cancel();
  await m.close();
  await assert.rejects(fetch(`${admin.url}/health`, auth));
});

Deno.test("GET /health turns 503 once the messenger is closing", async () => {
  const m = new Messenger({ name: "node-b", logger: captureLogger().log });
  const app = createAdminApp(m);
  await m.close();
  const res = await app.request("/health");
  assert.equal(res.status, 503);
  assert.equal((await res.json()).status, "closed");
});

async function promtool(): Promise<string | null> {
  try {
    const out = await new Deno.Command("promtool", { args: ["--version"], stdout: "null" })
      .output();
    return out.success ? "promtool" : null;
  } catch {
    return null;
  }
}

const havePromtool = (await promtool()) !== null;
const requirePromtool = Deno.env.get("HEARTLINE_REQUIRE_PROMTOOL") === "1";

Deno.test({
  name: "GET /metrics is valid Prometheus text (promtool check metrics) and counts what flowed",
  ignore: !havePromtool && !requirePromtool,
  fn: async () => {
    await using p = await pair("tcp://127.0.0.1:0", { heartbeat: { intervalMs: 50 } });
    p.conn.registerOob('Linger"Ping', () => new Uint8Array(4), { intervalMs: 50 });
    for (let i = 0; i < 10; i++) await p.conn.send(1, new Uint8Array(8), { priority: "high" });
    await take(p.server, 10);
    // Wait for a few heartbeats to cross (parts are counted on arrival).
    for (let i = 0; i < 200 && (p.server.oobStats.partsReceived.get('Linger"Ping') ?? 0) < 3; i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    const admin = await serveAdmin(p.server, { port: 0 });
    const res = await fetch(`${admin.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const check = await new Deno.Command("promtool", {
      args: ["check", "metrics"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = check.stdin.getWriter();
    await writer.write(new TextEncoder().encode(text));
    await writer.close();
    const result = await check.output();
    const said = new TextDecoder().decode(result.stdout) + new TextDecoder().decode(result.stderr);
    assert.ok(result.success, said);
    assert.match(text, /^heartline_messages_received_total\{priority="high"\} 10$/m);
    // The ten messages came in Message or Messages frames (one per write at most).
    const frames = (tag: string) =>
      Number(
        text.match(new RegExp(`^heartline_frames_received_total\\{tag="${tag}"\\} (\\d+)$`, "m"))
          ?.[1],
      );
    const dataFrames = frames("message") + frames("messages");
    assert.ok(dataFrames >= 1 && dataFrames <= 10, `${dataFrames} data frames`);
    assert.match(text, /^heartline_oob_parts_received_total\{op="Linger\\"Ping"\} [1-9]/m);
    assert.match(text, /^heartline_connections\{state="open",transport="tcp"\} 1$/m);
    assert.match(text, /^heartline_peer_up\{peer="client"\} 1$/m);
    await admin.close();
  },
});

Deno.test("GET /peers and /connections describe peers and sessions as JSON", async () => {
  await using p = await pair("tcp://127.0.0.1:0");
  const app = createAdminApp(p.server);
  const peers = await (await app.request("/peers")).json();
  assert.equal(peers.length, 1);
  assert.equal(peers[0].name, "client");
  assert.equal(peers[0].state, "up");
  assert.equal(peers[0].mode, "global");
  const conns = await (await app.request("/connections")).json();
  assert.equal(conns.length, 1);
  assert.equal(conns[0].peer, "client");
  assert.equal(conns[0].side, "server");
  assert.equal(conns[0].policy, "statelessServer");
  assert.equal(conns[0].state, "open");
  assert.equal(conns[0].transport, "tcp");
  assert.equal(typeof conns[0].bytesReceived, "number");
});

Deno.test("GET /health turns 503 when the configured number of peers is down", async () => {
  const p = await pair("tcp://127.0.0.1:0");
  const app = createAdminApp(p.server, { unhealthyPeersDown: 1 });
  assert.equal((await app.request("/health")).status, 200);
  const closed = waitEvent(p.server, "close");
  await p.conn.close();
  await closed;
  const res = await app.request("/health");
  assert.equal(res.status, 503);
  assert.equal((await res.json()).peersDown, 1);
  await p.client.close();
  await p.server.close();
});

Deno.test("one port for both: the WebSocket endpoint mounted beside the admin routes", async () => {
  const ws = new WebSocketTransport();
  const server = new Messenger({ name: "edge", transports: [ws], logger: captureLogger().log });
  const client = new Messenger({ name: "far", transports: [ws], logger: captureLogger().log });
  const admin = createAdminApp(server);
  // The endpoint's address needs the port, which exists once the server is up.
  const mounted: { ws?: ReturnType<WebSocketTransport["attach"]> } = {};
  const http = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (req, info) => mounted.ws?.handle(req, info) ?? admin.fetch(req),
  );
  const base = `127.0.0.1:${http.addr.port}`;
  mounted.ws = ws.attach(`ws://${base}/heartline`);
  server.listenOn(mounted.ws.listener);
  const conn = await client.connect(`ws://${base}/heartline`);
  await conn.send(3, new Uint8Array([3]));
  const [m] = await take(server, 1);
  assert.equal(m.type, 3);
  const health = await (await fetch(`http://${base}/health`)).json();
  assert.equal(health.name, "edge");
  assert.equal(health.connections.open, 1);
  const plain = await fetch(`http://${base}/heartline`);
  assert.equal(plain.status, 426, "the endpoint asks for an upgrade");
  await plain.body?.cancel();
  await client.close();
  await server.close();
  await http.shutdown();
});

/** Server-sent events of `res` (read by the CLI's reader), one at a time, each as [event, data]. */
function sseReader(res: Response) {
  const stop = new AbortController();
  const events = readSse(res.body!, stop.signal)[Symbol.asyncIterator]();
  return {
    // deno-lint-ignore no-explicit-any
    async next(): Promise<[string, any]> {
      const r = await deadline(events.next(), "a server-sent event");
      if (r.done) throw new Error("Event stream ended");
      return [r.value.event, JSON.parse(r.value.data)];
    },
    cancel: () => stop.abort(),
  };
}

Deno.test("GET /events streams history, samples and node events; the page loads without the token", async () => {
  await using p = await pair("tcp://127.0.0.1:0", { heartbeat: { intervalMs: 50 } });
  p.conn.registerOob("WatchPing", () => new Uint8Array(2), { intervalMs: 50 });
  p.server.onOob("WatchPing", () => {});
  const app = createAdminApp(p.server, { token: "t", live: { sampleMs: 50 } });
  assert.equal((await app.request("/events")).status, 401, "the feed needs the token");
  // The page and its scripts hold no data: no token needed.
  for (const path of ["/", "/ui/page.js", "/ui/page.css", "/ui/uplot.js", "/ui/uplot.css"]) {
    const res = await app.request(path);
    assert.equal(res.status, 200, path);
    assert.ok((await res.text()).length > 100, path);
  }
  assert.match((await app.request("/")).headers.get("content-security-policy") ?? "", /'self'/);
  assert.equal((await app.request("/ui/../health")).status, 401);
  assert.equal((await app.request("/ui/secret.ts")).status, 404);

  const res = await app.request("/events", { headers: { authorization: "Bearer t" } });
  assert.match(res.headers.get("content-type") ?? "", /text\/event-stream/);
  const events = sseReader(res);
  const [name, hello] = await events.next();
  assert.equal(name, "hello");
  assert.equal(hello.node.name, "server");
  assert.equal(hello.node.heartbeat.intervalMs, 50);
  assert.ok(hello.samples.length >= 1, "the first sample is history at once");
  assert.ok(Array.isArray(hello.events));
  // Samples come every 50 ms; wait until one has seen WatchPing parts arrive (bounded).
  let last;
  for (let i = 0; i < 100; i++) {
    const [kind, data] = await events.next();
    if (kind === "sample" && data.heartbeat.partsReceived > 0) {
      last = data;
      break;
    }
  }
  events.cancel();
  assert.ok(last, "a sample counted WatchPing parts");
  assert.equal(last.peers[0].name, "client");
  assert.equal(last.peers[0].state, "up");
  assert.equal(last.peers[0].restarts, 0);
  assert.equal(last.connections.byState.open, 1);
  assert.equal(last.connections.byTransport.tcp, 1);
  assert.ok(last.heartbeat.framesReceived > 0);
});

Deno.test("GET /events sends a node event when a peer goes down", async () => {
  await using p = await pair("tcp://127.0.0.1:0");
  const app = createAdminApp(p.server, { live: { sampleMs: 10_000 } });
  const events = sseReader(await app.request("/events"));
  assert.equal((await events.next())[0], "hello"); // subscribed: the history came
  await p.client.close();
  const [name, event] = await events.next();
  events.cancel();
  assert.equal(name, "node");
  assert.deepEqual(
    { peer: event.peer, state: event.state },
    { peer: "client", state: "down" },
  );
});

Deno.test("messenger.nodeEvents() follows local watchers without adding one", async () => {
  const heartbeat = { mode: "local" as const, intervalMs: 50 };
  await using p = await pair("tcp://127.0.0.1:0", { heartbeat });
  const watched = p.server.watch("leases");
  const it = watched[Symbol.asyncIterator]();
  const tap = p.server.nodeEvents()[Symbol.asyncIterator]();
  const first = await deadline(tap.next(), "the current snapshot");
  assert.equal(first.value.reason, "current");
  assert.equal(p.server.oobStats.registrations >= 1, true);
  const before = p.server.oobStats.registrations;
  await p.client.close();
  const down = await deadline(tap.next(), "a down event on the tap");
  assert.equal(down.value.state, "down");
  assert.ok(["global", "leases"].includes(down.value.watcher));
  assert.equal(p.server.oobStats.registrations <= before, true, "the tap registered nothing");
  await it.return?.();
  await tap.return?.();
});

Deno.test("messenger.every() runs on the central wheel and stops with the messenger", async () => {
  const m = new Messenger({ name: "a", logger: () => {} });
  let fired = 0;
  const { promise, resolve } = Promise.withResolvers<void>();
  m.every(10, () => ++fired === 3 && resolve());
  await deadline(promise, "three fires");
  assert.ok(m.timers.size >= 1);
  await m.close();
  assert.throws(() => m.every(10, () => {}), /closed|closing|running/i);
});

Deno.test("admin.close() ends open live streams instead of waiting for the pages to leave", async () => {
  await using m = new Messenger({ name: "a", logger: () => {} });
  const admin = await serveAdmin(m, { live: { sampleMs: 50 } });
  const res = await fetch(`${admin.url}/events`);
  const events = sseReader(res);
  assert.equal((await events.next())[0], "hello");
  await deadline(admin.close(), "admin.close() with a live stream open", 5_000);
  events.cancel();
});

Deno.test("the page's file route answers 404 for names that are not its files", async () => {
  await using m = new Messenger({ name: "a", logger: () => {} });
  const app = createAdminApp(m);
  for (const name of ["constructor", "__proto__", "toString", "page.ts"]) {
    assert.equal((await app.request(`/ui/${name}`)).status, 404, name);
  }
  await m.close();
  assert.throws(() => m.nodeEvents(), /clos/i);
});
