/**
 * `deno task bench:cluster [--json] [--nodes 32] [--users 50] [--interval-ms 1000]
 * [--sweep] [--svg docs/heartbeat-economy.svg]`, or with `--netns [--saturate-s 60]
 * [--notsent-lowat 16384] [--cc reno|bbr]` (root; see ./netns.ts): every node a process
 * in its own network namespace, `--cc` setting each namespace's TCP congestion control.
 *
 * A cluster of N nodes, each with U users that need the liveness of every peer, run twice in
 * the same process over real TCP sockets on loopback:
 *
 * - **separate**: today's design in Ceph. Per pair of nodes: one data connection plus two
 *   heartbeat connections (front and back). Every user has its own timer and sends a ping to
 *   every peer each interval, answered by a pong; a per-node check declares a peer down after a
 *   grace of 20/6 intervals (Ceph's 20 s grace over its 6 s interval).
 * - **heartline**: one data connection per pair; the users are OOB registrations on it,
 *   coalesced into one heartbeat frame per connection per interval; global mode, one shared
 *   phi detector per peer.
 *
 * Nodes are separate messengers with their own sockets in one process, not separate
 * processes: on two cores, 32 processes would measure the scheduler more than the designs,
 * and in one process sockets, timers and CPU can be counted exactly, for both designs alike.
 *
 * The last node is the victim: every connection to it goes through a fault proxy; "killing"
 * it blackholes the proxies (the node hangs: no bytes, no reset), so only heartbeats can tell.
 * Every loop is bounded in count and time.
 *
 * @module
 */

import { parseArgs } from "node:util";
import process from "node:process";
import { Messenger, type NodeEvent, silenceToDownMs } from "../../mod.ts";
import { FaultProxy } from "../../tests/fault_proxy.ts";
import { median } from "../_common.ts";
import { runNetns, unsupported } from "./netns.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    json: { type: "boolean", default: false },
    nodes: { type: "string", default: "32" },
    users: { type: "string", default: "50" },
    "interval-ms": { type: "string", default: "1000" },
    "window-s": { type: "string", default: "5" },
    sweep: { type: "boolean", default: false },
    experiment: { type: "boolean", default: false },
    netns: { type: "boolean", default: false },
    "saturate-s": { type: "string", default: "60" },
    "notsent-lowat": { type: "string", default: "16384" },
    cc: { type: "string", default: "" },
    svg: { type: "string" },
  },
});

const quiet = () => {};

/** What one run of one design measured. */
export interface DesignResult {
  design: "separate" | "heartline";
  nodes: number;
  users: number;
  intervalMs: number;
  sockets: number;
  heartbeatFramesPerSecond: number;
  heartbeatBytesPerSecond: number;
  timers: number;
  cpuMsPerSecond: number;
  detectMs: number;
  /** Down (or suspect) events of peers that were never cut off, over the whole run. */
  falseDowns: number;
}

interface RunOptions {
  nodes: number;
  users: number;
  intervalMs: number;
  windowS: number;
  detect: boolean;
  /** Heartline's deviation floor (default: the messenger default). */
  minStdDevMs?: number;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

// ---------------------------------------------------------------- heartline design

async function runHeartline(o: RunOptions): Promise<DesignResult> {
  const heartbeat = {
    intervalMs: o.intervalMs,
    acceptablePauseMs: o.intervalMs * 1.5,
    ...(o.minStdDevMs ? { minStdDevMs: o.minStdDevMs } : {}),
  };
  const epoch = performance.now(); // every wheel aligns its phases to about this instant
  const nodes = Array.from(
    { length: o.nodes },
    (_, i) => new Messenger({ name: `n${String(i).padStart(2, "0")}`, heartbeat, logger: quiet }),
  );
  const addrs = await Promise.all(nodes.map((m) => m.listen("tcp://127.0.0.1:0")));
  const victim = o.nodes - 1;
  const proxy = FaultProxy.start({ targetPort: Number(new URL(addrs[victim]).port) });
  addrs[victim] = proxy.addr;
  const part = new Uint8Array(8);
  for (const m of nodes) for (let u = 0; u < o.users; u++) m.onOob(`user${u}`, () => {});
  // Each node dials the nodes after it: one data connection per pair.
  for (let i = 0; i < o.nodes; i++) {
    for (let j = i + 1; j < o.nodes; j++) {
      const conn = await nodes[i].connect(addrs[j]);
      void conn;
    }
  }
  // Every user of every node registers its liveness part on every connection.
  for (const m of nodes) {
    for (const conn of m.connections()) {
      for (let u = 0; u < o.users; u++) {
        conn.registerOob(`user${u}`, () => part, { intervalMs: o.intervalMs });
      }
    }
  }
  // And each user watches node events (global mode: shared, no extra frames).
  const downs: number[] = [];
  let killedAt = 0, falseDowns = 0;
  const streams = nodes.slice(0, victim).map((m) => {
    const subs = Array.from({ length: o.users }, () => m.watch()[Symbol.asyncIterator]());
    (async () => {
      const it = subs[0];
      let seen = false;
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        const e = r.value as NodeEvent;
        if (e.state === "up") continue;
        if (killedAt && e.peer === nodes[victim].name) {
          if (e.state === "down" && !seen) downs.push(performance.now() - killedAt);
          seen ||= e.state === "down";
        } else if (e.reason !== "closed") {
          falseDowns++; // a peer that was never cut off looked suspect or down
        }
      }
    })();
    return subs;
  });
  await sleep(o.intervalMs * 2 + 200); // phases settle
  // Start the window half an interval off the wheels' phase, so that no fire sits on an edge
  // of the window and the count is exact.
  const sinceEpoch = (performance.now() - epoch) % o.intervalMs;
  await sleep((o.intervalMs * 1.5 - sinceEpoch) % o.intervalMs);
  gc();
  const frames0 = nodes.reduce((s, m) => s + m.oobStats.heartbeatFramesSent, 0);
  const bytes0 = nodes.reduce((s, m) => s + m.oobStats.heartbeatBytesSent, 0);
  const cpu0 = cpuMs(), t0 = performance.now();
  await sleep(o.windowS * 1000);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = (cpuMs() - cpu0) / seconds;
  const frames = (nodes.reduce((s, m) => s + m.oobStats.heartbeatFramesSent, 0) - frames0) /
    seconds;
  const bytes = (nodes.reduce((s, m) => s + m.oobStats.heartbeatBytesSent, 0) - bytes0) / seconds;
  const sockets = nodes.reduce((s, m) => s + m.connections().length, 0);
  let detectMs = NaN;
  if (o.detect) {
    killedAt = performance.now();
    proxy.blackhole(true);
    const deadline = performance.now() + o.intervalMs * 20;
    while (downs.length < victim && performance.now() < deadline) await sleep(20);
    detectMs = median(downs);
  }
  for (const subs of streams) for (const it of subs) await it.return?.();
  await Promise.all(nodes.map((m) => closeQuick(m)));
  proxy.close();
  return {
    design: "heartline",
    nodes: o.nodes,
    users: o.users,
    intervalMs: o.intervalMs,
    sockets,
    heartbeatFramesPerSecond: frames,
    heartbeatBytesPerSecond: bytes,
    timers: nodes.length, // one host timeout per wheel, whatever the number of users
    cpuMsPerSecond: cpu,
    detectMs,
    falseDowns,
  };
}

/** Closes without waiting for a blackholed peer's Close (bounded by the close timeout). */
async function closeQuick(m: Messenger): Promise<void> {
  await Promise.race([m.close(), sleep(200)]);
}

// ---------------------------------------------------------------- separate design

const PING = 1, PONG = 2;
const HB_BYTES = 4 + 1 + 4 + 8; // length, kind, user, stamp

interface HbLink {
  conn: Deno.TcpConn;
  peer: number;
}

async function runSeparate(o: RunOptions): Promise<DesignResult> {
  const graceMs = (o.intervalMs * 20) / 6;
  // Data: heartline messengers whose own keepalive is switched off in effect (1 h interval).
  const data = Array.from({ length: o.nodes }, (_, i) =>
    new Messenger({
      name: `d${String(i).padStart(2, "0")}`,
      heartbeat: { intervalMs: 3_600_000 },
      logger: quiet,
    }));
  const dataAddrs = await Promise.all(data.map((m) => m.listen("tcp://127.0.0.1:0")));
  const victim = o.nodes - 1;
  const proxies: FaultProxy[] = [];
  const dataProxy = FaultProxy.start({ targetPort: Number(new URL(dataAddrs[victim]).port) });
  proxies.push(dataProxy);
  dataAddrs[victim] = dataProxy.addr;
  // Heartbeat: front and back listeners per node.
  const front = data.map(() => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const back = data.map(() => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const hbPorts = data.map((_, i) => [front[i].addr.port, back[i].addr.port]);
  for (const port of [...hbPorts[victim]]) {
    const p = FaultProxy.start({ targetPort: port });
    proxies.push(p);
    hbPorts[victim][hbPorts[victim].indexOf(port)] = Number(new URL(p.addr).port);
  }
  const links: HbLink[][] = data.map(() => []); // per node: its heartbeat links
  const lastPong: number[][] = data.map(() => new Array(o.nodes).fill(performance.now()));
  const counts = { frames: 0, bytes: 0 };
  const downs: number[] = [];
  let killedAt = 0;
  const down = data.map(() => new Array(o.nodes).fill(false));

  const serve = (node: number, conn: Deno.TcpConn, peer: number) => {
    links[node].push({ conn, peer });
    (async () => {
      const buf = new Uint8Array(64 * 1024);
      let pending = new Uint8Array(0);
      try {
        for (;;) {
          const n = await conn.read(buf);
          if (n === null) return;
          const chunk = new Uint8Array(pending.length + n);
          chunk.set(pending);
          chunk.set(buf.subarray(0, n), pending.length);
          let at = 0;
          const replies: Uint8Array[] = [];
          while (chunk.length - at >= HB_BYTES) {
            const kind = chunk[at + 4];
            if (kind === PING) {
              const pong = chunk.slice(at, at + HB_BYTES);
              pong[4] = PONG;
              replies.push(pong);
            } else {
              lastPong[node][peer] = performance.now();
            }
            at += HB_BYTES;
          }
          pending = chunk.slice(at);
          if (replies.length) {
            const out = new Uint8Array(replies.length * HB_BYTES);
            replies.forEach((r, i) => out.set(r, i * HB_BYTES));
            counts.frames += replies.length;
            counts.bytes += out.length;
            await conn.write(out);
          }
        }
      } catch {
        // link closed
      }
    })();
  };
  // The first message on an accepted heartbeat link names the dialing node.
  const acceptLoop = async (node: number, listener: Deno.Listener) => {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept() as Deno.TcpConn;
      } catch {
        return;
      }
      const hello = new Uint8Array(4);
      let got = 0;
      try {
        while (got < 4) got += (await conn.read(hello.subarray(got))) ?? NaN;
      } catch {
        continue;
      }
      serve(node, conn, new DataView(hello.buffer).getUint32(0));
    }
  };
  data.forEach((_, i) => {
    acceptLoop(i, front[i]);
    acceptLoop(i, back[i]);
  });
  for (let i = 0; i < o.nodes; i++) {
    for (let j = i + 1; j < o.nodes; j++) {
      await data[i].connect(dataAddrs[j]);
      for (const port of hbPorts[j]) {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port });
        const hello = new Uint8Array(4);
        new DataView(hello.buffer).setUint32(0, i);
        await conn.write(hello);
        serve(i, conn, j);
      }
    }
  }
  // Wait until every accepted heartbeat link is known on both ends.
  const expectedLinks = o.nodes * (o.nodes - 1) * 2;
  for (let k = 0; k < 500 && links.reduce((s, l) => s + l.length, 0) < expectedLinks; k++) {
    await sleep(10);
  }
  // One timer per user: each interval, a ping to every peer (alternating front and back).
  const timers: ReturnType<typeof setInterval>[] = [];
  let flip = 0;
  for (let node = 0; node < o.nodes; node++) {
    for (let u = 0; u < o.users; u++) {
      timers.push(setInterval(() => {
        const byConn = new Map<Deno.TcpConn, number>();
        flip ^= 1;
        for (const l of links[node]) {
          if ((links[node].indexOf(l) & 1) !== flip) continue;
          byConn.set(l.conn, (byConn.get(l.conn) ?? 0) + 1);
        }
        for (const [conn] of byConn) {
          const ping = new Uint8Array(HB_BYTES);
          const v = new DataView(ping.buffer);
          v.setUint32(0, HB_BYTES - 4);
          ping[4] = PING;
          v.setUint32(5, u);
          v.setFloat64(9, performance.now());
          counts.frames++;
          counts.bytes += HB_BYTES;
          conn.write(ping).catch(() => {});
        }
      }, o.intervalMs));
    }
    // A per-node check against the grace.
    timers.push(setInterval(() => {
      const now = performance.now();
      for (let peer = 0; peer < o.nodes; peer++) {
        if (peer === node || down[node][peer]) continue;
        if (now - lastPong[node][peer] > graceMs) {
          down[node][peer] = true;
          if (killedAt && peer === victim) downs.push(now - killedAt);
        }
      }
    }, o.intervalMs / 4));
  }
  await sleep(o.intervalMs * 2 + 200);
  gc();
  const f0 = counts.frames, b0 = counts.bytes;
  const cpu0 = cpuMs(), t0 = performance.now();
  await sleep(o.windowS * 1000);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = (cpuMs() - cpu0) / seconds;
  const frames = (counts.frames - f0) / seconds;
  const bytes = (counts.bytes - b0) / seconds;
  const sockets = data.reduce((s, m) => s + m.connections().length, 0) +
    links.reduce((s, l) => s + l.length, 0);
  let detectMs = NaN;
  if (o.detect) {
    killedAt = performance.now();
    for (const p of proxies) p.blackhole(true);
    const deadline = performance.now() + o.intervalMs * 20;
    while (downs.length < victim && performance.now() < deadline) await sleep(20);
    detectMs = median(downs);
  }
  for (const t of timers) clearInterval(t);
  for (const l of [...front, ...back]) l.close();
  for (const node of links) {
    for (const l of node) {
      try {
        l.conn.close();
      } catch {
        // closed already
      }
    }
  }
  await Promise.all(data.map((m) => closeQuick(m)));
  for (const p of proxies) p.close();
  return {
    design: "separate",
    nodes: o.nodes,
    users: o.users,
    intervalMs: o.intervalMs,
    sockets,
    heartbeatFramesPerSecond: frames,
    heartbeatBytesPerSecond: bytes,
    timers: o.nodes * o.users + o.nodes,
    cpuMsPerSecond: cpu,
    detectMs,
    falseDowns: NaN,
  };
}

// ---------------------------------------------------------------- report

function svgPlot(rows: { users: number; separate: number; heartline: number }[]): string {
  const w = 640, h = 400, m = 60;
  const maxY = Math.max(...rows.map((r) => r.separate)) * 1.1;
  const maxX = Math.max(...rows.map((r) => r.users));
  const x = (u: number) => m + ((w - 2 * m) * u) / maxX;
  const y = (v: number) => h - m - ((h - 2 * m) * v) / maxY;
  const line = (key: "separate" | "heartline") =>
    rows.map((r, i) => `${i ? "L" : "M"}${x(r.users).toFixed(1)},${y(r[key]).toFixed(1)}`).join(
      " ",
    );
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => f * maxY);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="${
    w / 2
  }" y="24" text-anchor="middle" font-size="15">Heartbeat frames per second against users per node (N = ${
    rows[0] ? nodesOf : 0
  })</text>
<line x1="${m}" y1="${h - m}" x2="${w - m}" y2="${h - m}" stroke="black"/>
<line x1="${m}" y1="${m}" x2="${m}" y2="${h - m}" stroke="black"/>
${
    ticks.map((t) => `<text x="${m - 6}" y="${y(t) + 4}" text-anchor="end">${Math.round(t)}</text>`)
      .join("\n")
  }
${
    rows.map((r) =>
      `<text x="${x(r.users)}" y="${h - m + 16}" text-anchor="middle">${r.users}</text>`
    ).join("\n")
  }
<text x="${w / 2}" y="${h - 18}" text-anchor="middle">users per node (U)</text>
<path d="${line("separate")}" fill="none" stroke="#c0392b" stroke-width="2"/>
<path d="${line("heartline")}" fill="none" stroke="#2471a3" stroke-width="2"/>
<text x="${m + 12}" y="${
    m + 10
  }" fill="#c0392b">separate heartbeat links (ping + pong per user)</text>
<text x="${m + 12}" y="${
    m + 28
  }" fill="#2471a3">heartline (coalesced OOB parts, one frame per link)</text>
${
    rows.map((r) =>
      `<circle cx="${x(r.users).toFixed(1)}" cy="${
        y(r.separate).toFixed(1)
      }" r="3" fill="#c0392b"/>` +
      `<circle cx="${x(r.users).toFixed(1)}" cy="${
        y(r.heartline).toFixed(1)
      }" r="3" fill="#2471a3"/>`
    ).join("\n")
  }
</svg>
`;
}

let nodesOf = 0;

/**
 * The interval experiment: give heartline the heartbeat budget (frames/s) that the separate
 * design spends at Ceph's defaults (6 s interval, 20 s grace) and see how short its interval
 * can be, and what detection time follows. Analytical for each U (frames are counted exactly
 * by the design), and measured for U = 50 on an 8-node cluster.
 */
async function intervalExperiment(n: number, log: (s: string) => void): Promise<void> {
  const cephInterval = 6000, cephGrace = 20_000;
  log(`Budget: the separate design at a ${cephInterval} ms interval, ${cephGrace} ms grace.`);
  log("");
  log(
    "| U | separate frames/s (N = " + n +
      ") | heartline interval for the same frames/s | heartline detection bound | separate detection |",
  );
  log("| --- | --- | --- | --- | --- |");
  for (const u of [1, 5, 10, 25, 50, 100]) {
    const budget = (n * u * (n - 1) * 2) / (cephInterval / 1000); // pings and pongs
    const interval = Math.max(10, (n * (n - 1)) / budget * 1000);
    const bound = silenceToDownMs({
      detector: "phi",
      intervalMs: interval,
      acceptablePauseMs: interval * 1.5,
      minStdDevMs: interval / 10,
      phiThreshold: 8,
      graceMs: 0,
    }) + interval / 4 + 5;
    log(
      `| ${u} | ${budget.toFixed(0)} | ${interval.toFixed(0)} ms | ${
        (bound / 1000).toFixed(2)
      } s | ${cephGrace / 1000}-${(cephGrace + cephInterval) / 1000} s |`,
    );
  }
  const interval = Math.round(cephInterval / (2 * 50));
  const measured = await runHeartline({
    nodes: 8,
    users: 50,
    intervalMs: interval,
    windowS: 3,
    detect: true,
    minStdDevMs: interval / 10,
  });
  const budget8 = (8 * 50 * 7 * 2) / (cephInterval / 1000);
  log("");
  log(
    `Measured, N = 8, U = 50, heartline at ${interval} ms: ${
      measured.heartbeatFramesPerSecond.toFixed(0)
    } frames/s (budget ${budget8.toFixed(0)}), a hung node detected in ${
      (measured.detectMs / 1000).toFixed(2)
    } s (median over the 7 survivors), CPU ${measured.cpuMsPerSecond.toFixed(0)} ms/s.`,
  );
}

/** Nodes the Ceph-budget run puts in one process at most (see `main`). */
const CEPH_NODES_IN_ONE_PROCESS = 16;

/** Ceph's heartbeat defaults: pings padded to osd_heartbeat_min_size, front and back links. */
const CEPH = { intervalMs: 6000, graceMs: 20_000, pingBytes: 2000, links: 2 };

/**
 * Ceph's heartbeat budget in bytes per second for `n` nodes (every node pings every peer on
 * its front and back links, each ping answered, each 2,000 B, every 6 s), the interval
 * heartline can beat at within those bytes (its heartbeat bytes per beat measured at U users,
 * `bytesPerBeat`), and a measured run at that interval with a hung node.
 */
async function cephBudget(
  n: number,
  users: number,
  bytesPerBeat: number,
  log: (s: string) => void,
): Promise<{ budgetBytesPerSecond: number; affordableMs: number; run: DesignResult }> {
  const budget = n * (n - 1) * CEPH.links * 2 * CEPH.pingBytes / (CEPH.intervalMs / 1000);
  const affordableMs = bytesPerBeat / budget * 1000;
  // Below 20 ms, 32 messengers in one process on two cores measure the scheduler.
  const interval = Math.max(20, Math.ceil(affordableMs));
  const run = await runHeartline({
    nodes: n,
    users,
    intervalMs: interval,
    windowS: 3,
    detect: true,
    minStdDevMs: interval / 10,
  });
  log(
    `Ceph's budget for N=${n}: ${(budget / 1000).toFixed(0)} kB/s of heartbeats. Heartline ` +
      `with U=${users} fits it at a ${affordableMs.toFixed(0)} ms interval; at ${interval} ms ` +
      `it sent ${(run.heartbeatBytesPerSecond / 1000).toFixed(0)} kB/s and a hung node was ` +
      `seen down in ${run.detectMs.toFixed(0)} ms (median over the survivors), against ` +
      `Ceph's ${CEPH.graceMs / 1000}-${(CEPH.graceMs + CEPH.intervalMs) / 1000} s; ` +
      `${run.falseDowns} suspect or down events of peers never cut off, CPU ` +
      `${run.cpuMsPerSecond.toFixed(0)} ms/s.`,
  );
  return { budgetBytesPerSecond: budget, affordableMs, run };
}

async function main(): Promise<void> {
  const nodes = Number(values.nodes), users = Number(values.users);
  const intervalMs = Number(values["interval-ms"]), windowS = Number(values["window-s"]);
  const log = (s: string) => values.json ? console.error(s) : console.log(s);
  if (values.experiment) {
    await intervalExperiment(nodes, log);
    return;
  }
  if (values.sweep) {
    nodesOf = 8;
    const rows = [];
    for (const u of [1, 5, 10, 25, 50, 100]) {
      const o = { nodes: 8, users: u, intervalMs, windowS: 2, detect: false };
      const s = await runSeparate(o);
      const hl = await runHeartline(o);
      rows.push({
        users: u,
        separate: s.heartbeatFramesPerSecond,
        heartline: hl.heartbeatFramesPerSecond,
      });
      log(
        `U=${u}: separate ${s.heartbeatFramesPerSecond.toFixed(0)} frames/s, ` +
          `heartline ${hl.heartbeatFramesPerSecond.toFixed(0)} frames/s`,
      );
    }
    if (values.svg) await Deno.writeTextFile(values.svg, svgPlot(rows));
    if (!values.json) return;
  }
  if (values.netns) return await netnsMain(nodes, users, intervalMs, windowS, log);
  const o = { nodes, users, intervalMs, windowS, detect: true };
  const s = await runSeparate(o);
  const hl = await runHeartline(o);
  // In one process, 32 messengers at a 100 ms interval starve its event loop on two cores
  // (measured: 1.3 s of CPU per second, thousands of false suspicions), so the Ceph-budget run
  // uses at most 16 nodes here.
  const cephNodes = Math.min(nodes, CEPH_NODES_IN_ONE_PROCESS);
  const perSecond = cephNodes === nodes
    ? hl.heartbeatBytesPerSecond
    : (await runHeartline({ ...o, nodes: cephNodes, detect: false })).heartbeatBytesPerSecond;
  const ceph = await cephBudget(cephNodes, users, perSecond / (1000 / intervalMs), log);
  const falseDowns = hl.falseDowns + ceph.run.falseDowns;
  const rows: [string, string, number, number][] = [
    ["cluster_sockets", "sockets", hl.sockets, s.sockets],
    [
      "cluster_heartbeat_frames",
      "frames/s",
      hl.heartbeatFramesPerSecond,
      s.heartbeatFramesPerSecond,
    ],
    ["cluster_heartbeat_bytes", "bytes/s", hl.heartbeatBytesPerSecond, s.heartbeatBytesPerSecond],
    ["cluster_timers", "timers", hl.timers, s.timers],
    ["cluster_cpu", "ms/s", hl.cpuMsPerSecond, s.cpuMsPerSecond],
    ["cluster_detect_ms", "ms", hl.detectMs, s.detectMs],
    ["cluster_ceph_budget_interval_ms", "ms", ceph.run.intervalMs, CEPH.intervalMs],
    ["cluster_detect_ceph_budget_ms", "ms", ceph.run.detectMs, CEPH.graceMs],
    ["cluster_false_downs", "events", falseDowns, 0],
  ];
  printRows(rows, `N=${nodes} U=${users} interval=${intervalMs} ms, window ${windowS} s`);
}

/** Higher is better; for a count that must be 0, the ratio is 1 when it is. */
function ratio(name: string, value: number, baseline: number): number {
  return name.endsWith("false_downs") ? (value === 0 ? 1 : 0) : baseline / value;
}

/** Prints the rows as a table, or with --json as JSON rows. */
function printRows(rows: [string, string, number, number][], title: string): void {
  if (values.json) {
    console.log(JSON.stringify({
      benchmarks: rows.map(([name, unit, value, baseline]) => ({
        name,
        unit,
        value,
        baseline_value: baseline,
        ratio: ratio(name, value, baseline),
      })),
    }));
    return;
  }
  console.log(title);
  console.log(`${"".padEnd(26)} ${"heartline".padStart(12)} ${"separate".padStart(12)}  ratio`);
  for (const [name, unit, value, baseline] of rows) {
    console.log(
      `${(name + ` (${unit})`).padEnd(26)} ${value.toFixed(1).padStart(12)} ${
        baseline.toFixed(1).padStart(12)
      }  ${ratio(name, value, baseline).toFixed(2)}`,
    );
  }
}

/**
 * --netns: heartline with every node its own process in its own namespace; the separate
 * design's figures are its nominal load (computed: it is not run this way yet).
 */
async function netnsMain(
  nodes: number,
  users: number,
  intervalMs: number,
  windowS: number,
  log: (s: string) => void,
): Promise<void> {
  const why = await unsupported();
  if (why) {
    console.error(`bench:cluster --netns: ${why}`);
    Deno.exit(2);
  }
  const saturateS = Number(values["saturate-s"]);
  const notsentLowat = Number(values["notsent-lowat"]);
  const congestionControl = values.cc || undefined;
  const hl = await runNetns({
    nodes,
    users,
    intervalMs,
    windowS,
    saturateS,
    notsentLowat,
    congestionControl,
  });
  const perSecond = 1000 / intervalMs;
  const sepFrames = nodes * users * (nodes - 1) * 2 * perSecond;
  const budget = nodes * (nodes - 1) * CEPH.links * 2 * CEPH.pingBytes / (CEPH.intervalMs / 1000);
  const affordable = hl.heartbeatBytesPerSecond / perSecond / budget * 1000;
  const interval = Math.max(20, Math.ceil(affordable));
  const ceph = await runNetns({
    nodes,
    users,
    intervalMs: interval,
    windowS: 3,
    notsentLowat,
    congestionControl,
  });
  log(
    `--netns, N=${nodes} processes: at ${intervalMs} ms ${hl.cpuMsPerSecond.toFixed(0)} ms/s of ` +
      `CPU in all; Ceph's budget ${(budget / 1000).toFixed(0)} kB/s fits a ${
        affordable.toFixed(0)
      } ms interval; at ${interval} ms heartline sent ${
        (ceph.heartbeatBytesPerSecond / 1000).toFixed(0)
      } kB/s, a stopped node was seen down in ${ceph.detectMs.toFixed(0)} ms (median), ` +
      `${ceph.falseDowns} false suspicions, ${ceph.cpuMsPerSecond.toFixed(0)} ms/s of CPU.`,
  );
  const rows: [string, string, number, number][] = [
    ["cluster_sockets", "sockets", hl.sockets, 3 * nodes * (nodes - 1)],
    ["cluster_heartbeat_frames", "frames/s", hl.heartbeatFramesPerSecond, sepFrames],
    ["cluster_heartbeat_bytes", "bytes/s", hl.heartbeatBytesPerSecond, sepFrames * HB_BYTES],
    ["cluster_detect_ms", "ms", hl.detectMs, intervalMs * 20 / 6],
    ["cluster_ceph_budget_interval_ms", "ms", interval, CEPH.intervalMs],
    ["cluster_detect_ceph_budget_ms", "ms", ceph.detectMs, CEPH.graceMs],
    ["cluster_false_downs", "events", hl.falseDowns + ceph.falseDowns, 0],
  ];
  const sat = hl.saturated;
  if (sat) {
    log(
      `Saturated (tcp_notsent_lowat ${
        notsentLowat || "kernel default"
      }): every link at ${sat.rate} for ${sat.seconds} s, ${
        (sat.bytes / 1e6).toFixed(0)
      } MB sent; highest phi ${sat.maxPhi.toFixed(2)}, longest silence ${
        sat.maxSilenceMs.toFixed(0)
      } ms, event loop late by up to ${
        sat.maxLagMs.toFixed(0)
      } ms, ${sat.events} suspect or down events.`,
    );
    for (const line of sat.eventList) log(`  ${line}`);
    rows.push(["cluster_saturated_false_downs", "events", sat.events, 0]);
    rows.push(["cluster_saturated_max_phi", "phi", sat.maxPhi, 8]);
  }
  printRows(rows, `--netns: N=${nodes} U=${users} interval=${intervalMs} ms (separate: nominal)`);
}

if (import.meta.main) await main();
