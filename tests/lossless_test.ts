// Lossless client/server sessions: resume after cuts with nothing lost, duplicated or
// reordered; restart detection; session expiry; acks and the replay buffer.

import assert from "node:assert/strict";
import {
  type Connection,
  type Message,
  Messenger,
  type MessengerEvent,
  type MessengerOptions,
  type Priority,
  TcpTransport,
  WebSocketTransport,
} from "../mod.ts";
import { ManualClock, MemoryTransport } from "../testing.ts";
import { GATHER_MIN_BYTES } from "../src/protocol/message.ts";
import { FaultProxy } from "./fault_proxy.ts";
import { captureLogger, deadline, runDeno, take, waitEvent } from "./_helpers.ts";

const QUICK = { reconnectBaseMs: 1, reconnectMaxMs: 20 };
const PRIORITIES: Priority[] = ["high", "normal", "low"];

function collectEvents(m: Messenger): MessengerEvent[] {
  const out: MessengerEvent[] = [];
  (async () => {
    for await (const e of m.events()) out.push(e);
  })();
  return out;
}

/**
 * Sends `total` messages in three priorities (type = index within its priority) while `cut()`
 * is called every `every` received messages; checks exactly-once, in-order delivery.
 */
async function cutStorm(
  client: Messenger,
  server: Messenger,
  conn: Connection,
  total: number,
  cuts: number,
  cut: () => boolean,
) {
  const every = Math.floor(total / (cuts + 1));
  const next = [0, 0, 0];
  const sender = (async () => {
    for (let i = 0; i < total; i++) {
      const p = i % 7 === 0 ? 0 : i % 3 === 0 ? 2 : 1;
      const body = new Uint8Array(16);
      new DataView(body.buffer).setUint32(0, i);
      await conn.send(next[p]++, body, { priority: PRIORITIES[p] });
    }
  })();
  const expected = [0, 0, 0];
  let received = 0;
  let cutsDone = 0;
  let serverSeq = 0;
  let serverConn: Connection | undefined;
  for await (const m of server.messages() as AsyncIterable<Message>) {
    const p = PRIORITIES.indexOf(m.priority);
    assert.equal(m.type, expected[p], `priority ${m.priority}: expected ${expected[p]}`);
    expected[p]++;
    // The session's sequence has no gap and never goes back (resets would restart it).
    if (serverConn !== m.connection) serverConn = m.connection;
    assert.equal(m.seq, serverSeq + 1, "no gap in the receiver's sequence");
    serverSeq = m.seq;
    received++;
    // Cut every `every` messages, counting only cuts of a live link (a cut while the
    // session is still reconnecting would cut nothing).
    if (received >= (cutsDone + 1) * every && cutsDone < cuts) {
      const back = waitEvent(client, "resume");
      if (cut()) {
        cutsDone++;
        await back; // the next cut comes after the session is back
      }
    }
    if (received === total) break;
  }
  await sender;
  assert.deepEqual(expected, next, "every message arrived exactly once");
  assert.equal(cutsDone, cuts);
  return { received, cutsDone };
}

/** A lossless client and its server over TCP, through a fault proxy. */
async function proxiedLosslessPair() {
  const opts = { logger: captureLogger().log, ...QUICK };
  const server = new Messenger({ name: "server", ...opts });
  const client = new Messenger({ name: "client", ...opts });
  const addr = await server.listen("tcp://127.0.0.1:0");
  const proxy = FaultProxy.start({ targetPort: Number(new URL(addr).port) });
  const conn = await client.connect(proxy.addr, { policy: "losslessClient" });
  return { server, client, proxy, conn };
}

Deno.test("[mem] 100,000 messages survive 200 cuts: exactly once, in order per priority", async () => {
  const net = new MemoryTransport();
  const opts = { transports: [net], logger: captureLogger().log, ...QUICK };
  const server = new Messenger({ name: "server", ...opts });
  const client = new Messenger({ name: "client", ...opts });
  await server.listen("mem://server");
  const conn = await client.connect("mem://server", { policy: "losslessClient" });
  const events = collectEvents(client);
  const { cutsDone } = await cutStorm(client, server, conn, 100_000, 200, () => {
    const link = net.links.at(-1)!;
    if (conn.state !== "open" || link.unreadBytes < 0) return false;
    link.cut();
    return true;
  });
  assert.equal(cutsDone, 200);
  assert.ok(net.links.length >= 200, `${net.links.length} links dialed`);
  assert.equal(events.filter((e) => e.kind === "remote-reset").length, 0);
  assert.equal(events.filter((e) => e.kind === "resume").length, 200);
  assert.ok(conn.replayedMessages > 0, "cuts hit messages in flight, which were replayed");
  await client.close();
  await server.close();
});

Deno.test("[tcp] 100,000 messages through a proxy cut 200 times: exactly once, in order", async () => {
  const { server, client, proxy, conn } = await proxiedLosslessPair();
  await cutStorm(client, server, conn, 100_000, 200, () => {
    if (proxy.connections === 0 || conn.state !== "open") return false;
    proxy.cut();
    return true;
  });
  assert.ok(proxy.accepted >= 150, `${proxy.accepted} connections through the proxy`);
  assert.ok(conn.replayedMessages > 0, "cuts hit messages in flight, which were replayed");
  await client.close();
  await server.close();
  proxy.close();
});

Deno.test("[mem] a one-way flow is acknowledged: the replay buffer empties", async () => {
  const net = new MemoryTransport();
  const opts = { transports: [net], logger: captureLogger().log };
  const server = new Messenger({ name: "server", ...opts });
  const client = new Messenger({ name: "client", ...opts });
  await server.listen("mem://server");
  const conn = await client.connect("mem://server", { policy: "losslessClient" });
  for (let i = 0; i < 5000; i++) await conn.send(i, new Uint8Array(100));
  await take(server, 5000);
  // The server's standalone acks (one per read) arrive; wait for the last one.
  for (let i = 0; i < 100 && conn.unackedMessages > 0; i++) {
    await new Promise((r) => setTimeout(r, 1));
  }
  assert.equal(conn.unackedMessages, 0);
  await client.close();
  await server.close();
});

Deno.test("[tcp] a body detached after send() ends the session with UnwritableMessageError, not a reconnect loop", async () => {
  for (const policy of ["losslessClient", "lossyClient"] as const) {
    const opts: MessengerOptions = { logger: captureLogger().log, ...QUICK };
    await using server = new Messenger({ name: "server", ...opts });
    await using client = new Messenger({ name: "client", ...opts });
    const addr = await server.listen("tcp://127.0.0.1:0");
    const conn = await client.connect(addr, { policy });
    await conn.send(1, new Uint8Array([1]));
    await take(server, 1);
    const events = collectEvents(client);
    const reset = waitEvent(client, "reset");
    const bad = new Uint8Array(64).fill(2);
    const sends = [conn.send(2, new Uint8Array([2])), conn.send(3, bad)];
    (bad.buffer as ArrayBuffer).transfer(); // breaks send()'s contract before the writer runs
    sends.push(conn.send(4, new Uint8Array([4])));
    await Promise.all(sends);
    const ev = await reset;
    assert.equal(ev.error.name, "UnwritableMessageError", policy);
    assert.match(ev.error.message, /\(type 3\): its body was detached after send\(\)/);
    // It and the one after it come back; the one before it was written (a lossless session
    // hands it back too until the peer acknowledged it).
    const types = ev.unsent.map((m) => m.type);
    assert.deepEqual(types.filter((t) => t >= 3), [3, 4], policy);
    if (policy === "lossyClient") assert.ok(!types.includes(2), "written, so not handed back");
    assert.equal(conn.stats.messagesSent, 2, "messages 1 and 2 were written, 3 and 4 not");
    assert.equal(conn.state, "closed");
    assert.equal(events.filter((e) => e.kind === "disconnect").length, 0, "no reconnect tried");
    // The messenger goes on serving: a new connection works (message 2 may arrive first).
    const again = await client.connect(addr, { policy });
    await again.send(5, new Uint8Array([5]));
    for (let type = 0; type !== 5;) {
      type = (await take(server, 1))[0].type;
      assert.ok(type === 2 || type === 5, `unexpected message ${type}`);
    }
  }
});

Deno.test("[mem] a large body detached while unacknowledged ends the session at its replay", async () => {
  const net = new MemoryTransport();
  const opts: MessengerOptions = { transports: [net], logger: captureLogger().log, ...QUICK };
  await using server = new Messenger({ name: "server", ...opts });
  await using client = new Messenger({ name: "client", ...opts });
  await server.listen("mem://server");
  const conn = await client.connect("mem://server", { policy: "losslessClient" });
  net.links[0].peer.stallReads(true); // nothing is acknowledged
  const big = new Uint8Array(GATHER_MIN_BYTES).fill(5); // kept by reference for replay
  await conn.send(1, big);
  // Written at once unless a write (the handshake's) is in flight: a few turns at most.
  for (let i = 0; i < 1000 && conn.unackedMessages < 1; i++) {
    await new Promise((r) => setTimeout(r, 1));
  }
  assert.equal(conn.unackedMessages, 1, "the large message was written and kept");
  (big.buffer as ArrayBuffer).transfer();
  const reset = waitEvent(client, "reset");
  net.links[0].cut(); // the resume must write it again, and cannot
  const ev = await reset;
  assert.equal(ev.error.name, "UnwritableMessageError");
  assert.deepEqual(ev.unsent.map((m) => m.type), [1], "handed back, not lost");
});

Deno.test("[mem] a full replay buffer holds messages back: send() waits, nothing is dropped", async () => {
  const net = new MemoryTransport();
  const opts = {
    transports: [net],
    logger: captureLogger().log,
    maxUnackedBytes: 64 * 1024,
    maxQueueBytes: 64 * 1024,
  };
  const server = new Messenger({ name: "server", ...opts });
  const client = new Messenger({ name: "client", ...opts });
  await server.listen("mem://server");
  const conn = await client.connect("mem://server", { policy: "losslessClient" });
  net.links[0].peer.stallReads(true); // no reads, so no acks
  let accepted = 0;
  const writer = (async () => {
    for (let i = 0; i < 100; i++) {
      await conn.send(i, new Uint8Array(8 * 1024));
      accepted++;
    }
  })();
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 1));
  assert.ok(accepted < 100, `sender held back after ${accepted}`);
  assert.ok(conn.unackedMessages * (8 * 1024) <= 64 * 1024 + 8 * 1024 + 100);
  net.links[0].peer.stallReads(false);
  const got = await take(server, 100);
  await writer;
  assert.deepEqual(got.map((m) => m.type), Array.from({ length: 100 }, (_, i) => i));
  await client.close();
  await server.close();
});

Deno.test("[mem] a restarted server is detected: the client gets remote-reset with the lost count", async () => {
  const net = new MemoryTransport();
  const opts: MessengerOptions = { transports: [net], logger: captureLogger().log, ...QUICK };
  const server1 = new Messenger({ name: "server", ...opts });
  const client = new Messenger({ name: "client", ...opts });
  await server1.listen("mem://server");
  const conn = await client.connect("mem://server", { policy: "losslessClient" });
  await conn.send(1, new Uint8Array(1));
  await take(server1, 1);
  // The server stops reading, five messages go out unacknowledged, then it "crashes".
  net.links[0].peer.stallReads(true);
  for (let i = 0; i < 5; i++) await conn.send(10 + i, new Uint8Array(1));
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(conn.unackedMessages, 5);
  const reset = waitEvent(client, "remote-reset");
  net.links[0].cut();
  await server1.close();
  const server2 = new Messenger({ name: "server", ...opts });
  await server2.listen("mem://server");
  const ev = await reset;
  assert.equal(ev.lost, 5);
  assert.equal(ev.reason, "peer restarted");
  // The session starts afresh with the new incarnation; nothing old is delivered as new.
  await conn.send(99, new Uint8Array(1));
  const [m] = await take(server2, 1);
  assert.equal(m.type, 99);
  assert.equal(m.seq, 1);
  await client.close();
  await server2.close();
});

Deno.test("[tcp] a killed and restarted client process: the survivor sees remote-reset with the right lost count", async () => {
  const server = new Messenger({ name: "survivor", logger: captureLogger().log, ...QUICK });
  const addr = await server.listen("tcp://127.0.0.1:0");
  const proxy = FaultProxy.start({ targetPort: Number(new URL(addr).port) });
  const script = new URL("./fixtures/lossless_client.ts", import.meta.url);
  const spawn = () =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net=127.0.0.1", script.href, proxy.addr],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
  const first = spawn();
  const accepted = await waitEvent(server, "accept");
  const session = accepted.connection;
  assert.equal(session.policy.name, "statefulServer");
  // Seven messages vanish on the way (blackhole): written, never acknowledged.
  proxy.blackhole(true);
  for (let i = 0; i < 7; i++) await session.send(i, new Uint8Array(8));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(session.unackedMessages, 7);
  first.kill("SIGKILL");
  await first.status;
  await first.stdout.cancel();
  proxy.blackhole(false);
  const reset = waitEvent(server, "remote-reset");
  const second = spawn();
  const ev = await reset;
  assert.equal(ev.connection, session, "the same session object, reset");
  assert.equal(ev.lost, 7);
  assert.equal(ev.reason, "peer restarted");
  second.kill("SIGKILL");
  await second.status;
  await second.stdout.cancel();
  await server.close();
  proxy.close();
});

Deno.test("[mem] a client that comes back after the session expired gets a reset, not a resume", async () => {
  const clock = new ManualClock(0);
  const net = new MemoryTransport();
  const opts: MessengerOptions = {
    transports: [net],
    clock,
    logger: captureLogger().log,
    sessionTimeoutMs: 1000,
    reconnectBaseMs: 5000,
    reconnectMaxMs: 5000,
  };
  const server = new Messenger({ name: "server", ...opts });
  const client = new Messenger({ name: "client", ...opts });
  await server.listen("mem://server");
  const conn = await client.connect("mem://server", { policy: "losslessClient" });
  const accepted = server.connections()[0];
  net.links[0].peer.stallReads(true);
  for (let i = 0; i < 3; i++) await conn.send(i, new Uint8Array(1));
  await new Promise((r) => setTimeout(r, 5));
  const expired = waitEvent(server, "reset");
  const remoteReset = waitEvent(client, "remote-reset");
  net.links[0].cut();
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(conn.state, "reconnecting");
  assert.equal(accepted.state, "standby");
  clock.advance(1500); // the server's session expires before the client's redial (>= 2.5 s)
  const ev = await expired;
  assert.match(ev.error.message, /expired/);
  clock.advance(5000);
  const rr = await remoteReset;
  assert.equal(rr.reason, "session expired");
  assert.equal(rr.lost, 3);
  assert.equal(conn.state, "open");
  await client.close();
  await server.close();
});

Deno.test("[tcp] lossless peers dialing each other at once end with one session, 100 times", async () => {
  const log = captureLogger();
  for (let trial = 0; trial < 100; trial++) {
    const a = new Messenger({ name: "alpha", logger: log.log, ...QUICK });
    const b = new Messenger({ name: "bravo", logger: log.log, ...QUICK });
    const [addrA, addrB] = await Promise.all([
      a.listen("tcp://127.0.0.1:0"),
      b.listen("tcp://127.0.0.1:0"),
    ]);
    const [ab, ba] = await Promise.all([
      a.connect(addrB, { policy: "losslessPeer" }),
      b.connect(addrA, { policy: "losslessPeer" }),
    ]);
    assert.equal(ab.peerName, "bravo");
    assert.equal(ba.peerName, "alpha");
    assert.equal(a.connections().filter((c) => c.state === "open").length, 1, `trial ${trial}`);
    assert.equal(b.connections().filter((c) => c.state === "open").length, 1, `trial ${trial}`);
    // Dialing again returns the same session.
    assert.equal(await a.connect(addrB, { policy: "losslessPeer" }), ab);
    // One ordered stream each way: nothing lost or duplicated.
    for (let i = 0; i < 20; i++) {
      await ab.send(i, new Uint8Array([i]));
      await ba.send(100 + i, new Uint8Array([i]));
    }
    const atB = await take(b, 20);
    const atA = await take(a, 20);
    assert.deepEqual(atB.map((m) => m.type), Array.from({ length: 20 }, (_, i) => i));
    assert.deepEqual(atA.map((m) => m.type), Array.from({ length: 20 }, (_, i) => 100 + i));
    assert.ok(atB.every((m) => m.connection === ba) && atA.every((m) => m.connection === ab));
    await Promise.all([a.close(), b.close()]);
  }
  assert.equal(log.lines.filter((l) => l.startsWith("warn") || l.startsWith("error")).length, 0);
  // The dials really raced: refusals settled some trials (superseded dials end silently).
  const races = log.lines.filter((l) => l.includes("Dial race")).length;
  assert.ok(races > 0, "no trial raced");
  console.log(`dial races settled by refusal: ${races} of 100 trials`);
});

Deno.test("[mem] a lossless peer session resumes after a cut, from the side that dialed", async () => {
  const net = new MemoryTransport();
  const opts = { transports: [net], logger: captureLogger().log, ...QUICK };
  const a = new Messenger({ name: "alpha", ...opts });
  const b = new Messenger({ name: "bravo", ...opts });
  await a.listen("mem://alpha");
  const addrB = await b.listen("mem://bravo");
  const ab = await a.connect(addrB, { policy: "losslessPeer" });
  const resumed = waitEvent(a, "resume");
  for (let i = 0; i < 100; i++) await ab.send(i, new Uint8Array(64));
  net.links.at(-1)!.cut();
  for (let i = 100; i < 200; i++) await ab.send(i, new Uint8Array(64));
  await resumed;
  const got = await take(b, 200);
  assert.deepEqual(got.map((m) => m.type), Array.from({ length: 200 }, (_, i) => i));
  await Promise.all([a.close(), b.close()]);
});

Deno.test("[tcp] OOB parts keep flowing across a resume (op names are defined again per link)", async () => {
  const { server, client, proxy, conn } = await proxiedLosslessPair();
  const got: string[] = [];
  let wake = () => {};
  server.onOob("WatchPing", (p) => {
    got.push(new TextDecoder().decode(p.data));
    wake();
  });
  let n = 0;
  conn.registerOob("WatchPing", () => new TextEncoder().encode(`w${n++}`), { intervalMs: 20 });
  // Waits for parts, failing (not hanging) if they stop coming.
  const deadline = performance.now() + 10_000;
  const next = () =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error("OOB parts stopped arriving")),
        deadline - performance.now(),
      );
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  const until = async (count: number) => {
    while (got.length < count) await next();
  };
  await until(3);
  // A new op whose first part (the one that names it) is lost with the old link.
  proxy.blackhole(true);
  const late: string[] = [];
  server.onOob("LatePing", () => {
    late.push("late");
    wake();
  });
  conn.registerOob("LatePing", () => new Uint8Array([1]), { intervalMs: 20 });
  while ((client.oobStats.partsSent.get("LatePing") ?? 0) < 1) {
    await new Promise((r) => setTimeout(r, 5));
  }
  const resumed = waitEvent(client, "resume");
  proxy.cut();
  proxy.blackhole(false);
  await resumed;
  const before = got.length;
  await until(before + 3);
  while (late.length < 2) await next();
  assert.ok(got.every((s) => /^w\d+$/.test(s)), got.join(","));
  // One resume only: a stale op id on the new link would have faulted it again.
  assert.equal(client.counters.reconnects, 1);
  proxy.close();
  await Promise.all([client.close(), server.close()]);
});

for (const scheme of ["tcp", "ws"] as const) {
  Deno.test(`[${scheme}] both ends close at once, the sender exits at once: nothing accepted is lost`, async () => {
    // The receiver closes while the sender streams: acks must keep flowing in the close (the
    // sender writes only while its replay buffer has room), a send waiting for room when the
    // close begins has its message written, and over WebSocket, whose API buffers writes in the
    // process, close() must let the last frames leave before it resolves.
    const COUNT = 400, SIZE = 32 * 1024;
    for (let round = 0; round < 3; round++) {
      const receiver = new Messenger({
        name: "receiver",
        logger: () => {},
        transports: [new TcpTransport(), new WebSocketTransport()],
      });
      const addr = await receiver.listen(
        scheme === "ws" ? "ws://127.0.0.1:0/heartline" : "tcp://127.0.0.1:0",
      );
      const ended = waitEvent(receiver, "close").catch(() => null);
      const sender = runDeno([
        "run",
        "--allow-net=127.0.0.1",
        "tests/fixtures/send_then_exit.ts",
        addr,
        String(COUNT),
        String(SIZE),
      ], 60_000);
      // Close as soon as the first message is in: both Close frames cross mid-stream.
      const got: number[] = [];
      let closing: Promise<void> | null = null;
      const reading = (async () => {
        for await (const m of receiver.messages()) {
          got.push(new DataView(m.payload.buffer, m.payload.byteOffset).getUint32(0));
          if (got.length === 1) closing = receiver.close(); // messages keep coming meanwhile
        }
      })();
      await deadline(reading, "the receiver's messages to end with its close");
      await deadline(closing!, "the receiver's close");
      const out = await sender;
      assert.equal(out.code, 0, out.stderr);
      const { accepted, returned } = JSON.parse(out.stdout);
      assert.equal(returned, 0, "the sender got nothing back: its close was orderly");
      assert.deepEqual(got, Array.from({ length: accepted }, (_, i) => i), `round ${round}`);
      assert.ok(await ended, "the receiver saw an orderly close");
    }
  });
}

Deno.test("[tcp] a peer whose end of stream never arrives cannot hold a close past its bound", async () => {
  // The proxy keeps the server's FIN from the client: the client's graceful link close waits
  // for it, bounded, and messenger.close() right after must still finish, leaking nothing.
  const server = new Messenger({ name: "b", logger: () => {} });
  const client = new Messenger({ name: "a", logger: () => {} });
  const addr = await server.listen("tcp://127.0.0.1:0");
  const proxy = FaultProxy.start({ targetPort: Number(new URL(addr).port) });
  proxy.holdEnds(true);
  const conn = await client.connect(proxy.addr, { policy: "losslessClient" });
  for (let i = 0; i < 10; i++) await conn.send(i, new Uint8Array(16));
  await take(server, 10);
  const closed = waitEvent(client, "close");
  const serverConn = server.connections()[0];
  await deadline(serverConn.close("bye"), "the server's close");
  await closed;
  await deadline(client.close(), "the client messenger's close", 6_000);
  await deadline(conn.closed(), "the client session to end", 6_000);
  assert.equal(conn.error, null, "an orderly close");
  proxy.close();
  await server.close();
});

Deno.test("[tcp] a close while the application takes no messages reads on and ends in order", async () => {
  // The receiver's reads are paused by inbound back-pressure (its application takes nothing,
  // and far more than the socket buffers hold is on its way) when it begins to close: the
  // close must read on, to the sender's Acks and Close, so it ends in order at once instead of
  // at its (here long) timeout.
  const COUNT = 1000;
  const limits = { logger: () => {}, closeTimeoutMs: 20_000 };
  const receiver = new Messenger({ name: "r", maxInboundMessages: 10, ...limits });
  const sender = new Messenger({ name: "s", ...limits });
  const addr = await receiver.listen("tcp://127.0.0.1:0");
  const conn = await sender.connect(addr, { policy: "losslessClient" });
  for (let i = 0; i < COUNT; i++) await conn.send(i, new Uint8Array(4096));
  const accepted = receiver.connections()[0];
  // Paused: more than the limit delivered and not taken (bounded wait on the counter).
  await deadline(
    (async () => {
      while (accepted.stats.messagesReceived < 10) await new Promise((r) => setTimeout(r, 1));
    })(),
    "the receiver to take in its first messages",
  );
  assert.ok(accepted.stats.messagesReceived < COUNT, "the reader paused before the end");
  await deadline(accepted.close("enough"), "the receiver's close, well before its timeout", 5_000);
  await deadline(conn.closed(), "the sender's session to end", 5_000);
  assert.equal(conn.error, null, "the sender's close was orderly");
  assert.equal(accepted.error, null, "the receiver's close was orderly");
  const got = await take(receiver, COUNT);
  assert.deepEqual(got.map((m) => m.type), Array.from({ length: COUNT }, (_, i) => i));
  await Promise.all([sender.close(), receiver.close()]);
});
