import assert from "node:assert/strict";
import {
  CONNECTION_TRANSITIONS,
  ConnectionClosedError,
  HandshakeRefusedError,
  Messenger,
  TransportError,
} from "../mod.ts";
import { MemoryTransport } from "../testing.ts";
import { bytes, captureLogger, pair, settle, take, waitEvent } from "./_helpers.ts";

const TRANSPORTS = [
  { name: "tcp", addr: "tcp://127.0.0.1:0", opts: () => ({}) },
  {
    name: "mem",
    addr: "mem://server",
    opts: () => ({ transports: [new MemoryTransport()] }),
  },
];

for (const t of TRANSPORTS) {
  Deno.test(`[${t.name}] messages arrive intact, in order, with type, priority and sender`, async () => {
    const transports = t.opts();
    await using p = await pair(t.addr, transports);
    const sizes = [0, 1, 64, 1024, 65_536, 300_000];
    for (let i = 0; i < sizes.length; i++) await p.conn.send(i, bytes(sizes[i], i));
    const got = await take(p.server, sizes.length);
    assert.deepEqual(got.map((m) => m.type), [0, 1, 2, 3, 4, 5]);
    for (let i = 0; i < sizes.length; i++) {
      assert.deepEqual(got[i].payload, bytes(sizes[i], i));
      assert.equal(got[i].priority, "normal");
      assert.equal(got[i].seq, i + 1);
      assert.equal(got[i].connection.peerName, "client");
    }
  });

  Deno.test(`[${t.name}] replies travel back on message.connection`, async () => {
    await using p = await pair(t.addr, t.opts());
    await p.conn.send(1, new TextEncoder().encode("ping"));
    const [m] = await take(p.server, 1);
    await m.connection.send(2, new TextEncoder().encode("pong"));
    const [r] = await take(p.client, 1);
    assert.equal(new TextDecoder().decode(r.payload), "pong");
    assert.equal(r.connection, p.conn);
  });

  Deno.test(`[${t.name}] priorities are strict between levels and FIFO within one`, async () => {
    await using p = await pair(t.addr, t.opts());
    // Queue everything in one synchronous burst so the writer sees all of it at once.
    const order = ["low", "normal", "high"] as const;
    const sends = [];
    for (let i = 0; i < 300; i++) {
      sends.push(p.conn.send(i, bytes(8), { priority: order[i % 3] }));
    }
    await Promise.all(sends);
    const got = await take(p.server, 300);
    const rank = { high: 0, normal: 1, low: 2 };
    for (let i = 1; i < got.length; i++) {
      assert.ok(rank[got[i].priority] >= rank[got[i - 1].priority], `priority order at ${i}`);
      if (got[i].priority === got[i - 1].priority) assert.ok(got[i].type > got[i - 1].type);
    }
  });

  Deno.test(`[${t.name}] close() by the client ends both sides with close events`, async () => {
    const p = await pair(t.addr, t.opts());
    const serverClosed = waitEvent(p.server, "close");
    const clientClosed = waitEvent(p.client, "close");
    await p.conn.send(1, bytes(10));
    await p.conn.close("done here");
    const se = await serverClosed;
    const ce = await clientClosed;
    assert.equal(se.by, "peer");
    assert.equal(se.reason, "done here");
    assert.equal(ce.by, "local");
    assert.equal(p.conn.state, "closed");
    await p.serverConn.closed();
    assert.equal(p.serverConn.state, "closed");
    // The message sent before close() was delivered, not dropped.
    const [m] = await take(p.server, 1);
    assert.equal(m.type, 1);
    await assert.rejects(p.conn.send(2, bytes(1)), ConnectionClosedError);
    await p.client.close();
    await p.server.close();
  });

  Deno.test(`[${t.name}] close() by the server side ends the client's session too`, async () => {
    const p = await pair(t.addr, t.opts());
    const clientClosed = waitEvent(p.client, "close");
    await p.serverConn.close("server going away");
    const ce = await clientClosed;
    assert.equal(ce.by, "peer");
    assert.equal(ce.reason, "server going away");
    assert.equal(p.client.connections().length, 0);
    await p.client.close();
    await p.server.close();
  });

  Deno.test(`[${t.name}] connect() returns the one connection per peer address`, async () => {
    await using p = await pair(t.addr, t.opts());
    const again = await p.client.connect(p.addr);
    assert.equal(again, p.conn);
    const [x, y] = await Promise.all([p.client.connect(p.addr), p.client.connect(p.addr)]);
    assert.equal(x, y);
  });

  Deno.test(`[${t.name}] a refused handshake names the field and both values`, async () => {
    const transports = t.opts();
    const server = new Messenger({
      name: "s",
      heartbeat: { intervalMs: 1000 },
      logger: captureLogger().log,
      ...transports,
    });
    const addr = await server.listen(t.addr);
    for (
      const [opts, field] of [
        [{ heartbeat: { intervalMs: 2000 } }, "heartbeat.intervalMs"],
        [{ heartbeat: { mode: "local" as const } }, "heartbeat.mode"],
        [{ cluster: "other" }, "cluster"],
      ] as const
    ) {
      const log = captureLogger();
      const client = new Messenger({ name: "c", logger: log.log, ...transports, ...opts });
      const serverError = waitEvent(server, "error");
      await assert.rejects(client.connect(addr), (e) => {
        assert.ok(e instanceof HandshakeRefusedError, String(e));
        assert.equal(e.field, field);
        assert.match(e.message, /local .*, peer /);
        return true;
      });
      const se = await serverError;
      assert.ok(se.error instanceof HandshakeRefusedError);
      assert.equal(log.lines.filter((l) => l.includes("differs")).length, 1);
      await client.close();
    }
    assert.equal(server.health().connections.open, 0);
    await server.close();
  });
}

Deno.test("[mem] a cut link resets both ends and reports queued messages as unsent", async () => {
  const net = new MemoryTransport();
  // A queue that holds all 200 sends (3.2 MiB): none is refused, so the unsent are the tail.
  await using p = await pair("mem://server", { transports: [net], maxQueueBytes: 4 << 20 });
  const clientReset = waitEvent(p.client, "reset");
  const serverReset = waitEvent(p.server, "reset");
  // Stall the server's reads so messages back up in the client's queue, then cut.
  net.links[0].peer.stallReads(true);
  const sends = [];
  for (let i = 0; i < 200; i++) sends.push(p.conn.send(i, bytes(16_384)).catch(() => {}));
  await new Promise((r) => setTimeout(r, 0));
  net.links[0].cut();
  const ce = await clientReset;
  const se = await serverReset;
  assert.ok(ce.error instanceof TransportError);
  assert.ok(se.error instanceof TransportError);
  assert.ok(ce.unsent.length > 0, "some messages were still queued");
  assert.ok(ce.unsent.length < 200, "some messages were written");
  // Unsent are the tail, in order.
  const types = ce.unsent.map((u) => u.type);
  assert.deepEqual(types, Array.from({ length: types.length }, (_, i) => 200 - types.length + i));
  assert.equal(p.conn.state, "closed");
  await assert.rejects(p.conn.send(1, bytes(1)), ConnectionClosedError);
  await Promise.all(sends);
});

Deno.test("[mem] send() applies back-pressure at the queue limit and resumes", async () => {
  const net = new MemoryTransport();
  await using p = await pair("mem://server", { transports: [net], maxQueueBytes: 64 * 1024 });
  net.links[0].peer.stallReads(true);
  let accepted = 0;
  const writer = (async () => {
    for (let i = 0; i < 400; i++) {
      const s = p.conn.send(i, bytes(8192));
      accepted++;
      await s;
    }
  })();
  // In-memory I/O is promise chains only: once it settles, the writer is where it stays.
  await settle();
  // The transport took its 1 MiB (128 messages and more), the queue its 64 KiB, then send()
  // made the writer wait.
  assert.ok(accepted >= 128 && accepted < 400, `the sender stopped after ${accepted} messages`);
  await settle();
  const stuckAt = accepted;
  await settle();
  assert.equal(accepted, stuckAt, "the sender stays blocked while the reader is stalled");
  assert.ok(p.conn.queuedBytes <= 64 * 1024 + 8192 + 36, `queued ${p.conn.queuedBytes}`);
  net.links[0].peer.stallReads(false);
  const got = await take(p.server, 400);
  await writer;
  assert.equal(got.length, 400);
  assert.equal(got[399].type, 399);
});

Deno.test("[mem] received messages pile up to the inbound limit, then reading pauses", async () => {
  const net = new MemoryTransport();
  await using p = await pair("mem://server", {
    transports: [net],
    maxInboundMessages: 100,
    maxQueueBytes: 4 << 20, // the sender queues all 2,000 without waiting
  });
  for (let i = 0; i < 2000; i++) p.conn.send(i, bytes(512));
  // Nobody consumes on the server; let the in-memory I/O settle.
  await settle();
  assert.ok(net.links[0].peer.unreadBytes > 0, "the server stopped reading its link");
  const got = await take(p.server, 2000);
  assert.deepEqual(got.map((m) => m.type), Array.from({ length: 2000 }, (_, i) => i));
});

Deno.test("connection state machine: the docs table matches CONNECTION_TRANSITIONS", async () => {
  const doc = await Deno.readTextFile(new URL("../docs/state-machine.md", import.meta.url));
  const rows = [...doc.matchAll(/^\|\s*`(\w+)`\s*\|(.*?)\|/gm)];
  const table: Record<string, string[]> = {};
  for (const [, from, tos] of rows) {
    table[from] = [...tos.matchAll(/`(\w+)`/g)].map((m) => m[1]).sort();
  }
  const code = Object.fromEntries(
    Object.entries(CONNECTION_TRANSITIONS).map(([k, v]) => [k, [...v].sort()]),
  );
  assert.deepEqual(table, code);
});

Deno.test("[tcp] a connection walks connecting -> handshaking -> open -> closing -> closed", async () => {
  const server = new Messenger({ name: "s", logger: captureLogger().log });
  const addr = await server.listen("tcp://127.0.0.1:0");
  const client = new Messenger({ name: "c", logger: captureLogger().log });
  const pending = client.connect(addr);
  const [conn0] = client.connections();
  const seen = [conn0.state];
  await pending;
  seen.push(conn0.state);
  const closing = conn0.close();
  seen.push(conn0.state);
  await closing;
  seen.push(conn0.state);
  assert.deepEqual(seen, ["connecting", "open", "closing", "closed"]);
  for (let i = 1; i < seen.length; i++) {
    // Each observed step is reachable through the legal transitions.
    assert.ok(reachable(seen[i - 1], seen[i]), `${seen[i - 1]} -> ${seen[i]}`);
  }
  await client.close();
  await server.close();
});

function reachable(from: string, to: string): boolean {
  const t = CONNECTION_TRANSITIONS as Record<string, readonly string[]>;
  const seen = new Set([from]);
  const queue = [from];
  while (queue.length) {
    const s = queue.shift()!;
    if (s === to) return true;
    for (const n of t[s]) if (!seen.has(n)) seen.add(n), queue.push(n);
  }
  return false;
}

Deno.test("[tcp] dialing a closed port fails with TransportError and leaves nothing behind", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = probe.addr.port;
  probe.close();
  const client = new Messenger({ logger: captureLogger().log });
  await assert.rejects(client.connect(`tcp://127.0.0.1:${port}`), TransportError);
  assert.equal(client.connections().length, 0);
  await client.close();
});

Deno.test("Messenger rejects bad options and addresses with clear errors", async () => {
  assert.throws(() => new Messenger({ maxFrameBytes: 0 }), RangeError);
  assert.throws(() => new Messenger({ heartbeat: { intervalMs: -1 } }), RangeError);
  const m = new Messenger({ logger: captureLogger().log });
  await assert.rejects(m.listen("udp://127.0.0.1:1"), TypeError);
  await assert.rejects(m.connect("tcp://127.0.0.1"), TypeError);
  await m.close();
  await assert.rejects(m.listen("tcp://127.0.0.1:0"), ConnectionClosedError);
});

Deno.test("[tcp] IPv6 loopback works", async () => {
  await using p = await pair("tcp://[::1]:0");
  assert.match(p.addr, /^tcp:\/\/\[::1\]:\d+$/);
  await p.conn.send(3, bytes(3));
  const [m] = await take(p.server, 1);
  assert.equal(m.type, 3);
});

Deno.test("connect() with another policy to the same address opens its own session", async () => {
  const quiet = { logger: captureLogger().log };
  await using b = new Messenger({ name: "b", ...quiet });
  await using a = new Messenger({ name: "a", ...quiet });
  const addr = await b.listen("tcp://127.0.0.1:0");
  const lossless = await a.connect(addr, { policy: "losslessPeer", expectName: "b" });
  const lossy = await a.connect(addr, { policy: "lossyClient", expectName: "b" });
  assert.notEqual(lossy, lossless, "a lossy call does not get the lossless session");
  assert.equal(lossy.policy.name, "lossyClient");
  assert.equal(lossless.policy.name, "losslessPeer");
  // And the same policy again gets the same connection.
  assert.equal(await a.connect(addr, { policy: "lossyClient" }), lossy);
  assert.equal(await a.connect(addr, { policy: "losslessPeer", expectName: "b" }), lossless);
  assert.equal(a.connections().length, 2);
  // A second lossless policy to the same node is refused up front: one lossless session per
  // pair (the accepting side finds it by name), and the existing one is left alone.
  await assert.rejects(a.connect(addr, { policy: "losslessClient" }), TypeError);
  assert.equal(lossless.state, "open");
  assert.equal(a.connections().length, 2);
});
