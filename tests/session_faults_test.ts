// Regression tests for the session faults listed in the session-core issue (defects 2-11):
// restarts mid-reconnect, the health view of a restarted peer, async OOB handlers, a lying
// resume, local watchers ended by a signal, aborted dials, lost races, protocol checks and what
// a remote reset hands back. Memory transport and a manual clock: no real waiting.

import assert from "node:assert/strict";
import {
  type Connection,
  FrameError,
  HandshakeRefusedError,
  type Link,
  Messenger,
  type MessengerOptions,
  type NodeEvent,
  type Transport,
} from "../mod.ts";
import { ManualClock, MemoryTransport } from "../testing.ts";
import { sessionOf } from "../src/connection.ts";
import { BANNER, encodeFrame, FrameDecoder, Tag } from "../src/protocol/frame.ts";
import { decodeHello, encodeJson, type Hello } from "../src/protocol/handshake.ts";
import { encodeAck } from "../src/protocol/control.ts";
import { advanceSettling, deadline, rawHello, settle, take, waitEvent } from "./_helpers.ts";
import { unhandledRejections } from "./_guard.ts";

/** A small in-memory cluster on one manual clock. */
function cluster(options: MessengerOptions = {}) {
  const clock = new ManualClock(0);
  const net = new MemoryTransport();
  const logs: string[] = [];
  const make = (name: string, extra: MessengerOptions = {}) =>
    new Messenger({
      name,
      clock,
      transports: [net],
      logger: (level, message) => logs.push(`${name} ${level}: ${message}`),
      ...options,
      ...extra,
    });
  return {
    clock,
    net,
    logs,
    make,
    /** Moves virtual time in steps, letting in-memory I/O settle after each. */
    run: (ms: number, step = 50) => advanceSettling(clock, ms, step),
    /** A crash: every link is cut (no Close frame goes out), then the messenger is dropped. */
    async crash(m: Messenger) {
      for (const link of net.links) link.cut();
      await settle();
      await deadline(m.close(), `${m.name} to close after its links were cut`);
    },
  };
}

/** Collects the events of a messenger from now on. */
function record(m: Messenger) {
  const events: { kind: string; [k: string]: unknown }[] = [];
  (async () => {
    for await (const e of m.events()) events.push(e as unknown as { kind: string });
  })();
  return events;
}

function noIllegalTransitions(logs: string[]): void {
  assert.deepEqual(logs.filter((l) => /Illegal/.test(l)), []);
  assert.deepEqual(unhandledRejections, []);
}

Deno.test("a lossless peer restarts and dials in while the survivor is reconnecting: no crash, remote-reset, one session", async () => {
  const c = cluster({ reconnectBaseMs: 1000, reconnectMaxMs: 1000 });
  const a = c.make("a"), b1 = c.make("b");
  await a.listen("mem://a");
  await b1.listen("mem://b");
  const conn = await a.connect("mem://b", { policy: "losslessPeer" });
  await conn.send(1, new Uint8Array([1]));
  await take(b1, 1);
  const events = record(a);
  await c.crash(b1);
  assert.equal(conn.state, "reconnecting");
  const b2 = c.make("b");
  await b2.listen("mem://b");
  const back = await deadline(b2.connect("mem://a", { policy: "losslessPeer" }), "b2 to connect");
  await settle();
  assert.equal(back.state, "open");
  assert.equal(conn.state, "open", "the survivor's session took the restarted peer's link");
  assert.equal(conn.peerNonce, b2.nonce);
  assert.ok(events.some((e) => e.kind === "remote-reset"), "the survivor was told of the reset");
  // The pending redial was cancelled: time passes and the session stays the one link.
  await c.run(3000);
  assert.equal(conn.state, "open");
  assert.equal(b2.connections().length, 1);
  await conn.send(2, new Uint8Array([2]));
  const [m] = await take(b2, 1);
  assert.equal(m.type, 2);
  assert.equal(m.seq, 1, "the new incarnation starts a new sequence");
  noIllegalTransitions(c.logs);
  await a.close();
  await b2.close();
});

for (const side of ["server", "client"] as const) {
  Deno.test(`after a ${side} restart the survivor's health view shows the new incarnation and watch() says restarted`, async () => {
    const c = cluster({ reconnectBaseMs: 10, reconnectMaxMs: 10 });
    const server1 = c.make("server"), client1 = c.make("client");
    await server1.listen("mem://server");
    const conn = await client1.connect("mem://server", { policy: "losslessClient" });
    const survivor = side === "server" ? client1 : server1;
    const seen: NodeEvent[] = [];
    const ac = new AbortController();
    (async () => {
      for await (const e of survivor.watch("default", { signal: ac.signal })) seen.push(e);
    })();
    await settle();
    let restarted: Messenger;
    if (side === "server") {
      await c.crash(server1);
      restarted = c.make("server");
      await restarted.listen("mem://server");
      await c.run(200);
      assert.equal(conn.state, "open");
    } else {
      await c.crash(client1);
      restarted = c.make("client");
      await restarted.connect("mem://server", { policy: "losslessClient" });
      await settle();
    }
    const peerName = side === "server" ? "server" : "client";
    const info = survivor.peers().find((p) => p.name === peerName);
    assert.equal(info?.nonce, restarted.nonce, "peers() shows the new incarnation");
    assert.equal(info?.state, "up");
    assert.ok(
      seen.some((e) => e.peer === peerName && e.state === "up" && e.reason === "restarted"),
      `watch() reported restarted: ${JSON.stringify(seen.map((e) => e.reason))}`,
    );
    ac.abort();
    noIllegalTransitions(c.logs);
    await survivor.close();
    await restarted.close();
  });
}

Deno.test("an async onOob handler that rejects is contained and counted", async () => {
  const c = cluster();
  const a = c.make("a"), b = c.make("b");
  await a.listen("mem://a");
  const conn = await b.connect("mem://a");
  let calls = 0;
  a.onOob("Async", async () => {
    calls++;
    await Promise.resolve();
    throw new Error("async handler failed");
  });
  conn.registerOob("Async", () => new Uint8Array([1]), { intervalMs: 100 });
  await c.run(350);
  await settle();
  assert.ok(calls >= 2, `handler called ${calls} times`);
  assert.ok(a.oobStats.errors >= calls, `errors counted: ${a.oobStats.errors}`);
  assert.deepEqual(unhandledRejections, []);
  assert.equal(a.connections()[0].state, "open");
  await b.close();
  await a.close();
});

/** Dials `addr` on `net` and speaks raw frames. */
async function rawPeer(net: Transport, addr: string) {
  const link: Link = await net.connect(addr);
  const frames: { tag: number; payload: Uint8Array }[] = [];
  let ended = false, challenge: string | null = null;
  const decoder = new FrameDecoder({ maxFrameBytes: 1 << 20 });
  (async () => {
    try {
      for (;;) {
        const chunk = await link.read();
        if (chunk === null) break;
        decoder.push(chunk, (tag, _f, payload) => {
          // The accepting side's Challenge comes first; these raw peers do not authenticate.
          if (tag === Tag.Challenge) challenge = new TextDecoder().decode(payload);
          else frames.push({ tag, payload: payload.slice() });
        });
      }
    } catch { /* a cut */ }
    ended = true;
  })();
  return {
    link,
    frames,
    get ended() {
      return ended;
    },
    /** The accepting side's challenge on this link, once it arrived. */
    get challenge() {
      return challenge;
    },
    send: (tag: number, body: Uint8Array, banner = false) =>
      link.write(banner ? [BANNER, encodeFrame(tag, body)] : [encodeFrame(tag, body)]),
  };
}

Deno.test("a resume hello claiming more than was sent is refused; the session stays and resumes with its client", async () => {
  const c = cluster({ reconnectBaseMs: 2000, reconnectMaxMs: 2000, sessionTimeoutMs: 10_000 });
  const server = c.make("server"), client = c.make("client");
  await server.listen("mem://server");
  const conn = await client.connect("mem://server", { policy: "losslessClient" });
  for (let i = 0; i < 3; i++) await conn.send(i, new Uint8Array([i]));
  await take(server, 3);
  const session = server.connections()[0];
  c.net.links[0].cut();
  await settle();
  assert.equal(session.state, "standby");
  const errors = record(server);
  const lie = async (
    hello: (challenge: string) => Hello,
    expected: typeof FrameError | typeof HandshakeRefusedError,
  ) => {
    const raw = await rawPeer(c.net, "mem://server");
    await c.run(10);
    assert.ok(raw.challenge, "the server's challenge arrived");
    await raw.send(Tag.Hello, encodeJson(hello(raw.challenge)), true);
    await c.run(100);
    assert.ok(raw.ended, "the lying link was closed");
    const err = errors.findLast((e) => e.kind === "error")?.error;
    assert.ok(err instanceof expected, `typed error: ${err}`);
  };
  const hello = rawHello({
    name: "client",
    nonce: client.nonce,
    policy: "losslessClient",
    resumeNonce: server.nonce,
    session: sessionOf(conn).sequence.id!, // it knows the session
    challenge: "ab".repeat(16),
  });
  // Without the session's secret, naming the session is not enough to resume it.
  await lie(() => hello, HandshakeRefusedError);
  assert.equal(session.state, "standby", "the session was left as it was");
  // With the secret (proved over this link's challenges), its claim is still checked.
  const proven = (challenge: string): Hello => ({
    ...hello,
    inSeq: 999,
    resumeProof: sessionOf(conn).sequence.resumeProof("hello", challenge, hello.challenge),
  });
  await lie(proven, FrameError);
  assert.equal(session.state, "standby", "the session was left as it was");
  // The real client comes back and resumes; everything sent meanwhile arrives once.
  await conn.send(3, new Uint8Array([3]));
  const resumed = waitEvent(client, "resume");
  await c.run(2500);
  await resumed;
  const [m] = await take(server, 1);
  assert.equal(m.type, 3);
  assert.equal(session.state, "open");
  noIllegalTransitions(c.logs);
  await client.close();
  await server.close();
});

Deno.test("a local-mode watch() ended by its AbortSignal drops its watcher and its heartbeats", async () => {
  const c = cluster({ heartbeat: { mode: "local" } });
  const a = c.make("a"), b = c.make("b");
  await a.listen("mem://a");
  await b.connect("mem://a");
  await settle();
  const before = a.oobStats.registrations;
  const ac = new AbortController();
  const done = (async () => {
    for await (const _ of a.watch("w1", { signal: ac.signal })) { /* events */ }
  })();
  await settle();
  assert.equal(a.oobStats.registrations, before + 1, "the watcher registered on the link");
  ac.abort();
  await deadline(done, "the watch loop to end");
  await settle();
  assert.equal(a.oobStats.registrations, before, "its registration was cancelled");
  await b.close();
  await a.close();
});

Deno.test("connect() with an aborted signal rejects with its reason and leaves nothing", async () => {
  const c = cluster();
  const a = c.make("a"), b = c.make("b");
  await a.listen("mem://a");
  const reason = new Error("not now");
  await assert.rejects(b.connect("mem://a", { signal: AbortSignal.abort(reason) }), (e) => {
    assert.equal(e, reason);
    return true;
  });
  assert.equal(b.connections().length, 0);
  await settle();
  assert.equal(a.connections().length, 0);
  await b.close();
  await a.close();
});

Deno.test("a lossless redial to a blackholed address is bounded by the handshake timeout", async () => {
  const c = cluster({ reconnectBaseMs: 10, reconnectMaxMs: 10, handshakeTimeoutMs: 500 });
  const server = c.make("server");
  await server.listen("mem://server");
  let dials = 0, aborted = 0, blackhole = false;
  // A dial into a blackhole never completes until it is aborted (a mock: no real address can
  // be blackholed on loopback).
  const transport: Transport = {
    schemes: ["mem"],
    listen: (addr) => c.net.listen(addr),
    connect(addr, options) {
      dials++;
      if (!blackhole) return c.net.connect(addr);
      return new Promise((_, reject) => {
        options?.signal?.addEventListener("abort", () => {
          aborted++;
          reject(options.signal!.reason);
        }, { once: true });
      });
    },
  };
  const client = c.make("client", { transports: [transport] });
  const conn = await client.connect("mem://server", { policy: "losslessClient" });
  blackhole = true;
  c.net.links[0].cut();
  await c.run(2000);
  assert.ok(dials >= 3, `redialed ${dials} times`);
  assert.ok(aborted >= 2, `each blackholed redial was aborted (${aborted})`);
  assert.ok(conn.state === "reconnecting" || conn.state === "connecting");
  await client.close();
  await server.close();
});

Deno.test("a dial that loses a race while still dialing resolves to the winning session", async () => {
  const c = cluster();
  const a = c.make("a");
  // b's dials wait at a gate, so a's dial (which wins: "a" sorts first) reaches b first.
  let open!: () => void;
  const gate = new Promise<void>((r) => open = r);
  const gated: Transport = {
    schemes: ["mem"],
    listen: (addr) => c.net.listen(addr),
    async connect(addr, options) {
      await gate;
      options?.signal?.throwIfAborted();
      return c.net.connect(addr);
    },
  };
  const b = c.make("b", { transports: [gated] });
  await a.listen("mem://a");
  await b.listen("mem://b");
  const fromB = b.connect("mem://a", { policy: "losslessPeer" });
  await settle();
  const fromA = await deadline(a.connect("mem://b", { policy: "losslessPeer" }), "a's dial");
  await settle();
  open();
  const got = await deadline(fromB, "b's dial to settle");
  assert.equal(got.state, "open");
  assert.equal(got.peerName, "a");
  assert.equal(b.connections().filter((x) => x.state === "open").length, 1);
  assert.equal(fromA.state, "open");
  await a.close();
  await b.close();
});

Deno.test("a lossy session closes on an ack above the highest seq sent", async () => {
  const c = cluster();
  const server = c.make("server");
  await server.listen("mem://server");
  const events = record(server);
  const raw = await rawPeer(c.net, "mem://server");
  await raw.send(Tag.Hello, encodeJson(rawHello({ name: "raw" })), true);
  await settle();
  assert.equal(raw.frames[0]?.tag, Tag.Welcome);
  await raw.send(Tag.Ack, encodeAck(5));
  await settle();
  assert.ok(raw.ended, "the link was closed");
  const reset = events.find((e) => e.kind === "reset");
  assert.ok(reset?.error instanceof FrameError);
  assert.equal((reset.error as FrameError).reason, "unexpected");
  await server.close();
});

Deno.test("the Welcome of a new lossless session says resumed: false", async () => {
  const c = cluster();
  const server = c.make("server");
  await server.listen("mem://server");
  const raw = await rawPeer(c.net, "mem://server");
  await raw.send(Tag.Hello, encodeJson(rawHello({ policy: "losslessClient" })), true);
  await settle();
  assert.equal(raw.frames[0]?.tag, Tag.Welcome);
  assert.equal(decodeHello(raw.frames[0].payload).resumed, false);
  raw.link.close();
  await c.run(100);
  await server.close();
});

Deno.test("a refusal seen by the dialer names the field and both values", async () => {
  const c = cluster();
  const server = c.make("server", { heartbeat: { intervalMs: 500 } });
  const client = c.make("client");
  await server.listen("mem://server");
  await assert.rejects(client.connect("mem://server"), (e) => {
    assert.ok(e instanceof HandshakeRefusedError);
    assert.equal(e.field, "heartbeat.intervalMs");
    assert.equal(e.local, 1000, "the dialer's own value");
    assert.equal(e.peer, 500, "the refusing peer's value");
    return true;
  });
  await client.close();
  await server.close();
});

Deno.test("a remote reset hands back the unacknowledged messages", async () => {
  const c = cluster({ reconnectBaseMs: 10, reconnectMaxMs: 10 });
  const server1 = c.make("server"), client = c.make("client");
  await server1.listen("mem://server");
  const conn: Connection = await client.connect("mem://server", { policy: "losslessClient" });
  c.net.links[0].peer.stallReads(true);
  for (let i = 0; i < 4; i++) await conn.send(100 + i, new Uint8Array([i]), { priority: "low" });
  await settle();
  assert.equal(conn.unackedMessages, 4);
  const reset = waitEvent(client, "remote-reset");
  await c.crash(server1);
  const server2 = c.make("server");
  await server2.listen("mem://server");
  await c.run(200);
  const ev = await reset;
  assert.equal(ev.lost, 4);
  assert.deepEqual(ev.unacked.map((m) => m.type), [100, 101, 102, 103]);
  assert.deepEqual(ev.unacked.map((m) => m.priority), ["low", "low", "low", "low"]);
  assert.deepEqual([...ev.unacked[2].payload], [2]);
  await client.close();
  await server2.close();
});
