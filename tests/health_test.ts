// Failure detection, node events and the heartbeat handshake. Injected clock wherever the
// timing is the point; real processes for the crash.

import assert from "node:assert/strict";
import {
  HandshakeRefusedError,
  Messenger,
  type MessengerOptions,
  type NodeEvent,
  PhiAccrualDetector,
  silenceToDownMs,
} from "../mod.ts";
import { ManualClock, MemoryTransport } from "../testing.ts";
import { GraceDetector, makeDetector } from "../src/health/detector.ts";
import { captureLogger, manualPair } from "./_helpers.ts";
import { FaultProxy } from "./fault_proxy.ts";

const FAST = { intervalMs: 100, acceptablePauseMs: 200, minStdDevMs: 20 };
const BOUND_SETTINGS = {
  detector: "phi" as const,
  phiThreshold: 8,
  graceMs: 5000,
  ...FAST,
};

/** Collects events from an async iterable in the background. */
type Collected = NodeEvent[] & {
  /** Resolves with the first event (seen or to come) that matches; fails after 10 s. */
  until(pred: (e: NodeEvent) => boolean): Promise<NodeEvent>;
};

function collect(it: AsyncIterable<NodeEvent>): Collected {
  const waiters = new Set<() => void>();
  const out = Object.assign([] as NodeEvent[], {
    until(pred: (e: NodeEvent) => boolean): Promise<NodeEvent> {
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = out.find(pred);
          if (!hit) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(hit);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching event among ${out.length}`));
        }, 10_000);
        waiters.add(check);
        check();
      });
    },
  });
  (async () => {
    for await (const e of it) {
      out.push(e);
      for (const check of [...waiters]) check();
    }
  })();
  return out;
}

async function cluster(extra: Partial<MessengerOptions> = {}) {
  const p = await manualPair({ heartbeat: FAST, ...extra }, ["a", "b"]);
  const run = (ms: number, step = 10) => p.run(ms, step);
  return { ...p, a: p.client, b: p.server, run };
}

Deno.test("PhiAccrualDetector: phi grows with silence and crosses the threshold at the bound", () => {
  const d = new PhiAccrualDetector(FAST);
  for (let t = 0; t <= 5000; t += 100) d.heartbeat(t);
  const bound = silenceToDownMs(BOUND_SETTINGS);
  assert.ok(d.phi(5000 + 100) < 1, `phi on time ${d.phi(5100)}`);
  assert.ok(d.phi(5000 + bound - 5) < 8);
  assert.ok(d.phi(5000 + bound + 5) >= 8);
  assert.ok(d.phi(5000 + 2 * bound) > d.phi(5000 + bound));
  // Jittery arrivals widen the deviation, so the same silence is less suspicious.
  const jittery = new PhiAccrualDetector(FAST);
  for (let t = 0, i = 0; i < 50; i++) jittery.heartbeat(t += i % 2 ? 40 : 160);
  assert.ok(jittery.phi(jittery.lastArrival + 450) < d.phi(d.lastArrival + 450));
});

Deno.test("PhiAccrualDetector: an outage is not learnt, so the next one is detected as fast", () => {
  const bound = silenceToDownMs(BOUND_SETTINGS);
  const make = () => makeDetector({ ...BOUND_SETTINGS, detector: "phi" }) as PhiAccrualDetector;
  const downAfter = (d: PhiAccrualDetector, from: number) => {
    let t = from;
    while (d.phi(t) < 8) t += 5;
    return t - from;
  };
  const steady = make(), outaged = make(), learning = new PhiAccrualDetector(FAST);
  for (let t = 0; t <= 5000; t += 100) [steady, outaged, learning].forEach((d) => d.heartbeat(t));
  // A 5 s outage, then heartbeats again for a while.
  for (let t = 10_000; t <= 15_000; t += 100) [outaged, learning].forEach((d) => d.heartbeat(t));
  const before = downAfter(steady, 5000), after = downAfter(outaged, 15_000);
  assert.ok(Math.abs(after - before) <= 10, `detected after ${after} ms, before ${before} ms`);
  assert.ok(before <= bound + 10);
  // A detector that learns every interval (no cap) is slowed down by the outage.
  assert.ok(downAfter(learning, 15_000) > 2 * before, "an uncapped detector learns the outage");
});

Deno.test("GraceDetector: down after exactly the grace", () => {
  const d = new GraceDetector({ graceMs: 500, phiThreshold: 8 });
  d.heartbeat(1000);
  assert.ok(d.phi(1499) < 8);
  assert.ok(d.phi(1500) >= 8);
});

Deno.test("a blackholed link is reported down within the bound on both ends", async () => {
  await using c = await cluster();
  const eventsA = collect(c.a.watch());
  const eventsB = collect(c.b.watch());
  await c.run(2000); // steady heartbeats, no false suspicion
  assert.equal(eventsA.filter((e) => e.state !== "up").length, 0);
  const link = c.net.links[0];
  link.stallReads(true);
  link.peer.stallReads(true);
  const cutAt = c.clock.now();
  await c.run(2000);
  const bound = silenceToDownMs(BOUND_SETTINGS) + c.a.timers.tickMs + 100 / 4;
  for (const [events, peer] of [[eventsA, "b"], [eventsB, "a"]] as const) {
    const down = events.find((e) => e.state === "down");
    assert.ok(down, `down event for ${peer}`);
    assert.equal(down.peer, peer);
    assert.ok(down.at - cutAt <= bound, `detected after ${down.at - cutAt} ms, bound ${bound}`);
    assert.ok(down.at - cutAt >= silenceToDownMs(BOUND_SETTINGS) - 100, "not before the bound");
    assert.ok(down.phi >= 8);
  }
  // Suspect comes first (optional state), then down; and back up when the link heals.
  assert.deepEqual(eventsA.map((e) => `${e.state}:${e.reason}`), [
    "up:current",
    "suspect:silent",
    "down:silent",
  ]);
  link.stallReads(false);
  link.peer.stallReads(false);
  await c.run(500);
  assert.equal(eventsA.at(-1)?.state, "up");
  assert.equal(c.a.peers()[0].state, "up");
});

Deno.test("a peer that stops reading its data socket is reported down: the heartbeat is stuck behind the data", async () => {
  await using c = await cluster();
  // The old design for comparison: a heartbeat-only connection between the same nodes,
  // on its own link (no data ever flows on it).
  const heartbeatOnly = (name: string) =>
    new Messenger({ name, clock: c.clock, transports: [c.net], heartbeat: FAST, logger: () => {} });
  const hbA = heartbeatOnly("a");
  const hbB = heartbeatOnly("b");
  await hbB.listen("mem://b-heartbeat");
  await hbA.connect("mem://b-heartbeat");
  const dataView = collect(c.a.watch());
  const separateView = collect(hbA.watch());
  await c.run(1000);
  // b stops reading its data socket; a keeps sending data to it.
  c.net.links[0].peer.stallReads(true);
  const stalledAt = c.clock.now();
  for (let i = 0; i < 500; i++) c.conn.send(1, new Uint8Array(16 * 1024)).catch(() => {});
  await c.run(2000);
  const down = dataView.find((e) => e.state === "down");
  assert.ok(down, "the in-band heartbeat reports b down");
  assert.equal(down.reason, "not-echoing");
  // The last echo can arrive one interval after the stall (b echoes what it read before).
  const bound = silenceToDownMs(BOUND_SETTINGS) + 100 + 5 + 25;
  assert.ok(down.at - stalledAt <= bound, `after ${down.at - stalledAt} ms`);
  assert.ok(
    separateView.every((e) => e.state === "up"),
    "a separate heartbeat socket keeps saying up although b reads no data",
  );
  assert.equal(hbA.peers()[0].state, "up");
  c.net.links[0].peer.stallReads(false);
  await c.run(100);
  await hbA.close();
  await hbB.close();
});

Deno.test("global mode: 1,000 subscribers cost no more heartbeat frames than one", async () => {
  await using c = await cluster();
  const one = collect(c.a.watch("first"));
  const f0 = c.a.oobStats.heartbeatFramesSent;
  await c.run(2000, 50);
  const withOne = c.a.oobStats.heartbeatFramesSent - f0;
  const many = Array.from({ length: 999 }, (_, i) => collect(c.a.watch(`w${i}`)));
  const f1 = c.a.oobStats.heartbeatFramesSent;
  await c.run(2000, 50);
  const withThousand = c.a.oobStats.heartbeatFramesSent - f1;
  assert.equal(withThousand, withOne);
  assert.equal(withOne, 20); // one frame per 100 ms
  c.net.links[0].cut();
  await c.run(100);
  for (const events of [one, ...many]) {
    assert.equal(events.at(-1)?.state, "down");
    assert.equal(events.at(-1)?.reason, "reset");
  }
});

Deno.test("local mode: each watcher heartbeats with its own op and detector", async () => {
  await using c = await cluster({ heartbeat: { ...FAST, mode: "local" } });
  const fastA = collect(c.a.watch("fast", { intervalMs: 100 }));
  collect(c.b.watch("fast", { intervalMs: 100 }));
  const slowA = collect(c.a.watch("slow", { intervalMs: 500 }));
  collect(c.b.watch("slow", { intervalMs: 500 }));
  const parts0 = c.a.oobStats.partsSent.get("heartline.local.fast") ?? 0;
  await c.run(2000, 50);
  const fastParts = (c.a.oobStats.partsSent.get("heartline.local.fast") ?? 0) - parts0;
  const slowParts = c.a.oobStats.partsSent.get("heartline.local.slow") ?? 0;
  assert.ok(fastParts >= 19 && fastParts <= 21, `fast watcher sent ${fastParts} parts`);
  assert.ok(slowParts >= 3 && slowParts <= 5, `slow watcher sent ${slowParts} parts`);
  assert.deepEqual(c.a.peers()[0].watchers, { fast: "up", slow: "up" });
  c.net.links[0].stallReads(true);
  c.net.links[0].peer.stallReads(true);
  const cutAt = c.clock.now();
  await c.run(3000, 50);
  const fastDown = fastA.find((e) => e.state === "down")!;
  const slowDown = slowA.find((e) => e.state === "down")!;
  assert.ok(fastDown && slowDown);
  assert.equal(fastDown.watcher, "fast");
  // Each detector follows its own interval: the slow watcher takes longer to decide.
  assert.ok(fastDown.at - cutAt < slowDown.at - cutAt);
  assert.ok(fastDown.at - cutAt <= silenceToDownMs(BOUND_SETTINGS) + 100);
});

Deno.test("the handshake refuses each mismatched heartbeat setting, naming it", async () => {
  const net = new MemoryTransport();
  const server = new Messenger({ name: "s", transports: [net], logger: () => {} });
  await server.listen("mem://s");
  const cases: [Partial<MessengerOptions>, string, string][] = [
    [{ heartbeat: { intervalMs: 2000 } }, "heartbeat.intervalMs", "local 2000, peer 1000"],
    [{ heartbeat: { mode: "local" } }, "heartbeat.mode", "local local, peer global"],
    [{ heartbeat: { detector: "grace" } }, "heartbeat.detector", "local grace, peer phi"],
    [{ heartbeat: { phiThreshold: 10 } }, "heartbeat.phiThreshold", "local 10, peer 8"],
    [{ heartbeat: { acceptablePauseMs: 1 } }, "heartbeat.acceptablePauseMs", "local 1, peer"],
    [{ heartbeat: { minStdDevMs: 7 } }, "heartbeat.minStdDevMs", "local 7, peer 100"],
    [{ heartbeat: { graceMs: 9 } }, "heartbeat.graceMs", "local 9, peer 5000"],
    // The cluster id is not disclosed to whoever dials in.
    [{ cluster: "elsewhere" }, "cluster", "local elsewhere, peer not disclosed"],
  ];
  for (const [opts, field, values] of cases) {
    const c = new Messenger({ name: "c", transports: [net], logger: () => {}, ...opts });
    await assert.rejects(c.connect("mem://s"), (e) => {
      assert.ok(e instanceof HandshakeRefusedError);
      assert.equal(e.field, field);
      assert.ok(e.message.includes(`${field} differs: ${values}`), e.message);
      assert.ok(field !== "cluster" || !e.message.includes("heartline"), e.message);
      return true;
    });
    await c.close();
  }
  await server.close();
});

Deno.test("a refused peer is not redialed in a storm", async () => {
  const net = new MemoryTransport();
  const clock = new ManualClock(0);
  const server = new Messenger({ name: "s", transports: [net], logger: () => {} });
  await server.listen("mem://s");
  const log = captureLogger();
  const client = new Messenger({
    name: "c",
    transports: [net],
    clock,
    heartbeat: { intervalMs: 500 },
    logger: log.log,
    refusedRetryMs: 30_000,
  });
  await assert.rejects(client.connect("mem://s"), HandshakeRefusedError);
  for (let i = 0; i < 100; i++) {
    await assert.rejects(client.connect("mem://s"), HandshakeRefusedError);
  }
  assert.equal(net.links.length, 1, "one dial, not 101");
  assert.equal(log.lines.filter((l) => l.includes("differs")).length, 1, "logged once");
  clock.advance(30_001);
  await assert.rejects(client.connect("mem://s"), HandshakeRefusedError);
  assert.equal(net.links.length, 2, "redialed after the documented delay");
  await client.close();
  await server.close();
});

Deno.test("heartbeat settings change only while the messenger is stopped", async () => {
  const m = new Messenger({ name: "m", logger: () => {} });
  m.setHeartbeat({ mode: "local", intervalMs: 250 });
  assert.equal(m.heartbeat.mode, "local");
  assert.equal(m.heartbeat.intervalMs, 250);
  await m.listen("tcp://127.0.0.1:0");
  assert.throws(
    () => m.setHeartbeat({ mode: "global" }),
    (e) =>
      e instanceof TypeError &&
      /only while the messenger is stopped: it has 1 listener/.test(e.message),
  );
  assert.equal(m.heartbeat.mode, "local");
  assert.throws(() => new Messenger({ heartbeat: { mode: "mixed" as "local" } }), TypeError);
  await m.close();
});

Deno.test("peers() reports state, phi, rtt and last heard", async () => {
  await using c = await cluster();
  await c.run(1000, 50);
  const [p] = c.a.peers();
  assert.equal(p.name, "b");
  assert.equal(p.state, "up");
  assert.equal(p.mode, "global");
  assert.equal(p.connections, 1);
  assert.ok(p.phi >= 0 && p.phi < 1);
  assert.ok(Number.isFinite(p.rttMs));
  assert.ok(p.lastHeardMsAgo <= 100);
});

Deno.test("a killed peer process is reported down, and its restart is seen as a new incarnation", async () => {
  const server = new Messenger({ name: "survivor", heartbeat: FAST, logger: () => {} });
  const addr = await server.listen("tcp://127.0.0.1:0");
  const events = collect(server.watch());
  const script = new URL("./fixtures/peer_node.ts", import.meta.url);
  const spawn = () =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-net=127.0.0.1", script.href, addr, "victim", "100"],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
  const readNonce = async (child: Deno.ChildProcess) => {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const { value } = await reader.read();
    reader.releaseLock();
    return value!.trim().split(" ")[1];
  };
  const first = spawn();
  const nonce1 = await readNonce(first);
  const up = events.until((e) => e.peer === "victim" && e.state === "up");
  await up;
  const killedAt = performance.now();
  first.kill("SIGKILL");
  await first.status;
  await events.until((e) => e.peer === "victim" && e.state === "down");
  const detectMs = performance.now() - killedAt;
  assert.ok(detectMs <= silenceToDownMs(BOUND_SETTINGS) + 200, `detected in ${detectMs} ms`);
  const second = spawn();
  const nonce2 = await readNonce(second);
  assert.notEqual(nonce1, nonce2);
  const restarted = await events.until((e) => e.state === "up" && e.reason === "restarted");
  assert.equal(restarted.peer, "victim");
  assert.equal(server.peers()[0].nonce, nonce2);
  second.kill("SIGKILL");
  await second.status;
  await second.stdout.cancel().catch(() => {});
  await first.stdout.cancel().catch(() => {});
  await server.close();
});

Deno.test("[tcp] a link blackholed by the fault proxy is reported down within the bound", async () => {
  const opts = { heartbeat: FAST, logger: captureLogger().log };
  const server = new Messenger({ name: "b", ...opts });
  const client = new Messenger({ name: "a", ...opts });
  const addr = await server.listen("tcp://127.0.0.1:0");
  const proxy = FaultProxy.start({ targetPort: Number(new URL(addr).port) });
  await client.connect(proxy.addr);
  const events = collect(client.watch());
  const serverEvents = collect(server.watch());
  await new Promise((r) => setTimeout(r, 600)); // real heartbeats at 100 ms
  assert.ok(events.every((e) => e.state === "up"), JSON.stringify(events));
  proxy.blackhole(true);
  const t0 = performance.now();
  const down = await events.until((e) => e.state === "down");
  const elapsed = performance.now() - t0;
  // The exact bound is checked under the injected clock above; real timers on a loaded
  // machine only get a sanity bound here.
  assert.ok(elapsed <= 2 * (silenceToDownMs(BOUND_SETTINGS) + 25 + 5), `after ${elapsed} ms`);
  // Both signals go quiet at once; whichever crosses the threshold first names the reason.
  assert.ok(["silent", "not-echoing"].includes(down.reason), down.reason);
  await serverEvents.until((e) => e.state === "down");
  proxy.close();
  await Promise.all([client.close(), server.close()]);
});

Deno.test("PhiAccrualDetector: mean and deviation are those of the last 200 to 219 intervals (whole blocks of 20), however many came", () => {
  for (const beats of [1, 3, 19, 20, 150, 199, 218, 219, 220, 1000, 5013]) {
    const d = new PhiAccrualDetector({ ...FAST, maxIntervalMs: Infinity });
    // The two samples the detector starts from (FAST's interval, plus and minus a quarter).
    const samples = [FAST.intervalMs * 0.75, FAST.intervalMs * 1.25];
    let t = 0;
    for (let i = 0; i < beats; i++) {
      const interval = 50 + ((i * 7919) % 101) + (i > 500 ? 0.123 : 0); // jitter, then fractions
      t += interval;
      d.heartbeat(t);
      if (i > 0) samples.push(interval); // the first arrival only starts the clock
    }
    // Ten whole blocks of 20 samples (fewer at first) and the block being filled.
    const whole = Math.floor(samples.length / 20), partial = samples.length % 20;
    const window = samples.slice(-(Math.min(whole, 10) * 20 + partial));
    const mean = window.reduce((a, b) => a + b, 0) / window.length;
    const std = Math.sqrt(window.reduce((a, b) => a + (b - mean) ** 2, 0) / window.length);
    assert.ok(Math.abs(d.meanMs - mean) < 1e-6, `${beats} beats: mean ${d.meanMs} vs ${mean}`);
    assert.ok(Math.abs(d.stdDevMs - std) < 1e-3, `${beats} beats: std ${d.stdDevMs} vs ${std}`);
  }
});

Deno.test("PhiAccrualDetector: data arriving between heartbeats is life, not an interval sample", () => {
  const d = new PhiAccrualDetector(FAST);
  for (let t = 0; t <= 5000; t += 100) {
    d.heartbeat(t);
    for (let k = 1; k < 100; k++) d.touch(t + k); // a busy link: bytes every millisecond
  }
  assert.ok(Math.abs(d.meanMs - 100) < 1, `mean ${d.meanMs}`);
  // Silence counts from the last byte, not the last heartbeat.
  const beatsOnly = new PhiAccrualDetector(FAST);
  for (let t = 0; t <= 5000; t += 100) beatsOnly.heartbeat(t);
  assert.ok(d.phi(5400) < beatsOnly.phi(5400), `${d.phi(5400)} vs ${beatsOnly.phi(5400)}`);
});

Deno.test("a server forgets the oldest of many departed clients instead of growing", async () => {
  const net = new MemoryTransport();
  const server = new Messenger({ name: "s", transports: [net], logger: () => {} });
  await server.listen("mem://s");
  for (let i = 0; i < 1100; i++) {
    const c = new Messenger({ name: `client-${i}`, transports: [net], logger: () => {} });
    const conn = await c.connect("mem://s");
    await conn.close();
    await c.close();
  }
  const peers = server.peers();
  assert.ok(peers.length <= 1000, `${peers.length} peers remembered`);
  assert.ok(peers.some((p) => p.name === "client-1099"), "the newest are kept");
  assert.ok(!peers.some((p) => p.name === "client-0"), "the oldest are forgotten");
  await server.close();
});

Deno.test("a node that did not run for a while does not declare its live peers down, and still detects a real silence", async () => {
  await using c = await cluster();
  const eventsA = collect(c.a.watch());
  await c.run(1000);
  // The whole process stops (SIGSTOP, swap, a long collection) for 10x the detection bound:
  // one clock jump, and the next check is the first that runs.
  const bound = silenceToDownMs(BOUND_SETTINGS);
  c.clock.jump(10 * bound);
  await c.run(1000);
  assert.deepEqual(eventsA.map((e) => e.state), ["up"], "no suspicion after the pause");
  const pauses = c.a.localPauses;
  assert.equal(pauses.count, 1);
  assert.ok(
    pauses.longestMs >= 10 * bound - 25 && pauses.longestMs <= 10 * bound,
    `${pauses.longestMs}`,
  );
  // The excuse covers the pause only: a silence that follows is detected within the bound.
  c.net.links[0].stallReads(true);
  const cutAt = c.clock.now();
  const down = eventsA.until((e) => e.state === "down");
  await c.run(2000);
  const at = (await down).at - cutAt;
  assert.ok(at <= bound + 25 + c.a.timers.tickMs, `down after ${at} ms`);
  c.net.links[0].stallReads(false);
  await c.run(200);
});

Deno.test("[tcp] a peer whose application stops taking messages goes down as not-echoing once the buffers fill", async () => {
  // Writes that wait for the link count as proof that the peer takes our bytes (so a saturated
  // link does not look like a stuck peer); a stuck peer's buffers fill, the writes stop
  // completing, and the echo signal still finds it.
  const opts = {
    heartbeat: FAST,
    logger: captureLogger().log,
    maxInboundBytes: 1 << 20,
  };
  const server = new Messenger({ name: "b", ...opts });
  const client = new Messenger({ name: "a", ...opts });
  const addr = await server.listen("tcp://127.0.0.1:0");
  const conn = await client.connect(addr);
  const events = collect(client.watch());
  // Heartbeats run both ways once a first echo gives a round-trip time (bounded: 5 s).
  for (let i = 0; i < 250 && !Number.isFinite(conn.rttMs); i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(Number.isFinite(conn.rttMs), "no echo within 5 s");
  assert.ok(events.every((e) => e.state === "up"), JSON.stringify(events));
  // b never takes a message; a sends until b is down or 10 s pass (bounded either way). A send
  // that waits for room is waited on again, 50 ms at a time, so the loop sees the down event.
  const body = new Uint8Array(16 * 1024);
  const deadline = performance.now() + 10_000;
  let sent = 0;
  const flood = (async () => {
    let pending: Promise<boolean> | null = null;
    while (performance.now() < deadline && !events.some((e) => e.state === "down")) {
      pending ??= conn.send(1, body).then(() => true, () => false);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const settled = await Promise.race([
        pending,
        new Promise<"waiting">((r) => timer = setTimeout(() => r("waiting"), 50)),
      ]);
      clearTimeout(timer);
      if (settled === "waiting") continue;
      pending = null;
      if (!settled) break;
      sent++;
    }
  })();
  const down = await events.until((e) => e.state === "down");
  await flood;
  assert.equal(down.reason, "not-echoing");
  assert.ok(sent * body.length > 1 << 20, `only ${sent} messages went before the buffers filled`);
  await Promise.all([client.close(), server.close()]);
});

Deno.test("checks late again and again (throttled timers) are not all excused: a dead peer is still found", async () => {
  await using c = await cluster();
  const eventsA = collect(c.a.watch());
  await c.run(1000);
  c.net.links[0].stallReads(true);
  c.net.links[0].peer.stallReads(true);
  // A check every round runs 300 ms late (above the 200 ms acceptable pause): each would be
  // excused on its own, but not before the process ran unexcused for the detection bound.
  let rounds = 0;
  while (!eventsA.some((e) => e.state === "down") && rounds < 40) {
    c.clock.jump(300);
    await c.run(25, 25);
    rounds++;
  }
  const down = eventsA.find((e) => e.state === "down");
  assert.ok(down, `no down after ${rounds} late rounds`);
  assert.ok(rounds <= 5, `found after ${rounds} late rounds`);
  assert.ok(c.a.localPauses.count <= 1, `${c.a.localPauses.count} excused`);
  c.net.links[0].stallReads(false);
  c.net.links[0].peer.stallReads(false);
  await c.run(200);
});
