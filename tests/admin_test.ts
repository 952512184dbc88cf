import assert from "node:assert/strict";
import { createAdminApp, Messenger, serveAdmin } from "../mod.ts";
import { captureLogger, pair } from "./_helpers.ts";

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
});

Deno.test("admin endpoint over a real socket: health, 404, bearer token, stops with messenger", async () => {
  const m = new Messenger({ name: "node-a", logger: captureLogger().log });
  const admin = await serveAdmin(m, { port: 0, token: "s3cret" });
  assert.match(admin.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const denied = await fetch(`${admin.url}/health`);
  assert.equal(denied.status, 401);
  await denied.body?.cancel();
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
