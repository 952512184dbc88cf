// Bounded resources (trust issue, item 4), over real TCP: what a careless sender or a hostile
// peer can grow is capped, with a typed error, and nothing else is lost.

import "./_guard.ts";
import assert from "node:assert/strict";
import { FrameError, Messenger, QueueFullError, TimeoutError } from "../mod.ts";
import { MAX_OPS_PER_LINK, OpDictionary } from "../src/protocol/heartbeat.ts";
import { decodeHello, encodeJson } from "../src/protocol/handshake.ts";
import { printable } from "../src/protocol/text.ts";
import { MAX_COUNTED_OPS } from "../src/oob/service.ts";
import {
  captureLogger,
  deadline,
  manualPair,
  pair,
  rawHello,
  take,
  waitEvent,
} from "./_helpers.ts";

Deno.test("an empty queue takes a message larger than its hard cap; a full one refuses it", async () => {
  await using p = await pair("tcp://127.0.0.1:0", { maxQueueBytes: 16 * 1024 });
  const big = new Uint8Array(256 * 1024).fill(5);
  const first = p.conn.send(1, big); // into an empty queue: taken, and send() waits for room
  const second = p.conn.send(2, big); // the queue holds the first: past twice the limit
  await assert.rejects(second, QueueFullError);
  await deadline(first, "the large message to be written", 5000);
  const [m] = await take(p.server, 1);
  assert.equal(m.type, 1);
  assert.ok(m.payload.length === big.length && m.payload.every((b) => b === 5), "whole body");
});

Deno.test("send() past the hard cap rejects with QueueFullError; what was queued still arrives", async () => {
  const limit = 64 * 1024;
  const server = new Messenger({ name: "server", logger: captureLogger().log });
  const client = new Messenger({
    name: "client",
    logger: captureLogger().log,
    maxQueueBytes: limit,
  });
  const addr = await server.listen("tcp://127.0.0.1:0");
  const accepted = waitEvent(server, "accept");
  const conn = await client.connect(addr);
  await accepted;
  // A sender that never awaits: the soft limit cannot hold it back, the hard cap must.
  const sends: Promise<void>[] = [];
  let rejected: unknown = null;
  for (let i = 0; i < 10_000 && rejected === null; i++) {
    const p = conn.send(i, new Uint8Array(1024));
    p.catch((e) => rejected ??= e);
    sends.push(p);
    if (i % 64 === 0) await Promise.resolve(); // let rejections surface
  }
  await deadline(Promise.allSettled(sends.slice(-1)), "the last send to settle");
  assert.ok(rejected instanceof QueueFullError, `typed error: ${rejected}`);
  assert.equal(rejected.limitBytes, 2 * limit);
  assert.ok(conn.queuedBytes <= 2 * limit, `queued ${conn.queuedBytes} bytes`);
  const results = await deadline(Promise.allSettled(sends), "every send to settle");
  const ok = results.filter((r) => r.status === "fulfilled").length;
  assert.ok(ok > 0 && ok < sends.length);
  // Every message that was accepted arrives, in order; the connection stays open.
  const got = await take(server, ok);
  assert.deepEqual(
    got.map((m) => m.type),
    results.flatMap((r, i) => r.status === "fulfilled" ? [i] : []),
  );
  assert.equal(conn.state, "open");
  await client.close();
  await server.close();
});

Deno.test("a link that defines more OOB ops than the cap is closed with FrameError oversize", async () => {
  const dict = new OpDictionary(4);
  for (let id = 0; id < 4; id++) dict.define(id, `op${id}`);
  assert.throws(
    () => dict.define(4, "op4"),
    (e) => e instanceof FrameError && e.reason === "oversize",
  );
  // End to end: a peer that registers MAX_OPS_PER_LINK + 1 ops loses its link; others keep theirs.
  await using s = await manualPair({ tickMs: 5, heartbeat: { intervalMs: 1000 } });
  const reset = waitEvent(s.server, "reset");
  for (let i = 0; i <= MAX_OPS_PER_LINK; i++) {
    s.conn.registerOob(`op-${i}`, () => new Uint8Array([1]), { intervalMs: 1000 });
  }
  await s.run(1100, 50);
  const ev = await reset;
  assert.ok(ev.error instanceof FrameError && ev.error.reason === "oversize", String(ev.error));
  assert.ok(s.server.oobStats.partsReceived.size <= MAX_COUNTED_OPS);
});

Deno.test("peer text is printed on one line and cut: names, reasons and op names cannot forge logs", () => {
  const forged = printable("a\nwarn: forged line\u2028and more" + "x".repeat(500));
  assert.ok(!/[\n\r\u2028]/.test(forged), forged);
  assert.ok(forged.length < 240, `cut to ${forged.length}`);
  assert.throws(() => decodeHello(encodeJson(rawHello({ name: "n".repeat(256) }))), FrameError);
});

Deno.test("links over maxPendingHandshakes or maxConnections are closed at once; legitimate peers get in after", async () => {
  const log = captureLogger();
  const server = new Messenger({
    name: "server",
    logger: log.log,
    maxPendingHandshakes: 4,
    maxConnections: 6,
    handshakeTimeoutMs: 60_000,
  });
  const addr = await server.listen("tcp://127.0.0.1:0");
  const port = Number(new URL(addr).port);
  // Subscribed first: the four that wait end (as errors) once we drop them.
  const events = server.events()[Symbol.asyncIterator]();
  const fourGone = (async () => {
    for (let n = 0; n < 4;) if ((await events.next()).value?.kind === "error") n++;
  })();
  // Ten silent links: four wait in their handshake, the other six are closed at once.
  const raw = await Promise.all(
    Array.from({ length: 10 }, () => Deno.connect({ hostname: "127.0.0.1", port })),
  );
  const ended = await Promise.all(raw.map((c) => deadline(readsToEnd(c, 300), "a refused link")));
  assert.equal(ended.filter((e) => e).length, 6, "six closed at once");
  assert.equal(server.counters.linksRefused, 6);
  assert.equal(log.lines.filter((l) => l.includes("maxPendingHandshakes reached")).length, 1);
  for (const c of raw) {
    try {
      c.close();
    } catch { /* closed already */ }
  }
  await deadline(fourGone, "the four silent links to end on the server");
  await events.return?.();
  // The silent ones gone, real clients connect, up to maxConnections.
  const clients = Array.from(
    { length: 7 },
    (_, i) => new Messenger({ name: `c${i}`, logger: () => {} }),
  );
  const results = [];
  for (const c of clients) {
    results.push(await c.connect(addr).then(() => "open", (e) => (e as Error).name));
  }
  assert.deepEqual(results.slice(0, 6), Array(6).fill("open"));
  assert.notEqual(results[6], "open", "the seventh is over maxConnections");
  for (const c of clients) await c.close();
  await server.close();
});

/** Whether the server closes `conn` within `ms` (a read that ends or fails), else false. */
async function readsToEnd(conn: Deno.TcpConn, ms: number): Promise<boolean> {
  const buf = new Uint8Array(64);
  let gaveUp = false;
  const timer = setTimeout(() => {
    gaveUp = true;
    conn.close();
  }, ms);
  try {
    for (;;) if (await conn.read(buf) === null) return !gaveUp;
  } catch {
    return !gaveUp; // reset by the server, or closed by us when it kept the link
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("a link silent past idleTimeoutMs is lost (heartbeats count as traffic)", async () => {
  await using s = await manualPair({
    tickMs: 5,
    heartbeat: { intervalMs: 500 },
    idleTimeoutMs: 3000,
  });
  const reset = waitEvent(s.client, "reset");
  await s.run(10_000, 100); // heartbeats only: not idle
  assert.equal(s.conn.state, "open");
  // The client hears nothing more (its reads stall): after the idle timeout, its link is lost.
  s.net.links[0].stallReads(true);
  await s.run(5_000, 100);
  const ev = await reset;
  assert.ok(ev.error instanceof TimeoutError && ev.error.timeoutMs === 3000, String(ev.error));
  assert.equal(s.conn.state, "closed");
});

Deno.test("a flooding peer pauses its own link, not the others: their heartbeats keep arriving", async () => {
  const common = { heartbeat: { intervalMs: 100 }, logger: () => {} };
  const server = new Messenger({ name: "server", maxInboundBytes: 64 * 1024, ...common });
  const addr = await server.listen("tcp://127.0.0.1:0");
  const flooder = new Messenger({ name: "flooder", ...common });
  const calm = new Messenger({ name: "calm", ...common });
  const flood = await flooder.connect(addr);
  const steady = await calm.connect(addr);
  let beats = 0, wanted = Infinity;
  const { promise: fiveMore, resolve } = Promise.withResolvers<void>();
  server.onOob("calm.ping", () => {
    if (++beats >= wanted) resolve();
  });
  steady.registerOob("calm.ping", () => new Uint8Array([1]), { intervalMs: 100 });
  // 16 MiB that nobody takes yet (more than the kernel's socket buffers hold): the flooder's
  // link must pause near 64 KiB held.
  const total = 1024;
  const sending = (async () => {
    for (let i = 0; i < total; i++) await flood.send(i, new Uint8Array(16 * 1024));
  })();
  sending.catch(() => {});
  wanted = beats + 5;
  await deadline(fiveMore, "five heartbeat parts from the calm peer while the flooder is paused");
  assert.ok(flood.queuedBytes > 0, "the flooder is held back");
  // Everything arrives once the application reads: nothing was lost.
  const got = await take(server, total);
  assert.deepEqual(got.map((m) => m.type), Array.from({ length: total }, (_, i) => i));
  await deadline(sending, "the flooder's sends to finish");
  await flooder.close();
  await calm.close();
  await server.close();
});
