// Trust (the trust issue, first steps): what a peer merely claims never decides where our own
// connect() goes. Real TCP.

import "./_guard.ts";
import assert from "node:assert/strict";
import { Messenger, UnexpectedPeerError, WebSocketTransport } from "../mod.ts";
import { BANNER, encodeFrame, Tag } from "../src/protocol/frame.ts";
import { encodeJson } from "../src/protocol/handshake.ts";
import { captureLogger, deadline, rawHello, waitEvent } from "./_helpers.ts";

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
