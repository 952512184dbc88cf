// One end of a two-process benchmark, run by bench/proc/suite.ts as its own `deno` process:
//
//   deno run ... bench/proc/role.ts '<json config>'
//
// Roles: `recv` listens, prints {"ready": addr}, counts `count` messages and prints its result;
// `send` dials `addr` and sends `count` messages of `size` bytes as fast as back-pressure
// allows; `echo` answers every message; `ping` measures `count` round trips (both with `probe`
// also time the code between reads and writes: _probe.ts). `kind` is `raw`
// (Deno TCP, 4-byte length prefix: the ceiling) or `heartline`. Each process ends by printing
// one JSON line with its CPU time and peak RSS (ru_maxrss), so the harness compares whole processes.

import net from "node:net";
import process from "node:process";
import v8 from "node:v8";
import { Messenger, type PolicyName, TcpTransport } from "../../mod.ts";
import { readFrames, writeAll } from "../_raw.ts";
import { type PathMedians, PathProbe, probedTransport } from "./_probe.ts";
import { parseHostPort } from "../../transports/types.ts";

/** What the harness asks of one process. */
export interface RoleConfig {
  role:
    | "recv"
    | "send"
    | "echo"
    | "ping"
    | "idle-server"
    | "idle-clients"
    | "recv-workers"
    | "send-many";
  kind: "raw" | "heartline";
  size: number;
  count: number;
  /** Where to dial (send, ping). */
  addr?: string;
  /** heartline roles: the TCP transport's sockets (default "deno"). */
  sockets?: "deno" | "node";
  /** heartline policy of the dialing side. */
  policy?: PolicyName;
  /** raw sender: messages per write (1: a write per message; else coalesced into ~64 KiB). */
  coalesce?: boolean;
  /** heartline receiver: take messages with `messages({ batch: true })`. */
  batch?: boolean;
  /** recv-workers: how many workers share the port. */
  workers?: number;
  /** send-many: how many connections (a messenger each) share the count. */
  connections?: number;
  /** idle-server: seconds of idling sampled (one RSS sample a second). */
  idleSeconds?: number;
  /** echo, ping: time the code between reads and writes (`PathProbe`) and report it. */
  probe?: boolean;
}

/** What one process reports at its end. */
export interface RoleResult {
  messages?: number;
  /** ms between the first and the last message received (recv). */
  elapsedMs?: number;
  /** Round-trip times in µs (ping). */
  rtts?: number[];
  /** Resident bytes per idle connection (idle-server: the mean of samples, their range), and heap bytes per connection. */
  rssPerConn?: number;
  rssPerConnMax?: number;
  rssPerConnMin?: number;
  heapPerConn?: number;
  heapTotalPerConn?: number;
  /** echo, ping with `probe`: medians of the code path's spans, us. */
  path?: PathMedians;
  /** idle-server: bytes of V8's young generation (new space) of the whole process, as sampled. */
  newSpaceBytes?: number;
  /** recv-workers: messages each worker took. */
  perWorker?: number[];
  externalPerConn?: number;
  cpuMs: number;
  peakRssBytes: number;
}

const WRITE_BATCH = 64 * 1024;

/** Peak resident bytes of this process (getrusage's ru_maxrss). */
function peakRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

function finish(result: Omit<RoleResult, "cpuMs" | "peakRssBytes">): void {
  const cpu = process.cpuUsage();
  const out: RoleResult = {
    ...result,
    cpuMs: (cpu.user + cpu.system) / 1000,
    peakRssBytes: peakRss(),
  };
  console.log(JSON.stringify(out));
}

/** Listens on loopback, prints the ready line, and takes the one connection raw roles serve. */
async function rawAccept(): Promise<{ conn: Deno.TcpConn; listener: Deno.TcpListener }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  console.log(JSON.stringify({ ready: `tcp://127.0.0.1:${listener.addr.port}` }));
  const conn = await listener.accept();
  conn.setNoDelay(true);
  return { conn, listener };
}

/** Dials a raw role's address, Nagle off. */
async function rawDial(addr: string): Promise<Deno.TcpConn> {
  const conn = await Deno.connect(parseHostPort(addr, "tcp"));
  conn.setNoDelay(true);
  return conn;
}

function rawFrame(size: number): Uint8Array {
  const frame = new Uint8Array(4 + size).fill(7);
  new DataView(frame.buffer).setUint32(0, size);
  return frame;
}

async function rawRecv(c: RoleConfig): Promise<void> {
  const { conn, listener } = await rawAccept();
  let first = 0;
  await readFrames(conn, c.count, (body) => {
    if (first === 0) first = performance.now();
    if (body.length > 0 && body[0] !== 7) throw new Error("raw reader: corrupt");
  });
  finish({ messages: c.count, elapsedMs: performance.now() - first });
  conn.close();
  listener.close();
}

async function rawSend(c: RoleConfig): Promise<void> {
  const conn = await rawDial(c.addr!);
  const frame = rawFrame(c.size);
  if (c.coalesce) {
    const perWrite = Math.max(1, Math.floor(WRITE_BATCH / frame.length));
    const batch = new Uint8Array(perWrite * frame.length);
    for (let i = 0; i < perWrite; i++) batch.set(frame, i * frame.length);
    for (let sent = 0; sent < c.count; sent += perWrite) {
      const k = Math.min(perWrite, c.count - sent);
      await writeAll(conn, batch.subarray(0, k * frame.length));
    }
  } else {
    for (let i = 0; i < c.count; i++) await writeAll(conn, frame);
  }
  // The receiver closes once it has everything; wait for that, so nothing is cut short.
  await conn.read(new Uint8Array(1)).catch(() => null);
  finish({});
  conn.close();
}

async function rawEcho(c: RoleConfig): Promise<void> {
  const { conn, listener } = await rawAccept();
  const frame = rawFrame(c.size);
  const probe = c.probe ? new PathProbe() : null;
  await readFrames(conn, c.count, () => {
    probe?.writeStarting();
    return writeAll(conn, frame);
  }, probe ? () => probe.readDone() : undefined);
  finish(probe ? { path: probe.echoMedians() } : {});
  conn.close();
  listener.close();
}

async function rawPing(c: RoleConfig): Promise<void> {
  const conn = await rawDial(c.addr!);
  const frame = rawFrame(c.size);
  const buf = new Uint8Array(64 * 1024);
  const rtts: number[] = [];
  const probe = c.probe ? new PathProbe() : null;
  for (let i = 0; i < c.count; i++) {
    const t0 = performance.now();
    if (probe) {
      probe.sending(t0);
      probe.writeStarting();
    }
    await writeAll(conn, frame);
    let got = 0;
    while (got < frame.length) {
      const n = await conn.read(buf.subarray(got));
      probe?.readDone();
      if (n === null) throw new Error("raw ping: early end");
      got += n;
    }
    probe?.replied();
    rtts.push((performance.now() - t0) * 1000);
  }
  finish(probe ? { rtts, path: probe.pingMedians() } : { rtts });
  conn.close();
}

/** The sockets of this process's TCP links (the role's `sockets`, set at start). */
let sockets: "deno" | "node" = "deno";

function messenger(name: string, probe?: PathProbe | null): Messenger {
  const tcp = new TcpTransport({ sockets });
  const transport = probe ? probedTransport(tcp, probe) : tcp;
  return new Messenger({ name, logger: () => {}, transports: [transport] });
}

async function heartlineRecv(c: RoleConfig): Promise<void> {
  const m = messenger("recv");
  console.log(JSON.stringify({ ready: await m.listen("tcp://127.0.0.1:0") }));
  let got = 0, first = 0;
  if (c.batch) {
    for await (const batch of m.messages({ batch: true })) {
      if (first === 0) first = performance.now();
      for (const msg of batch) {
        if (msg.payload.length > 0 && msg.payload[0] !== 7) throw new Error("reader: corrupt");
      }
      got += batch.length;
      if (got >= c.count) break;
    }
  } else {
    for await (const msg of m.messages()) {
      if (first === 0) first = performance.now();
      if (msg.payload.length > 0 && msg.payload[0] !== 7) throw new Error("reader: corrupt");
      if (++got === c.count) break;
    }
  }
  finish({ messages: got, elapsedMs: performance.now() - first });
  await m.close();
}

async function heartlineSend(c: RoleConfig): Promise<void> {
  const m = messenger("send");
  const conn = await m.connect(c.addr!, { policy: c.policy ?? "lossyClient" });
  const body = new Uint8Array(c.size).fill(7);
  for (let i = 0; i < c.count; i++) await conn.send(1, body);
  // The receiver closes once it has everything.
  for await (const ev of m.events()) if (ev.kind === "close" || ev.kind === "reset") break;
  finish({});
  await m.close();
}

async function heartlineEcho(c: RoleConfig): Promise<void> {
  const probe = c.probe ? new PathProbe() : null;
  const m = messenger("echo", probe);
  console.log(JSON.stringify({ ready: await m.listen("tcp://127.0.0.1:0") }));
  let got = 0;
  for await (const msg of m.messages()) {
    await msg.connection.send(2, msg.payload);
    if (++got === c.count) break;
  }
  finish(probe ? { path: probe.echoMedians() } : {});
  await m.close();
}

async function heartlinePing(c: RoleConfig): Promise<void> {
  const probe = c.probe ? new PathProbe() : null;
  const m = messenger("ping", probe);
  const conn = await m.connect(c.addr!, { policy: c.policy ?? "lossyClient" });
  const replies = m.messages()[Symbol.asyncIterator]();
  const body = new Uint8Array(c.size);
  const rtts: number[] = [];
  for (let i = 0; i < c.count; i++) {
    const t0 = performance.now();
    probe?.sending(t0);
    await conn.send(1, body);
    await replies.next();
    probe?.replied();
    rtts.push((performance.now() - t0) * 1000);
  }
  finish(probe ? { rtts, path: probe.pingMedians() } : { rtts });
  await m.close();
}

/** Collects garbage if the process runs with --expose-gc, twice, so the heap settles. */
function settle(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
}

/**
 * Accepts `count` connections and lets them idle (heartbeats only); reports what each one
 * costs: resident bytes minus those before the first accept, divided by the count. Resident
 * memory of an idle node is not flat: each round of heartbeats leaves garbage that the
 * collector frees in bursts, and freed pages go back to the system a little later. So after
 * a few seconds to settle it samples RSS once a second for `idleSeconds`, as the system sees
 * it (no forced collection), and reports their mean and range; the heap figures are taken
 * after a full collection at the end.
 */
async function idleServer(c: RoleConfig): Promise<void> {
  const m = messenger("idle-server");
  const addr = await m.listen("tcp://127.0.0.1:0");
  settle();
  const before = Deno.memoryUsage();
  console.log(JSON.stringify({ ready: addr }));
  let open = 0;
  for await (const ev of m.events()) {
    if (ev.kind === "accept" && ++open === c.count) break;
  }
  await sampleIdle(c, before, m.connections().length);
}

/**
 * After a few seconds to settle, samples RSS once a second for `idleSeconds` and reports the
 * mean and range per connection, and the heap after a full collection; then ends the process
 * (the clients' side ends with the harness).
 */
async function sampleIdle(c: RoleConfig, before: Deno.MemoryUsage, open: number): Promise<void> {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  await sleep(3000);
  const samples: number[] = [];
  for (let i = 0; i < (c.idleSeconds ?? 20); i++) {
    await sleep(1000);
    samples.push((Deno.memoryUsage().rss - before.rss) / c.count);
  }
  // As sampled: a forced collection may resize it.
  const newSpace = v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space");
  settle();
  const after = Deno.memoryUsage();
  const per = (k: keyof Deno.MemoryUsage) => (after[k] - before[k]) / c.count;
  finish({
    messages: open,
    rssPerConn: samples.reduce((a, b) => a + b, 0) / samples.length,
    rssPerConnMax: Math.max(...samples),
    rssPerConnMin: Math.min(...samples),
    heapPerConn: per("heapUsed"),
    heapTotalPerConn: per("heapTotal"),
    externalPerConn: per("external"),
    newSpaceBytes: newSpace?.space_size ?? 0,
  });
  Deno.exit(0);
}

/** The raw idle roles' beat: 38 bytes, a heartline keepalive heartbeat frame's size. */
const RAW_BEAT = rawFrame(34);

/**
 * The raw floor of an idle connection: what Deno itself costs for the same traffic as an idle
 * heartline link, a pending read (512-byte buffer) and a 38-byte write each way once a second
 * from one timer for all connections, with nothing of heartline's.
 */
function rawIdle(conns: Deno.TcpConn[]): void {
  const drain = async (conn: Deno.TcpConn) => {
    const buf = new Uint8Array(512); // each link its own, as each heartline link has
    try {
      while (await conn.read(buf) !== null) { /* the peer's beats */ }
    } catch { /* the harness ended the peer */ }
  };
  for (const conn of conns) drain(conn);
  setInterval(() => {
    for (const conn of conns) conn.write(RAW_BEAT).catch(() => {});
  }, 1000);
}

async function rawIdleServer(c: RoleConfig): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  settle();
  const before = Deno.memoryUsage();
  console.log(JSON.stringify({ ready: `tcp://127.0.0.1:${listener.addr.port}` }));
  const conns: Deno.TcpConn[] = [];
  for await (const conn of listener) {
    conn.setNoDelay(true);
    if (conns.push(conn) === c.count) break;
  }
  rawIdle(conns);
  await sampleIdle(c, before, conns.length);
}

/**
 * The raw floor over `node:net` sockets (`sockets: "node"`): each accepted socket reads what
 * arrives (a `data` listener) and gets the same beat once a second, with nothing of
 * heartline's. The dialing side is the same as for Deno sockets (it is not measured).
 */
async function rawNodeIdleServer(c: RoleConfig): Promise<void> {
  const sockets: net.Socket[] = [];
  const { promise: all, resolve } = Promise.withResolvers<void>();
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    socket.on("data", () => {}); // the peer's beats
    socket.on("error", () => {}); // the harness ends the peer
    if (sockets.push(socket) === c.count) resolve();
  });
  const port = await new Promise<number>((ready) => {
    server.listen(0, "127.0.0.1", () => ready((server.address() as net.AddressInfo).port));
  });
  settle();
  const before = Deno.memoryUsage();
  console.log(JSON.stringify({ ready: `tcp://127.0.0.1:${port}` }));
  await all;
  setInterval(() => {
    for (const socket of sockets) socket.write(RAW_BEAT);
  }, 1000);
  await sampleIdle(c, before, sockets.length);
}

async function rawIdleClients(c: RoleConfig): Promise<void> {
  const conns: Deno.TcpConn[] = [];
  for (let i = 0; i < c.count; i += 100) {
    const batch = [];
    for (let j = i; j < Math.min(c.count, i + 100); j++) batch.push(rawDial(c.addr!));
    conns.push(...await Promise.all(batch));
  }
  rawIdle(conns);
  finish({ messages: conns.length });
  await new Promise(() => {}); // until the harness ends this process
}

/** Opens `count` connections to `addr`, 100 at a time, each from a messenger of its own. */
async function idleClients(c: RoleConfig): Promise<void> {
  // One connection per peer pair: every connection needs its own node, so a messenger each.
  const all: Messenger[] = [];
  for (let i = 0; i < c.count; i += 100) {
    const batch = [];
    for (let j = i; j < Math.min(c.count, i + 100); j++) {
      const m = messenger(`idle-${j}`);
      all.push(m);
      batch.push(m.connect(c.addr!));
    }
    await Promise.all(batch);
  }
  finish({ messages: all.length });
  await new Promise(() => {}); // until the harness ends this process
}

/**
 * A node spread over `workers` Deno workers: each runs a messenger on the same port
 * (SO_REUSEPORT) and the kernel spreads the connections; reports the rate of all of them.
 */
async function recvWorkers(c: RoleConfig): Promise<void> {
  const portFinder = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const addr = `tcp://127.0.0.1:${portFinder.addr.port}`;
  portFinder.close();
  const counts: number[] = [];
  const firsts: number[] = [];
  const { promise: done, resolve } = Promise.withResolvers<number>();
  let listening = 0;
  const { promise: ready, resolve: allListening } = Promise.withResolvers<void>();
  const workers = Array.from({ length: c.workers ?? 1 }, (_, index) => {
    const w = new Worker(new URL("./worker_recv.ts", import.meta.url), { type: "module" });
    w.onmessage = (e: MessageEvent<{ kind: string; messages: number; first: number }>) => {
      if (e.data.kind === "listening") {
        if (++listening === workers.length) allListening();
        return;
      }
      counts[index] = e.data.messages;
      firsts[index] = e.data.first;
      // Workers report every 10,000 messages: the last report of each may lag by that much.
      const total = counts.reduce((a, b) => a + (b ?? 0), 0);
      if (total >= c.count - workers.length * 10_000) {
        resolve(performance.timeOrigin + performance.now());
      }
    };
    w.postMessage({ addr, index, batch: c.batch ?? false });
    return w;
  });
  await ready;
  console.log(JSON.stringify({ ready: addr }));
  const end = await done;
  const start = Math.min(...firsts.filter((f) => f > 0));
  const total = counts.reduce((a, b) => a + (b ?? 0), 0);
  finish({ messages: total, elapsedMs: end - start, perWorker: counts });
  for (const w of workers) w.terminate();
}

/** `connections` messengers dial `addr` and share `count` messages between them. */
async function sendMany(c: RoleConfig): Promise<void> {
  const n = c.connections ?? 1;
  const body = new Uint8Array(c.size).fill(7);
  const conns = await Promise.all(
    Array.from({ length: n }, (_, i) => messenger(`send-${i}`).connect(c.addr!)),
  );
  await Promise.all(conns.map(async (conn, i) => {
    const share = Math.floor(c.count / n) + (i < c.count % n ? 1 : 0);
    for (let k = 0; k < share; k++) {
      // The receiver ends once it has its count: a send waiting for room then fails.
      if (!await conn.send(1, body).then(() => true, () => false)) return;
    }
  }));
  // Past the count, keep the links up until the harness ends this process.
  finish({});
  await new Promise(() => {});
}

const ROLES = {
  raw: { recv: rawRecv, send: rawSend, echo: rawEcho, ping: rawPing },
  heartline: { recv: heartlineRecv, send: heartlineSend, echo: heartlineEcho, ping: heartlinePing },
};

if (import.meta.main) {
  const config = JSON.parse(Deno.args[0]) as RoleConfig;
  sockets = config.sockets ?? "deno";
  const raw = config.kind === "raw";
  if (config.role === "idle-server") {
    const rawServer = sockets === "node" ? rawNodeIdleServer : rawIdleServer;
    await (raw ? rawServer : idleServer)(config);
  } else if (config.role === "idle-clients") await (raw ? rawIdleClients : idleClients)(config);
  else if (config.role === "recv-workers") await recvWorkers(config);
  else if (config.role === "send-many") await sendMany(config);
  else await ROLES[config.kind][config.role](config);
}
