// No false `down` for a healthy peer under sustained full-speed traffic in both directions,
// over real TCP, for SATURATION_SECONDS (default 30) of real time. Bounded: it stops itself.

import assert from "node:assert/strict";
import { Messenger, type NodeEvent } from "../mod.ts";
import { captureLogger, waitEvent } from "./_helpers.ts";

const SECONDS = Number(Deno.env.get("SATURATION_SECONDS") ?? 30);
const HEARTBEAT = { intervalMs: 100, acceptablePauseMs: 400, minStdDevMs: 50 };

Deno.test(`no false down under ${SECONDS} s of full-speed traffic both ways`, async () => {
  const a = new Messenger({ name: "a", heartbeat: HEARTBEAT, logger: captureLogger().log });
  const b = new Messenger({ name: "b", heartbeat: HEARTBEAT, logger: captureLogger().log });
  const addr = await b.listen("tcp://127.0.0.1:0");
  const accepted = waitEvent(b, "accept");
  const ab = await a.connect(addr);
  const ba = (await accepted).connection;
  const seen: NodeEvent[] = [];
  for (const m of [a, b]) {
    (async () => {
      for await (const e of m.watch()) seen.push(e);
    })();
  }
  const deadline = performance.now() + SECONDS * 1000;
  const body = new Uint8Array(1024);
  const counts = { sent: 0, received: 0 };
  const pump = async (conn: typeof ab) => {
    while (performance.now() < deadline) {
      for (let i = 0; i < 1000; i++) await conn.send(1, body);
      counts.sent += 1000;
    }
  };
  const drain = async (m: Messenger) => {
    for await (const _ of m.messages()) {
      counts.received++;
      if (performance.now() > deadline + 2000) break;
    }
  };
  const drains = [drain(a), drain(b)];
  await Promise.all([pump(ab), pump(ba)]);
  const hbA = a.oobStats.heartbeatFramesReceived, hbB = b.oobStats.heartbeatFramesReceived;
  assert.ok(counts.sent > 100_000, `only ${counts.sent} messages sent`);
  assert.equal(a.downEvents, 0, `a saw ${JSON.stringify(seen.filter((e) => e.state !== "up"))}`);
  assert.equal(b.downEvents, 0);
  // Heartbeats kept flowing at about their rate while data saturated the link.
  const expected = (SECONDS * 1000) / HEARTBEAT.intervalMs;
  assert.ok(hbA > expected * 0.5 && hbB > expected * 0.5, `heartbeats ${hbA}/${hbB}`);
  console.log(
    `saturation: ${counts.sent} sent, heartbeats ${hbA}/${hbB} of ~${expected}, ` +
      `suspect events ${seen.filter((e) => e.state === "suspect").length}, down 0`,
  );
  await a.close();
  await b.close();
  await Promise.race([Promise.all(drains), Promise.resolve()]);
});
