// Trust (the trust issue, first steps): what a peer merely claims never decides where our own
// connect() goes. Real TCP.

import "./_guard.ts";
import assert from "node:assert/strict";
import {
  type Connection,
  HandshakeRefusedError,
  Messenger,
  type MessengerOptions,
  UnexpectedPeerError,
  WebSocketTransport,
} from "../mod.ts";
import { checkListen, resolveKeys } from "../src/options.ts";
import { BANNER, encodeFrame, FrameDecoder, Tag } from "../src/protocol/frame.ts";
import { sessionOf } from "../src/connection.ts";
import { encodeJson, type Hello } from "../src/protocol/handshake.ts";
import { captureLogger, deadline, rawHello, take, waitEvent } from "./_helpers.ts";

const quiet = () => ({ logger: captureLogger().log });

Deno.test("connect(addr, { expectName }) rejects a peer of another name and closes that dial", async () => {
  const mallory = new Messenger({ name: "mallory", ...quiet() });
  const addr = await mallory.listen("tcp://127.0.0.1:0");
  const alpha = new Messenger({ name: "alpha", ...quiet() });
  await assert.rejects(alpha.connect(addr, { expectName: "bravo" }), (e) => {
    assert.ok(e instanceof UnexpectedPeerError);
    assert.equal(e.expected, "bravo");
    assert.equal(e.actual, "mallory");
    return true;
  });
  assert.deepEqual(alpha.connections().filter((c) => c.state !== "closed"), []);
  // The right name still connects.
  const conn = await alpha.connect(addr, { expectName: "mallory" });
  assert.equal(conn.peerName, "mallory");
  await alpha.close();
  await mallory.close();
});

Deno.test("a Hello's claim to listen at bravo's address does not make connect(bravo) reach the claimant", async () => {
  const alpha = new Messenger({ name: "alpha", ...quiet() });
  const alphaAddr = await alpha.listen("tcp://127.0.0.1:0");
  const bravo = new Messenger({ name: "bravo", ...quiet() });
  const bravoAddr = await bravo.listen("tcp://127.0.0.1:0");
  // Mallory dials alpha as a lossless peer and claims bravo's address as its own.
  const accepted = waitEvent(alpha, "accept");
  const raw = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(alphaAddr).port) });
  const hello = rawHello({
    name: "mallory",
    policy: "losslessPeer",
    inSeq: 0,
    listening: [bravoAddr],
  });
  await raw.write(new Uint8Array([...BANNER, ...encodeFrame(Tag.Hello, encodeJson(hello))]));
  await accepted;
  const conn = await deadline(
    alpha.connect(bravoAddr, { policy: "losslessPeer" }),
    "the dial to bravo",
  );
  assert.equal(conn.peerName, "bravo", "our connect() reached bravo, not the claimant");
  raw.close();
  await alpha.close();
  await bravo.close();
});

/** Sends a raw WebSocket upgrade request; returns the HTTP status code of the answer. */
async function upgradeStatus(addr: string, origin?: string): Promise<number> {
  const url = new URL(addr.replace(/^ws/, "http"));
  const conn = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
  const lines = [
    `GET ${url.pathname} HTTP/1.1`,
    `Host: ${url.host}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
    ...(origin ? [`Origin: ${origin}`] : []),
  ];
  await conn.write(new TextEncoder().encode(lines.join("\r\n") + "\r\n\r\n"));
  const buf = new Uint8Array(256);
  const n = await deadline(conn.read(buf), "the upgrade's answer");
  conn.close();
  return Number(new TextDecoder().decode(buf.subarray(0, n ?? 0)).split(" ")[1]);
}

Deno.test("WebSocket upgrades from a browser origin are refused unless allowed", async () => {
  const ws = new WebSocketTransport({ allowedOrigins: ["https://ops.example"] });
  const m = new Messenger({ name: "edge", transports: [ws], ...quiet() });
  const addr = await m.listen("ws://127.0.0.1:0/heartline");
  assert.equal(await upgradeStatus(addr, "http://evil.example"), 403);
  assert.equal(await upgradeStatus(addr, "https://ops.example"), 101);
  assert.equal(await upgradeStatus(addr), 101, "peers that send no Origin are not affected");
  await m.close();
});

Deno.test("auth: nodes prove their names with keys; a wrong, missing or borrowed key is refused", async () => {
  const keyring = { alpha: "k-alpha", bravo: "k-bravo", mallory: "k-mallory" };
  const bravo = new Messenger({ name: "bravo", auth: { keyring }, ...quiet() });
  const addr = await bravo.listen("tcp://127.0.0.1:0");
  // Per-node keys: alpha proves alpha.
  const alpha = new Messenger({ name: "alpha", auth: { keyring }, ...quiet() });
  assert.equal((await alpha.connect(addr)).peerName, "bravo");
  // Mallory holds only its own key and claims alpha's name: it cannot prove it.
  const forged = new Messenger({
    name: "alpha",
    auth: { keyring: { alpha: "k-mallory", bravo: "k-bravo" } },
    ...quiet(),
  });
  await assert.rejects(
    forged.connect(addr),
    (e) => e instanceof HandshakeRefusedError && e.field === "auth",
  );
  // No key at all, against a node that authenticates: refused, and the reverse too.
  // Without a key, nothing else is compared first: other settings are not disclosed either.
  const nosy = new Messenger({ name: "nosy", heartbeat: { intervalMs: 777 }, ...quiet() });
  await assert.rejects(
    nosy.connect(addr),
    (e) => e instanceof HandshakeRefusedError && e.field === "auth",
  );
  await nosy.close();
  const keyless = new Messenger({ name: "keyless", ...quiet() });
  await assert.rejects(
    keyless.connect(addr),
    (e) => e instanceof HandshakeRefusedError && e.field === "auth",
  );
  const open = new Messenger({ name: "open", ...quiet() });
  const openAddr = await open.listen("tcp://127.0.0.1:0");
  await assert.rejects(
    alpha.connect(openAddr),
    (e) => e instanceof HandshakeRefusedError && e.field === "auth",
  );
  // A node that answers in bravo's name with the wrong key fails alpha's check of the Welcome.
  const fakeBravo = new Messenger({
    name: "bravo",
    auth: { keyring: { ...keyring, bravo: "x" } },
    ...quiet(),
  });
  const fakeAddr = await fakeBravo.listen("tcp://127.0.0.1:0");
  await assert.rejects(
    alpha.connect(fakeAddr),
    (e) => e instanceof HandshakeRefusedError && e.field === "auth",
  );
  // One cluster-wide key works too.
  const c1 = new Messenger({ name: "c1", auth: { key: "cluster" }, ...quiet() });
  const c2 = new Messenger({ name: "c2", auth: { key: "cluster" }, ...quiet() });
  assert.equal((await c2.connect(await c1.listen("tcp://127.0.0.1:0"))).peerName, "c1");
  for (const m of [alpha, forged, keyless, open, fakeBravo, c1, c2, bravo]) await m.close();
});

/**
 * A victim `alpha` with a healthy lossless session on `server`, and an impostor on a raw
 * socket that sends a Hello in alpha's name with `claims` (it knows the name and both nonces;
 * it has no key and no resume secret). Resolves once the impostor was refused and its link
 * closed, with what it received and what the server reported meanwhile.
 */
async function impostor(
  auth: MessengerOptions["auth"],
  claims: (victim: Connection) => Partial<Hello>,
) {
  const server = new Messenger({ name: "server", auth, ...quiet() });
  const addr = await server.listen("tcp://127.0.0.1:0");
  const alpha = new Messenger({ name: "alpha", auth, ...quiet() });
  const conn = await alpha.connect(addr, { policy: "losslessClient" });
  await conn.send(1, new Uint8Array([1]));
  await take(server, 1);
  const session = server.connections().find((c) => c.peerName === "alpha")!;
  const events: string[] = [];
  (async () => {
    for await (const e of server.events()) events.push(e.kind);
  })();
  const raw = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(addr).port) });
  const frames: { tag: number; payload: Uint8Array }[] = [];
  const reading = (async () => {
    const decoder = new FrameDecoder({ maxFrameBytes: 1 << 16 });
    const buf = new Uint8Array(1 << 16);
    for (;;) {
      const n = await raw.read(buf).catch(() => null);
      if (n === null) return;
      decoder.push(buf.subarray(0, n), (tag, _f, p) => frames.push({ tag, payload: p.slice() }));
    }
  })();
  const hello = rawHello({
    name: "alpha",
    nonce: alpha.nonce,
    policy: "losslessClient",
    resumeNonce: server.nonce,
    inSeq: 0,
    challenge: "00".repeat(16),
    ...claims(conn),
  });
  const failed = waitEvent(server, "error"); // subscribed before the Hello goes
  await raw.write(new Uint8Array([...BANNER, ...encodeFrame(Tag.Hello, encodeJson(hello))]));
  const refused = await deadline(failed, "the impostor's refusal");
  await deadline(reading, "the impostor's link to close");
  raw.close();
  return { server, alpha, conn, session, events, frames, refused };
}

Deno.test("auth: a Hello in a victim's name cannot take over its lossless session", async () => {
  const keyring = { alpha: "k-alpha", server: "k-server" };
  // The attacker knows the name, the nonces and even the session id; it has no key.
  const t = await impostor({ keyring }, (victim) => ({
    session: sessionOf(victim).sequence.id!,
    proof: "ab".repeat(32),
  }));
  assert.ok(t.refused.error instanceof HandshakeRefusedError && t.refused.error.field === "auth");
  // The real session is untouched and keeps delivering.
  await t.conn.send(1, new Uint8Array([1]));
  const [m] = await take(t.server, 1);
  assert.equal(m.connection, t.session);
  assert.ok(!t.events.includes("remote-reset") && !t.events.includes("resume"), t.events.join(","));
  await t.alpha.close();
  await t.server.close();
});

Deno.test("no keys: the public nonces and even the session id do not resume a victim's session", async () => {
  const t = await impostor(undefined, (victim) => ({
    session: sessionOf(victim).sequence.id!, // worst case: the attacker learnt the session id
    resumeProof: "ab".repeat(32),
  }));
  assert.ok(t.refused.error instanceof HandshakeRefusedError && t.refused.error.field === "auth");
  assert.ok(!t.frames.some((f) => f.tag === Tag.Welcome), "the impostor got no Welcome");
  // The real session is untouched and keeps delivering, with no reset and no resume.
  await t.conn.send(2, new Uint8Array([2]));
  const [m] = await take(t.server, 1);
  assert.equal(m.connection, t.session);
  assert.equal(m.type, 2);
  assert.ok(!t.events.includes("remote-reset") && !t.events.includes("resume"), t.events.join(","));
  await t.alpha.close();
  await t.server.close();
});

Deno.test("a messenger without keys refuses to listen beyond loopback unless told insecure", async () => {
  const m = new Messenger({ name: "m", ...quiet() });
  await assert.rejects(m.listen("tcp://0.0.0.0:0"), TypeError);
  await assert.rejects(m.listen("ws://192.0.2.1:0/heartline"), TypeError);
  // The check alone (nothing binds beyond loopback in tests): keys or `insecure` let it pass.
  assert.doesNotThrow(() => checkListen("tcp://0.0.0.0:0", resolveKeys("k", { key: "x" }), false));
  assert.doesNotThrow(() => checkListen("tcp://0.0.0.0:0", null, true));
  for (const ok of ["tcp://127.0.0.1:0", "tcp://[::1]:0", "ws://localhost:0/x", "mem://a"]) {
    assert.doesNotThrow(() => checkListen(ok, null, false), ok);
  }
  await m.close();
});

Deno.test("a race refusal naming another node does not make connect() return that node's session", async () => {
  const alpha = new Messenger({ name: "alpha", ...quiet() });
  const alphaAddr = await alpha.listen("tcp://127.0.0.1:0");
  const bravo = new Messenger({ name: "bravo", ...quiet() });
  await bravo.connect(alphaAddr, { policy: "losslessPeer" });
  // Whoever answers at this address claims to be bravo, keeping its session with us.
  const raw = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const refuse = { field: "race", message: "keeps its session", local: "bravo", peer: "bravo" };
  const answering = (async () => {
    const conn = await raw.accept();
    await conn.write(new Uint8Array([...BANNER, ...encodeFrame(Tag.Refuse, encodeJson(refuse))]));
    return conn;
  })();
  const liar = `tcp://127.0.0.1:${raw.addr.port}`;
  await assert.rejects(
    deadline(alpha.connect(liar, { policy: "losslessPeer" }), "the dial to the liar"),
    UnexpectedPeerError,
  );
  (await answering).close();
  raw.close();
  await alpha.close();
  await bravo.close();
});

Deno.test("connect() with a wrong expectName leaves an existing connection to that address alone", async () => {
  const bravo = new Messenger({ name: "bravo", ...quiet() });
  const addr = await bravo.listen("tcp://127.0.0.1:0");
  const alpha = new Messenger({ name: "alpha", ...quiet() });
  const conn = await alpha.connect(addr);
  await assert.rejects(alpha.connect(addr, { expectName: "zulu" }), UnexpectedPeerError);
  assert.equal(conn.state, "open", "the connection others use stays open");
  assert.equal(await alpha.connect(addr), conn);
  await alpha.close();
  await bravo.close();
});
