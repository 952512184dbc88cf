// Two-process benchmarks: sender and receiver (or pinger and echo) in separate `deno`
// processes on loopback, each workload beside raw Deno TCP measured in the same run, with the
// CPU time and peak RSS of both processes. What a deployment sees, unlike the in-process rows.

import { type BenchOptions, type BenchResult, median, percentile, wanted } from "../_common.ts";
import type { RoleConfig, RoleResult } from "./role.ts";
import { afterWarmUp } from "./_probe.ts";

const ROLE = new URL("./role.ts", import.meta.url);

/** Starts one role process; `ready` resolves with the address it printed, if it listens. */
function start(config: RoleConfig, flags: string[] = []) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      ...flags,
      ROLE.href,
      JSON.stringify(config),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  async function line(): Promise<string> {
    for (;;) {
      const nl = buffer.indexOf("\n");
      if (nl >= 0) {
        const l = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        return l;
      }
      const { value, done } = await lines.read();
      if (done) throw new Error(`${config.kind} ${config.role} ended without output`);
      buffer += value;
    }
  }
  // A bound for every run: a stuck benchmark process is killed, and the run fails.
  const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
  return {
    kill(): Promise<void> {
      clearTimeout(timer);
      try {
        child.kill("SIGKILL");
      } catch {
        // it has ended already
      }
      return child.status.then(() => lines.cancel().catch(() => {}));
    },
    async ready(): Promise<string> {
      return (JSON.parse(await line()) as { ready: string }).ready;
    },
    async result(): Promise<RoleResult> {
      const result = JSON.parse(await line()) as RoleResult;
      const status = await child.status;
      clearTimeout(timer);
      await lines.cancel().catch(() => {});
      if (!status.success) throw new Error(`${config.kind} ${config.role} exited ${status.code}`);
      return result;
    },
  };
}

/** A pair of processes: `server` listens, `client` dials it. */
async function runPair(
  server: RoleConfig,
  client: Omit<RoleConfig, "addr">,
): Promise<{ server: RoleResult; client: RoleResult }> {
  const s = start(server);
  const addr = await s.ready();
  const c = start({ ...client, addr });
  const [sr, cr] = await Promise.all([s.result(), c.result()]);
  return { server: sr, client: cr };
}

/** One run of a one-way stream: the receiver's rate (msg/s) and both processes' figures. */
interface OneWay {
  rate: number;
  client: RoleResult;
  server: RoleResult;
}

/** Runs `count` messages of `size` bytes from a sender process to a receiver process. */
async function oneWay(
  kind: "raw" | "heartline",
  size: number,
  count: number,
  extra: Partial<RoleConfig> = {},
  receiver: Partial<RoleConfig> = {},
): Promise<OneWay> {
  const r = await runPair(
    { role: "recv", kind, size, count, ...receiver },
    { role: "send", kind, size, count, ...extra },
  );
  return { rate: r.server.messages! / (r.server.elapsedMs! / 1000), ...r };
}

/** The run with the median `key` (the upper middle of an even count). */
function medianBy<T>(runs: T[], key: (run: T) => number): T {
  const sorted = [...runs].sort((a, b) => key(a) - key(b));
  return sorted[Math.floor(sorted.length / 2)];
}

/** The run with the median rate. */
function medianRun(runs: OneWay[]): OneWay {
  return medianBy(runs, (r) => r.rate);
}

/**
 * The median runs of `baseline` and `candidate`, taken in turns (baseline, candidate,
 * baseline, ...), so that a slow spell of this shared machine falls on both rather than on
 * one side's rounds; with the ratio (candidate / baseline) of each pair, whose range the rows
 * report.
 */
async function medianPairs(
  rounds: number,
  baseline: () => Promise<OneWay>,
  candidate: () => Promise<OneWay>,
): Promise<{ baseline: OneWay; candidate: OneWay; ratios: number[] }> {
  const baselineRuns: OneWay[] = [], candidateRuns: OneWay[] = [];
  for (let i = 0; i < rounds; i++) {
    baselineRuns.push(await baseline());
    candidateRuns.push(await candidate());
  }
  return {
    baseline: medianRun(baselineRuns),
    candidate: medianRun(candidateRuns),
    ratios: candidateRuns.map((c, i) => c.rate / baselineRuns[i].rate),
  };
}

/** "0.81-0.93": the range of the pairs' ratios ("0.81" for one pair). */
function ratioRange(ratios: number[]): string {
  const low = Math.min(...ratios).toFixed(2), high = Math.max(...ratios).toFixed(2);
  return low === high ? low : `${low}-${high}`;
}

const MiB = 1024 * 1024;

/**
 * Counts sized for about a second per run here, at stop 25's rates (raw is about 3x faster
 * than heartline on 64 B messages, 2x on 1 KiB). Shorter runs weigh start-up (optimization,
 * heap growth, batch and read-buffer sizing) and any hiccup of the machine more: with 20,000
 * heartline messages of 64 KiB (about 0.35 s) the row read 0.64-0.85 in stop 24 and 0.52 in
 * stop 25's first run.
 */
const WORKLOADS = [
  { name: "proc_oneway_64B", size: 64, raw: 24_000_000, ours: 7_000_000, coalesce: true },
  { name: "proc_oneway_1KiB", size: 1024, raw: 5_000_000, ours: 1_800_000, coalesce: true },
  { name: "proc_oneway_64KiB", size: 65536, raw: 60_000, ours: 60_000, coalesce: false },
] as const;

/** The two-process suite. */
export async function procBenchmarks(options: BenchOptions): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  const scale = options.quick ? 0.02 : 1;
  const rounds = options.quick ? 1 : 3;
  const n = (count: number) => Math.max(100, Math.round(count * scale));
  let lossy64: OneWay | null = null, raw64: OneWay | null = null;
  for (const w of WORKLOADS) {
    if (!wanted(options, w.name) && !(w.size === 64 && wanted(options, "proc_"))) continue;
    const { baseline: raw, candidate: ours, ratios } = await medianPairs(
      rounds,
      () => oneWay("raw", w.size, n(w.raw), { coalesce: w.coalesce }),
      () => oneWay("heartline", w.size, n(w.ours)),
    );
    if (w.size === 64) [lossy64, raw64] = [ours, raw];
    if (!wanted(options, w.name)) continue;
    out.push({
      name: w.name,
      unit: "msg/s",
      value: ours.rate,
      baseline_value: raw.rate,
      ratio: ours.rate / raw.rate,
      note: `raw with ${w.coalesce ? "~64 KiB coalesced writes" : "a write per message"}; ` +
        `${((ours.rate * w.size) / 1e9).toFixed(2)} GB/s; median of ${rounds}, ` +
        `taken in turns with raw's (ratios of the pairs ${ratioRange(ratios)})`,
    });
  }
  if (lossy64 && raw64) out.push(...resourceRows(lossy64, raw64));
  // Variants of the 64 B heartline stream, each against lossy runs of its own (in turns).
  const variants = [
    [
      "proc_oneway_64B_lossless",
      { policy: "losslessClient" },
      {},
      "baseline: lossy runs of the same count",
    ],
    [
      "proc_oneway_64B_batch",
      {},
      { batch: true },
      "the receiver takes messages({ batch: true }); baseline: lossy runs of the same count",
    ],
  ] as const;
  const count64 = n(WORKLOADS[0].ours);
  for (const [name, sender, receiver, note] of variants) {
    if (!wanted(options, name)) continue;
    // Its own lossy runs, in turns with the variant's: the same count, the same spell.
    const { baseline: lossy, candidate: v, ratios } = await medianPairs(
      rounds,
      () => oneWay("heartline", 64, count64),
      () => oneWay("heartline", 64, count64, sender, receiver),
    );
    out.push({
      name,
      unit: "msg/s",
      value: v.rate,
      baseline_value: lossy.rate,
      ratio: v.rate / lossy.rate,
      note: `${note}; median of ${rounds}, in turns (ratios of the pairs ${ratioRange(ratios)})`,
    });
  }
  if (wanted(options, "proc_pingpong")) {
    out.push(...await pingPongRows(options.quick ? 1000 : 100_000, rounds));
  }
  if (wanted(options, "proc_pingpong_64B_js_path")) {
    out.push(await pathRow(options.quick ? 1000 : 100_000, rounds));
  }
  if (wanted(options, "proc_workers")) {
    out.push(...await workerRows(options.quick ? 0.05 : 1, rounds));
  }
  if (wanted(options, "idle_conn_bytes")) out.push(...await idleRows(options.quick ? 200 : 10_000));
  return out;
}

/** Messages/s of 64 B over 16 connections into a node spread over `workers` workers. */
async function workersRun(workers: number, count: number): Promise<OneWay> {
  // Workers load their module from the repository: that read is the only one they need.
  const root = new URL("../../", import.meta.url).pathname;
  const server = start({ role: "recv-workers", kind: "heartline", size: 64, count, workers }, [
    `--allow-read=${root}`,
    "--unstable-net", // SO_REUSEPORT is unstable in Deno 2.9
  ]);
  const addr = await server.ready();
  const client = start({
    role: "send-many",
    kind: "heartline",
    size: 64,
    count: count + workers * 10_000, // workers report in steps of 10,000
    connections: 16,
    addr,
  });
  try {
    const r = await server.result();
    // The sender runs until it is ended: its own figures are not measured in this row.
    return { rate: r.messages! / (r.elapsedMs! / 1000), server: r, client: r };
  } finally {
    await client.kill();
  }
}

/** The node on one worker against two, 16 connections of 64 B each into it. */
async function workerRows(scale: number, rounds: number): Promise<BenchResult[]> {
  const count = Math.max(50_000, Math.round(4_000_000 * scale));
  const { baseline: one, candidate: two, ratios } = await medianPairs(
    rounds,
    () => workersRun(1, count),
    () => workersRun(2, count),
  );
  const split = two.server.perWorker?.join(" + ") ?? "";
  return [{
    name: "proc_workers_16conn_64B",
    unit: "msg/s",
    value: two.rate,
    baseline_value: one.rate,
    ratio: two.rate / one.rate,
    note: `2 workers against 1 (SO_REUSEPORT), 16 connections from one sender process; ` +
      `split ${split}; median of ${rounds}, in turns (ratios of the pairs ${ratioRange(ratios)})`,
  }];
}

/** The budget per idle connection the issue sets: 16 KiB. */
const IDLE_BUDGET = 16 * 1024;

/**
 * Resident bytes per idle connection on the accepting side with `count` open: heartline's TCP
 * links over Deno's sockets (the default), then over `node:net` sockets (`sockets: "node"`),
 * each beside the raw floor of the same sockets with the same traffic (a read waiting and a
 * 38-byte beat each way once a second per connection).
 */
async function idleRows(count: number): Promise<BenchResult[]> {
  const idleSeconds = count < 1000 ? 2 : 20;
  const rows: BenchResult[] = [];
  for (const sockets of ["deno", "node"] as const) {
    const r = await idleRun("heartline", count, idleSeconds, sockets);
    const raw = await idleRun("raw", count, idleSeconds, sockets);
    const what = sockets === "deno" ? "Deno TCP" : "node:net";
    rows.push(idleRow(
      sockets === "deno" ? "idle_conn_bytes" : "idle_conn_bytes_node_sockets",
      r,
      `${count} idle connections over ${what} sockets, RSS sampled once a second for ` +
        `${idleSeconds} s`,
      `raw ${what} with the same traffic: mean ${Math.round(raw.rssPerConn!)} B (range ` +
        `${Math.round(raw.rssPerConnMin!)}-${Math.round(raw.rssPerConnMax!)} B; young ` +
        `generation ${(raw.newSpaceBytes! / MiB).toFixed(0)} MiB)`,
    ));
  }
  // V8's young generation grows to its largest while thousands of connections are set up and
  // stays there (docs/operations.md); a node that mostly idles may cap it.
  const capped = await idleRun("heartline", count, idleSeconds, "node", YOUNG_GENERATION_CAP);
  rows.push(idleRow(
    "idle_conn_bytes_node_sockets_young_capped",
    capped,
    `the same over node:net sockets with ${YOUNG_GENERATION_CAP} (not V8's default; it costs ` +
      "a stream of small messages about a quarter of its rate)",
    "",
  ));
  return rows;
}

/** The V8 flag of the capped idle row: semi-spaces of at most 4 MB. */
const YOUNG_GENERATION_CAP = "--max-semi-space-size=4";

/** An idle row from one measurement, against the 16 KiB budget. */
function idleRow(name: string, r: RoleResult, what: string, raw: string): BenchResult {
  return {
    name,
    unit: "B/conn",
    value: r.rssPerConn!,
    baseline_value: IDLE_BUDGET,
    ratio: IDLE_BUDGET / r.rssPerConn!,
    note: `${what}: mean; range ${Math.round(r.rssPerConnMin!)}-` +
      `${Math.round(r.rssPerConnMax!)} B; per connection: heap used ` +
      `${Math.round(r.heapPerConn!)} B, heap total ${Math.round(r.heapTotalPerConn!)} B ` +
      `(after a full collection); V8's young generation as sampled ` +
      `${(r.newSpaceBytes! / MiB).toFixed(0)} MiB for the process ` +
      `(${Math.round(r.newSpaceBytes! / r.messages!)} B per connection), ` +
      `external ${Math.round(r.externalPerConn!)} B; ${raw ? `${raw}; ` : ""}` +
      "baseline: the 16 KiB budget",
  };
}

/** One idle measurement: `count` connections of `kind` open, the accepting side sampled. */
async function idleRun(
  kind: "raw" | "heartline",
  count: number,
  idleSeconds: number,
  sockets: "deno" | "node",
  v8Flag = "",
): Promise<RoleResult> {
  const server = start({ role: "idle-server", kind, size: 0, count, idleSeconds, sockets }, [
    `--v8-flags=--expose-gc${v8Flag ? `,${v8Flag}` : ""}`,
  ]);
  const addr = await server.ready();
  const clients = start({ role: "idle-clients", kind, size: 0, count, addr, sockets });
  try {
    return await server.result();
  } finally {
    await clients.kill();
  }
}

/** CPU time per message and peak RSS of both processes of the 64 B stream, against raw's. */
function resourceRows(ours: OneWay, raw: OneWay): BenchResult[] {
  const rows: BenchResult[] = [];
  for (const side of ["client", "server"] as const) {
    const o = ours[side], r = raw[side];
    rows.push({
      name: `proc_rss_${side}_64B`,
      unit: "MiB",
      value: o.peakRssBytes / MiB,
      baseline_value: r.peakRssBytes / MiB,
      ratio: r.peakRssBytes / o.peakRssBytes,
      note: `peak RSS (ru_maxrss) of the ${side === "client" ? "sender" : "receiver"}`,
    });
    const perMsg = (x: RoleResult, m: number) => (x.cpuMs * 1e6) / m;
    const oNs = perMsg(o, ours.server.messages!), rNs = perMsg(r, raw.server.messages!);
    rows.push({
      name: `proc_cpu_${side}_64B`,
      unit: "ns/msg",
      value: oNs,
      baseline_value: rNs,
      ratio: rNs / oNs,
      note: `CPU time (user + system) of the ${side === "client" ? "sender" : "receiver"}`,
    });
  }
  return rows;
}

/**
 * p50, p99 and p99.9 of 64 B round trips: per percentile, the median over `rounds` runs of
 * `count` round trips, taken in turns with raw's, each run's first half dropped as warm-up.
 */
async function pingPongRows(count: number, rounds: number): Promise<BenchResult[]> {
  // The first half of each run warms both paths up: heartline's code keeps being optimized for
  // about a second (some 40,000 round trips), and round trips in that time include
  // compilation pauses of up to 5 ms that a running node does not see. Percentiles come from
  // the rest.
  const run = async (kind: "raw" | "heartline") => {
    const r = await runPair(
      { role: "echo", kind, size: 64, count },
      { role: "ping", kind, size: 64, count },
    );
    return afterWarmUp(r.client.rtts!);
  };
  // Runs in turns with raw's, so that a slow spell falls on both; each row is the median of
  // the runs' percentiles.
  const raws: number[][] = [], ours: number[][] = [];
  for (let i = 0; i < rounds; i++) {
    raws.push(await run("raw"));
    ours.push(await run("heartline"));
  }
  return ([[50, "p50"], [99, "p99"], [99.9, "p999"]] as const).map(([p, label]) => {
    const rawAtP = raws.map((r) => percentile(r, p)), oursAtP = ours.map((o) => percentile(o, p));
    const value = median(oursAtP), baseline = median(rawAtP);
    return {
      name: `proc_pingpong_64B_${label}`,
      unit: "us",
      value,
      baseline_value: baseline,
      ratio: baseline / value,
      note: `median of ${rounds} runs in turns with raw's, ${ours[0].length} round trips each; ` +
        `ratios of the pairs ${ratioRange(oursAtP.map((o, i) => rawAtP[i] / o))}`,
    };
  });
}

/**
 * The code a 64 B round trip runs between reads and writes, raw's and heartline's, timed in
 * both processes (bench/proc/_probe.ts): in the echo from a read's completion to the reply's
 * write call, in the pinger from send() to the write call and from a read's completion to the
 * reply in hand. For heartline that is the session's code; the links' own handling of reads
 * and writes, the work after a write and garbage collection lie outside it. The run with the
 * median total of `rounds` runs of each, taken in turns.
 */
async function pathRow(count: number, rounds: number): Promise<BenchResult> {
  const run = async (kind: "raw" | "heartline") => {
    const r = await runPair(
      { role: "echo", kind, size: 64, count, probe: true },
      { role: "ping", kind, size: 64, count, probe: true },
    );
    const echoReadToWrite = r.server.path!.readToWrite!;
    const pingSendToWrite = r.client.path!.sendToWrite!;
    const pingReadToReply = r.client.path!.readToReply!;
    return {
      echoReadToWrite,
      pingSendToWrite,
      pingReadToReply,
      total: echoReadToWrite + pingSendToWrite + pingReadToReply,
      p50: median(afterWarmUp(r.client.rtts!)),
    };
  };
  type PathRun = Awaited<ReturnType<typeof run>>;
  const raws: PathRun[] = [], ours: PathRun[] = [];
  for (let i = 0; i < rounds; i++) {
    raws.push(await run("raw"));
    ours.push(await run("heartline"));
  }
  const raw = medianBy(raws, (r) => r.total), heartline = medianBy(ours, (r) => r.total);
  const us = (x: number) => x.toFixed(2);
  const span = (key: "echoReadToWrite" | "pingSendToWrite" | "pingReadToReply") =>
    `${us(heartline[key])} (raw ${us(raw[key])})`;
  return {
    name: "proc_pingpong_64B_js_path",
    unit: "us",
    value: heartline.total,
    baseline_value: raw.total,
    ratio: raw.total / heartline.total,
    note: `code between reads and writes per 64 B round trip, medians in us: echo read to ` +
      `reply write ${span("echoReadToWrite")}, pinger send() to write ` +
      `${span("pingSendToWrite")}, pinger read to reply in hand ${span("pingReadToReply")}; ` +
      `heartline's extra ${us(heartline.total - raw.total)} us against a p50 gap of ` +
      `${us(heartline.p50 - raw.p50)} us in the same runs (p50 <= 1.1x raw allows ` +
      `${us(raw.p50 / 10)} us); each span includes one clock read (about 0.08 us) on both ` +
      `sides; the run with the median total of ${rounds}, ${count} round trips each (the ` +
      `first half warms up), in turns with raw's`,
  };
}
