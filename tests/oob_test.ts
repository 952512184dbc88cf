// OOB registration, coalescing and dispatch, on the in-memory transport with an injected clock:
// no test here waits for real time to pass.

import assert from "node:assert/strict";
import { Messenger, OOB_UNCHANGED } from "../mod.ts";
import { ManualClock, MemoryTransport } from "../testing.ts";
import { KEEPALIVE_OP, OobService } from "../src/oob/service.ts";
import type { OobLink } from "../src/oob/types.ts";
import { TimerWheel } from "../src/timer/timer_wheel.ts";
import { PREAMBLE_BYTES } from "../src/protocol/frame.ts";
import {
  decodeHeartbeat,
  encodeHeartbeat,
  type HeartbeatPayload,
  OpDictionary,
} from "../src/protocol/heartbeat.ts";
import { advanceSettling, bytes, captureLogger, manualPair, settle, take } from "./_helpers.ts";

function setup(opts: { intervalMs?: number; maxQueueBytes?: number } = {}) {
  return manualPair({
    tickMs: 5,
    heartbeat: { intervalMs: opts.intervalMs ?? 1000 },
    ...(opts.maxQueueBytes ? { maxQueueBytes: opts.maxQueueBytes } : {}),
  });
}

Deno.test("registerOob() delivers parts at their interval to the peer's handler", async () => {
  await using s = await setup();
  const fired: number[] = [];
  const arrivals: { data: number; peer?: string }[] = [];
  s.server.onOob("OSDPing", (p) => arrivals.push({ data: p.data[0], peer: p.connection.peerName }));
  s.conn.registerOob("OSDPing", () => {
    fired.push(s.clock.now());
    return new Uint8Array([fired.length]);
  }, { intervalMs: 1000 });
  await s.run(5000, 100);
  assert.equal(fired.length, 5);
  assert.equal(arrivals.length, 5);
  for (let i = 0; i < 5; i++) {
    assert.equal(arrivals[i].data, i + 1);
    assert.equal(arrivals[i].peer, "client");
    // Aligned phase: due at each whole second; the wheel's bound is one 5 ms tick.
    const due = (i + 1) * 1000;
    assert.ok(fired[i] >= due && fired[i] <= due + 5, `part ${i} fired at ${fired[i]}`);
  }
});

Deno.test("parts due in the same tick travel in one heartbeat frame", async () => {
  await using s = await setup({ intervalMs: 1000 });
  const got = new Map<string, number>();
  for (const op of ["OSDPing", "LingerPing", "WatchPing"]) {
    s.server.onOob(op, (p) => got.set(p.op, (got.get(p.op) ?? 0) + 1));
  }
  s.conn.registerOob("OSDPing", () => bytes(16), { intervalMs: 1000 });
  s.conn.registerOob("LingerPing", () => bytes(8), { intervalMs: 5000 });
  s.conn.registerOob("WatchPing", () => bytes(4), { intervalMs: 1000 });
  const before = s.server.oobStats.heartbeatFramesReceived;
  await s.run(10_000);
  const frames = s.server.oobStats.heartbeatFramesReceived - before;
  // The keepalive (1 s) and all three users share one frame per second: 10 frames, 22 parts.
  assert.equal(frames, 10);
  assert.equal(got.get("OSDPing"), 10);
  assert.equal(got.get("WatchPing"), 10);
  assert.equal(got.get("LingerPing"), 2);
});

Deno.test("0.5 s and 1 s parts due together share one frame, whatever the clock's epoch", async () => {
  // performance.now() starts at a fraction; times rounded into different ticks once split
  // one tick's parts over two frames 3-5 ms apart.
  for (const start of [123.456, 98_765.4321]) {
    await using s = await manualPair(
      { tickMs: 5, heartbeat: { intervalMs: 1000 } },
      undefined,
      start,
    );
    let half = 0, one = 0;
    s.server.onOob("half", () => void half++);
    s.server.onOob("one", () => void one++);
    s.conn.registerOob("half", () => bytes(1), { intervalMs: 500 });
    s.conn.registerOob("one", () => bytes(1), { intervalMs: 1000 });
    const before = s.server.oobStats.heartbeatFramesReceived;
    await s.run(10_000, 50);
    const frames = s.server.oobStats.heartbeatFramesReceived - before;
    assert.equal(half, 20, `start ${start}`);
    assert.equal(one, 10, `start ${start}`);
    assert.equal(
      frames,
      20,
      `start ${start}: keepalive, 1 s and 0.5 s parts in one frame each time`,
    );
  }
});

Deno.test("cancel() stops a registration that is due in the same tick", async () => {
  await using s = await setup();
  const got: string[] = [];
  s.server.onOob("a", () => got.push("a"));
  s.server.onOob("b", () => got.push("b"));
  const regs: { b?: { cancel(): void } } = {};
  s.conn.registerOob("a", () => {
    regs.b?.cancel();
    return bytes(1);
  }, { intervalMs: 1000 });
  const b = s.conn.registerOob("b", () => bytes(1), { intervalMs: 1000 });
  regs.b = b;
  await s.run(1000);
  assert.deepEqual(got, ["a"]);
  assert.equal(b.active, false);
});

Deno.test("a registration is cancelled with its connection, and the wheel empties", async () => {
  const s = await setup();
  const reg = s.conn.registerOob("x", () => bytes(1), { intervalMs: 1000 });
  assert.equal(reg.active, true);
  const wheelBefore = s.client.timers.size;
  await s.conn.close();
  assert.equal(reg.active, false);
  assert.ok(s.client.timers.size < wheelBefore);
  assert.equal(s.client.oobStats.registrations, 0);
  assert.throws(() => s.conn.registerOob("y", () => bytes(1), { intervalMs: 1000 }));
  await s.client.close();
  await s.server.close();
  assert.equal(s.client.timers.size, 0);
  assert.equal(s.server.timers.size, 0);
});

Deno.test("producers and handlers that throw are contained; the others still go out", async () => {
  await using s = await setup();
  const got: string[] = [];
  s.server.onOob("good", () => got.push("good"));
  s.server.onOob("bad-handler", () => {
    throw new Error("handler boom");
  });
  s.conn.registerOob("bad", () => {
    throw new Error("producer boom");
  }, { intervalMs: 1000 });
  s.conn.registerOob("good", () => bytes(1), { intervalMs: 1000 });
  s.conn.registerOob("bad-handler", () => bytes(1), { intervalMs: 1000 });
  await s.run(3000);
  assert.equal(got.length, 3);
  assert.equal(s.client.oobStats.errors, 3);
  assert.equal(s.server.oobStats.errors, 3);
  assert.equal(s.conn.state, "open");
  assert.equal(s.log.lines.filter((l) => l.includes("handler boom")).length, 1, "logged once");
});

Deno.test("parts of an op with no handler are counted and logged once, not fatal", async () => {
  await using s = await setup();
  s.conn.registerOob("Nobody", () => bytes(2), { intervalMs: 1000 });
  await s.run(3000);
  assert.equal(s.server.oobStats.unhandled, 3);
  assert.equal(s.log.lines.filter((l) => l.includes("Nobody")).length, 1);
  assert.equal(s.serverConn.state, "open");
});

Deno.test("heartbeats echo stamps so both ends measure round-trip time", async () => {
  await using s = await setup();
  assert.ok(Number.isNaN(s.conn.rttMs));
  await s.run(3000);
  assert.ok(Number.isFinite(s.conn.rttMs) && s.conn.rttMs >= 0, `client rtt ${s.conn.rttMs}`);
  assert.ok(Number.isFinite(s.serverConn.rttMs), `server rtt ${s.serverConn.rttMs}`);
});

Deno.test("a heartbeat jumps ahead of queued data but stays behind bytes in the socket", async () => {
  // A queue deep enough for every send below, none of which waits.
  await using s = await setup({ maxQueueBytes: 8 << 20 });
  const order: string[] = [];
  s.server.onOob("probe", () => order.push("oob"));
  const link = s.net.links[0];
  link.peer.stallReads(true);
  const total = 400; // 400 x 16 KiB = 6.4 MiB: far more than the link buffers (1 MiB)
  for (let i = 0; i < total; i++) s.conn.send(i, bytes(16 * 1024));
  await settle();
  s.conn.registerOob("probe", () => bytes(1), { intervalMs: 1000 });
  s.clock.advance(1000);
  await settle();
  assert.equal(order.length, 0, "the stalled channel holds the heartbeat too");
  link.peer.stallReads(false);
  const consumer = (async () => {
    for await (const m of s.server.messages()) {
      order.push(`m${m.type}`);
      if (m.type === total - 1) break;
    }
  })();
  await consumer;
  const at = order.indexOf("oob");
  assert.ok(at > 0, "bytes already handed to the link came first");
  assert.ok(at < total / 2, `the heartbeat overtook queued data (arrived at ${at})`);
});

Deno.test("10,000 producers on 100 connections use no timer beyond the wheel's one", async () => {
  const net = new MemoryTransport();
  const quiet = captureLogger().log;
  const server = new Messenger({ name: "server", transports: [net], logger: quiet });
  const client = new Messenger({ name: "client", transports: [net], logger: quiet });
  const conns = [];
  for (let i = 0; i < 100; i++) {
    await server.listen(`mem://s${i}`);
    conns.push(await client.connect(`mem://s${i}`));
  }
  // Count live host timers created from here on.
  const live = new Set<unknown>();
  let intervals = 0;
  const realSet = globalThis.setTimeout, realClear = globalThis.clearTimeout;
  const realInterval = globalThis.setInterval;
  globalThis.setTimeout = ((fn: () => void, ms?: number) => {
    const id = realSet(() => {
      live.delete(id);
      fn();
    }, ms);
    live.add(id);
    return id;
  }) as typeof setTimeout;
  globalThis.clearTimeout = ((id: unknown) => {
    live.delete(id);
    realClear(id as number);
  }) as typeof clearTimeout;
  globalThis.setInterval = ((...args: Parameters<typeof setInterval>) => {
    intervals++;
    return realInterval(...args);
  }) as typeof setInterval;
  const regs = [];
  try {
    for (const conn of conns) {
      for (let j = 0; j < 100; j++) {
        regs.push(
          conn.registerOob(`op${j}`, () => bytes(4), { intervalMs: j % 2 ? 1000 : 5000 }),
        );
      }
    }
    assert.equal(intervals, 0);
    assert.ok(live.size <= 1, `${live.size} host timers alive`);
    // Plus one keepalive per connection, the failure detector's one check timer and the idle
    // check's one.
    assert.equal(client.timers.size, 10_000 + 100 + 2);
  } finally {
    globalThis.setTimeout = realSet;
    globalThis.clearTimeout = realClear;
    globalThis.setInterval = realInterval;
  }
  for (const r of regs) r.cancel();
  assert.equal(client.timers.size, 102, "only the keepalives and the two checks remain");
  assert.equal(client.oobStats.registrations, 100);
  await client.close();
  await server.close();
  assert.equal(client.timers.size, 0);
});

Deno.test("registerOob() rejects bad arguments clearly", async () => {
  await using s = await setup();
  assert.throws(() => s.conn.registerOob("", () => bytes(1), { intervalMs: 1000 }), TypeError);
  assert.throws(() => s.conn.registerOob("x".repeat(300), () => null, { intervalMs: 1000 }));
  assert.throws(() => s.conn.registerOob("x", () => null, { intervalMs: 1 }), RangeError);
  assert.throws(() =>
    s.server.onOob(KEEPALIVE_OP, () => {}) && s.server.onOob(KEEPALIVE_OP, () => {})
  );
});

Deno.test("data still flows while heartbeats run (OOB does not disturb ordering)", async () => {
  await using s = await setup();
  s.conn.registerOob("p", () => bytes(1), { intervalMs: 1000 });
  s.server.onOob("p", () => {});
  const sends = [];
  for (let i = 0; i < 500; i++) {
    sends.push(s.conn.send(i, bytes(100)));
    if (i % 50 === 0) s.clock.advance(1000);
  }
  await Promise.all(sends);
  const got = await take(s.server, 500);
  assert.deepEqual(got.map((m) => m.type), Array.from({ length: 500 }, (_, i) => i));
  assert.ok(s.server.oobStats.heartbeatFramesReceived >= 5);
});

Deno.test("unchanged parts travel as references; handlers see the bytes, also after a new link", async () => {
  const clock = new ManualClock(0), net = new MemoryTransport();
  const common = { clock, transports: [net], tickMs: 5, logger: captureLogger().log };
  await using server = new Messenger({ name: "server", ...common });
  await using client = new Messenger({ name: "client", ...common });
  await server.listen("mem://server");
  const conn = await client.connect("mem://server", { policy: "losslessClient" });
  const s = { server, client, net, run: (ms: number) => advanceSettling(clock, ms, 100) };
  const seen: number[][] = [];
  s.server.onOob("OSDPing", (p) => void seen.push([...p.data]));
  let epoch = 1, calls = 0;
  conn.registerOob("OSDPing", () => {
    calls++;
    // New bytes every fourth call, "unchanged" in between (a map epoch, say).
    if (calls % 4 === 1) return new Uint8Array([epoch++, 0, 0, 0]);
    return OOB_UNCHANGED;
  }, { intervalMs: 1000 });
  await s.run(8_000);
  assert.ok(s.client.oobStats.partsRepeated >= 5, `repeated: ${s.client.oobStats.partsRepeated}`);
  const before = s.client.oobStats.partsRepeated;
  s.net.links.at(-1)!.cut(); // the session resumes on a new link: its dictionary starts afresh
  await s.run(8_000);
  assert.equal(conn.state, "open");
  assert.ok(conn.linkEpoch > 1, "it is on a new link");
  assert.ok(s.client.oobStats.partsRepeated > before, "references again on the new link");
  // Every part carried the epoch of the last new bytes, in order, none stale or garbled.
  const epochs = seen.map((d) => d[0]);
  for (let i = 1; i < epochs.length; i++) assert.ok(epochs[i] >= epochs[i - 1], epochs.join(","));
  const counts = new Map<number, number>();
  for (const e of epochs) counts.set(e, (counts.get(e) ?? 0) + 1);
  assert.ok([...counts.values()].every((n) => n <= 4), `at most 4 parts per epoch: ${epochs}`);
  assert.ok(counts.size >= 3, `epochs seen: ${epochs}`);
  for (const d of seen) assert.deepEqual(d.slice(1), [0, 0, 0]);
});

Deno.test("a heartbeat echoes the peer's stamp whenever anything of the peer's arrived since the last one", () => {
  // On a saturated link the peer's heartbeat can wait behind its data for longer than an
  // interval while that data keeps arriving: the data alone proves the peer reaches us.
  const clock = new ManualClock(1000);
  const wheel = new TimerWheel({ clock, tickMs: 5 });
  const oob = new OobService<OobLink>(wheel, () => {});
  const rx = new OpDictionary(), tx = new OpDictionary();
  const sent: HeartbeatPayload[] = [];
  const conn: OobLink & { linkEpoch: number } = {
    state: "open",
    linkEpoch: 1,
    sendControl: (frame) => sent.push(decodeHeartbeat(frame.subarray(PREAMBLE_BYTES), rx)),
  };
  oob.register(conn, KEEPALIVE_OP, null, { intervalMs: 100 });
  const peerHeartbeat = (stamp: number) =>
    oob.receive(conn, encodeHeartbeat({ stamp, echo: -1, echoDelay: 0, parts: [] }, tx));
  clock.advance(50);
  peerHeartbeat(7);
  clock.advance(60); // our heartbeat at 1100 echoes 7, held 50 ms
  assert.deepEqual(sent.map((h) => [h.echo, h.echoDelay]), [[7, 50]]);
  clock.advance(100); // nothing arrived: no echo
  assert.deepEqual(sent.map((h) => h.echo), [7, -1]);
  clock.advance(50);
  oob.heard(conn); // data only, the peer's heartbeat is still on its way
  clock.advance(50);
  assert.equal(sent.length, 3);
  assert.deepEqual([sent[2].echo, sent[2].echoDelay], [7, 250], "the same stamp, held longer");
  clock.advance(100);
  assert.equal(sent[3].echo, -1, "heard once, echoed once");
  // A new link (a resume, or a restarted peer whose clock is another): the old stamp is not
  // echoed on it, whatever arrives, until the peer stamps a heartbeat on this link.
  conn.linkEpoch = 2;
  oob.heard(conn);
  clock.advance(100);
  assert.equal(sent[4].echo, -1, "no stamp of an earlier link");
  peerHeartbeat(9);
  clock.advance(100);
  assert.equal(sent[5].echo, 9);
  wheel.close();
});

Deno.test("a clock that throws once at a flush costs that tick's heartbeats, not every later one", () => {
  // The flush reads the clock once per tick; a read that throws ends that flush (the wheel
  // reports it), and the connections that were due must be due again at their next interval.
  class OnceFailingClock extends ManualClock {
    failNext = false;
    override now(): number {
      if (this.failNext) {
        this.failNext = false;
        throw new Error("clock read failed");
      }
      return super.now();
    }
  }
  const clock = new OnceFailingClock(1000);
  const errors: unknown[] = [];
  const wheel = new TimerWheel({ clock, tickMs: 5, onError: (e) => errors.push(e) });
  // A tick-end hook made before the service's own runs first: it arms the failure for the
  // flush's clock read, the next one of the tick.
  let armAt = -1;
  wheel.onTickEnd(() => {
    if (clock.now() === armAt) clock.failNext = true;
  });
  const oob = new OobService<OobLink>(wheel, () => {});
  let sent = 0;
  const conns = [1, 2, 3].map((): OobLink => ({
    state: "open",
    linkEpoch: 1,
    sendControl: () => void sent++,
  }));
  for (const conn of conns) oob.register(conn, KEEPALIVE_OP, null, { intervalMs: 100 });
  clock.advance(100);
  assert.equal(sent, 3, "one heartbeat each after the first interval");
  armAt = 1200;
  clock.advance(100);
  assert.equal(sent, 3, "the failed flush sent nothing");
  assert.equal(errors.length, 1, "the wheel reported the clock's failure");
  for (let i = 1; i <= 5; i++) {
    clock.advance(100);
    assert.equal(sent, 3 + 3 * i, `every connection's heartbeat at interval ${i} after it`);
  }
});
