// What the chaos harness concludes from the nodes' logs: messages sent, delivered, lost,
// duplicated and reordered; remote resets against the kills; detection time of every fault;
// false downs; crashes and unhandled errors; memory. Pure functions over parsed logs, so the
// rules can be read (and tested) apart from the namespaces and processes.

/** Configuration of one node process (passed as JSON in CHAOS_NODE). */
export interface NodeConfig {
  name: string;
  incarnation: number;
  listen: string;
  peers: { name: string; addr: string }[];
  key: string;
  log: string;
  /** Messages per second per peer and kind. */
  rate: number;
  /** Interval of each liveness user's OOB part, ms. */
  oobMs: number;
  heartbeat: { intervalMs: number; acceptablePauseMs: number; minStdDevMs: number };
}

/** One line of a node's log (`t`: wall clock ms, shared by every namespace of the machine). */
export type LogRecord =
  | { e: "start"; inc: number; nonce: string }
  | { e: "S" | "U"; k: "L" | "Y"; to: string; seq: number }
  | { e: "F"; k: "L" | "Y"; to: string; seq: number; why: string }
  | { e: "R"; k: "L" | "Y"; from: string; inc: number; seq: number }
  | { e: "RR"; peer: string; lost: number; reason: string }
  | { e: "N"; peer: string; state: string; reason: string }
  | { e: "mem"; phase: "start" | "end"; rss: number; heap: number }
  | { e: "O"; counts: Record<string, number>; unhandled: number }
  | { e: "err"; what: string; msg: string }
  | { e: "log"; level: string; msg: string }
  | { e: "dump"; peers: unknown[]; conns: unknown[] }
  | { e: "end" };

/** A record as read back, with its time. */
export type Timed = LogRecord & { t: number };

/** One process run of a node. */
export interface Incarnation {
  node: string;
  inc: number;
  records: Timed[];
  /** When the harness killed it (`kill -9`), if it did. */
  killedAt?: number;
  /** Whether it exited on its own (not asked, not killed): a crash. */
  crashed: boolean;
}

/** Fault kinds the harness injects. */
export type FaultKind = "partition" | "oneway" | "bandwidth" | "kill" | "pause";

/** One injected fault, as it happened. */
export interface Fault {
  kind: FaultKind;
  node: string;
  /** Wall clock ms when it began and when it was healed (or the node restarted). */
  start: number;
  end: number;
}

/** Faults that cut a node off (a down of or at that node is expected while they last). */
const CUTTING: ReadonlySet<FaultKind> = new Set(["partition", "oneway", "kill", "pause"]);
/** Faults whose detection is timed against the bound. */
const DETECTED: ReadonlySet<FaultKind> = new Set(["partition", "kill", "pause"]);

/** The run's figures; `chaos` is the object `--json` prints. */
export interface ChaosReport {
  seed: number;
  nodes: number;
  seconds: number;
  faults: Record<"partitions" | "kills" | "pauses" | "oneway" | "bandwidth", number>;
  sent: number;
  delivered: number;
  lost: number;
  duplicated: number;
  reordered: number;
  lossless: { sent: number; delivered: number; returned: number; lost_to_restart: number };
  lossy: { sent: number; delivered: number; lost: number };
  remote_resets: number;
  remote_resets_expected: number;
  remote_reset_lost: number;
  restarts_seen: number;
  restarts_expected: number;
  detections: number;
  missed_detections: number;
  detection_p50_ms: number;
  detection_max_ms: number;
  detection_bound_ms: number;
  false_downs: number;
  /** After each fault: ms until every node saw every other up again. */
  recovery_p50_ms: number;
  recovery_max_ms: number;
  /** Faults after which the cluster did not recover within 30 s. */
  unrecovered: number;
  crashes: number;
  unhandled_errors: number;
  oob_parts: Record<string, number>;
  memory: { node: string; start_rss_mb: number; end_rss_mb: number }[];
  /** Up to 10 examples of each failure, to start debugging from. */
  examples: string[];
}

/** Whether the run kept every promise (what makes `deno task chaos` exit 0). */
export function passed(r: ChaosReport): boolean {
  return r.lost === 0 && r.duplicated === 0 && r.reordered === 0 && r.false_downs === 0 &&
    r.crashes === 0 && r.unhandled_errors === 0 && r.missed_detections === 0 &&
    r.unrecovered === 0 &&
    r.detection_max_ms <= r.detection_bound_ms && r.remote_resets === r.remote_resets_expected &&
    r.restarts_seen === r.restarts_expected;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

interface Run {
  seed: number;
  seconds: number;
  boundMs: number;
  nodes: string[];
  incarnations: Incarnation[];
  faults: Fault[];
  /** When the harness began to shut the nodes down: their closes are not downs to judge. */
  stopAt: number;
  /** After each fault, ms from its heal until every node saw every other up (Infinity: never). */
  recoveries: number[];
}

/** The window after a cutting fault in which downs (and their recovery) are expected. */
const SETTLE_MS = 5000;

/** Analyses one run. */
export function analyse(run: Run): ChaosReport {
  const examples: string[] = [];
  const note = (s: string) => void (examples.length < 40 && examples.push(s));
  const kills = run.faults.filter((f) => f.kind === "kill");
  const killedAt = new Map<string, number>(); // node|inc -> time
  for (const i of run.incarnations) if (i.killedAt) killedAt.set(`${i.node}|${i.inc}`, i.killedAt);

  // Every receipt, by message key: from|inc|to|kind|seq.
  const received = new Map<string, number>();
  let reordered = 0;
  for (const i of run.incarnations) {
    const last = new Map<string, number>();
    for (const r of i.records) {
      if (r.e !== "R") continue;
      const key = `${r.from}|${r.inc}|${i.node}|${r.k}|${r.seq}`;
      received.set(key, (received.get(key) ?? 0) + 1);
      const stream = `${r.from}|${r.inc}|${r.k}`;
      if ((last.get(stream) ?? 0) >= r.seq) {
        reordered++;
        note(`reordered: ${i.node}#${i.inc} got ${r.k} ${r.from}#${r.inc} seq ${r.seq}`);
      }
      last.set(stream, r.seq);
    }
  }
  const lossless = { sent: 0, delivered: 0, returned: 0, lost_to_restart: 0 };
  const lossy = { sent: 0, delivered: 0, lost: 0 };
  let lost = 0, duplicated = 0;
  for (const i of run.incarnations) {
    const reported = new Set<string>();
    for (const r of i.records) {
      if (r.e === "U" || r.e === "F") reported.add(`${r.to}|${r.k}|${r.seq}`);
    }
    for (const r of i.records) {
      if (r.e !== "S") continue;
      const n = received.get(`${i.node}|${i.inc}|${r.to}|${r.k}|${r.seq}`) ?? 0;
      if (n > 1) {
        duplicated += n - 1;
        note(`duplicated: ${r.k} ${i.node}#${i.inc} -> ${r.to} seq ${r.seq} (${n} times)`);
      }
      if (r.k === "Y") {
        lossy.sent++;
        if (n > 0) lossy.delivered++;
        else lossy.lost++;
        continue;
      }
      lossless.sent++;
      if (n > 0) lossless.delivered++;
      else if (reported.has(`${r.to}|${r.k}|${r.seq}`)) lossless.returned++;
      else if (separatedByRestart(r.t, i, r.to, killedAt, kills)) lossless.lost_to_restart++;
      else {
        lost++;
        note(`lost: L ${i.node}#${i.inc} -> ${r.to} seq ${r.seq} sent at ${r.t}`);
      }
    }
  }

  const detections: number[] = [];
  let missed = 0;
  for (const f of run.faults.filter((f) => DETECTED.has(f.kind))) {
    for (const i of run.incarnations) {
      if (i.node === f.node || !aliveThrough(i, f.start, f.end)) continue;
      const down = i.records.find((r) =>
        r.e === "N" && r.peer === f.node && r.state === "down" && r.t >= f.start &&
        r.t <= f.end + run.boundMs
      );
      if (down) detections.push(down.t - f.start);
      else {
        missed++;
        note(`missed: ${i.node} never saw ${f.kind} of ${f.node} at ${f.start}`);
      }
    }
  }
  detections.sort((a, b) => a - b);

  let falseDowns = 0, remoteResets = 0, remoteResetLost = 0, restartsSeen = 0;
  let unhandled = 0, crashes = 0;
  const oob: Record<string, number> = {};
  for (const i of run.incarnations) {
    if (i.crashed) {
      crashes++;
      note(`crash: ${i.node}#${i.inc}`);
    }
    for (const r of i.records) {
      if (r.e === "RR") {
        remoteResets++;
        remoteResetLost += r.lost;
      } else if (r.e === "err") {
        unhandled++;
        note(`unhandled at ${i.node}#${i.inc}: ${r.msg.slice(0, 200)}`);
      } else if (r.e === "O") {
        for (const [user, n] of Object.entries(r.counts)) oob[user] = (oob[user] ?? 0) + n;
      } else if (r.e === "N" && r.state === "up" && r.reason === "restarted") {
        restartsSeen++;
      } else if (r.e === "N" && r.state === "down" && r.t < run.stopAt) {
        const expected = run.faults.some((f) =>
          CUTTING.has(f.kind) && (f.node === r.peer || f.node === i.node) &&
          r.t >= f.start && r.t <= f.end + run.boundMs + SETTLE_MS
        );
        if (!expected) {
          falseDowns++;
          note(`false down: ${i.node}#${i.inc} saw ${r.peer} down (${r.reason}) at ${r.t}`);
        }
      }
    }
  }
  const recovered = run.recoveries.filter(Number.isFinite).sort((a, b) => a - b);
  // Each kill: every other node's lossless session with the victim meets its new incarnation.
  const others = run.nodes.length - 1;
  const count = (k: FaultKind) => run.faults.filter((f) => f.kind === k).length;
  return {
    seed: run.seed,
    nodes: run.nodes.length,
    seconds: run.seconds,
    faults: {
      partitions: count("partition"),
      kills: count("kill"),
      pauses: count("pause"),
      oneway: count("oneway"),
      bandwidth: count("bandwidth"),
    },
    sent: lossless.sent + lossy.sent,
    delivered: lossless.delivered + lossy.delivered,
    lost,
    duplicated,
    reordered,
    lossless,
    lossy,
    remote_resets: remoteResets,
    remote_resets_expected: kills.length * others,
    remote_reset_lost: remoteResetLost,
    restarts_seen: restartsSeen,
    restarts_expected: kills.length * others,
    detections: detections.length,
    missed_detections: missed,
    detection_p50_ms: percentile(detections, 0.5),
    detection_max_ms: detections.at(-1) ?? 0,
    detection_bound_ms: run.boundMs,
    false_downs: falseDowns,
    recovery_p50_ms: percentile(recovered, 0.5),
    recovery_max_ms: recovered.at(-1) ?? 0,
    unrecovered: run.recoveries.length - recovered.length,
    crashes,
    unhandled_errors: unhandled,
    oob_parts: oob,
    memory: run.nodes.map((node) => memoryOf(node, run.incarnations)),
    examples,
  };
}

/**
 * A lossless message that neither arrived nor came back may have died with a process: its
 * sender was killed after sending it, or its receiver was killed soon after (it had taken
 * and acknowledged the message, then died before the application logged it).
 */
function separatedByRestart(
  sentAt: number,
  sender: Incarnation,
  to: string,
  killedAt: Map<string, number>,
  kills: Fault[],
): boolean {
  const senderKilled = killedAt.get(`${sender.node}|${sender.inc}`);
  if (senderKilled !== undefined && senderKilled >= sentAt) return true;
  return kills.some((k) => k.node === to && k.start >= sentAt && k.start - sentAt < 15_000);
}

/** Whether an incarnation ran over the whole of [from, to]. */
function aliveThrough(i: Incarnation, from: number, to: number): boolean {
  const start = i.records[0]?.t ?? Infinity;
  const end = i.killedAt ?? i.records.at(-1)?.t ?? -Infinity;
  return start <= from && end >= to;
}

function memoryOf(node: string, incarnations: Incarnation[]) {
  const mine = incarnations.filter((i) => i.node === node);
  const mem = (phase: "start" | "end", i: Incarnation | undefined) => {
    const r = i?.records.find((r) => r.e === "mem" && r.phase === phase) as
      | { rss: number }
      | undefined;
    return r ? Math.round(r.rss / 1e5) / 10 : NaN;
  };
  return { node, start_rss_mb: mem("start", mine[0]), end_rss_mb: mem("end", mine.at(-1)) };
}

/** The report as a markdown table (for the console and docs/reliability.md). */
export function markdown(r: ChaosReport): string {
  const rows: [string, string, string][] = [
    ["faults", JSON.stringify(r.faults).replace(/[{}"]/g, "").replaceAll(",", ", "), ""],
    ["messages sent (lossless + lossy)", `${r.sent} (${r.lossless.sent} + ${r.lossy.sent})`, ""],
    ["delivered", `${r.delivered} (${r.lossless.delivered} + ${r.lossy.delivered})`, ""],
    ["lossless: lost", String(r.lost), "0"],
    ["lossless: handed back by a remote reset or a failed send", String(r.lossless.returned), ""],
    ["lossless: died with a killed process", String(r.lossless.lost_to_restart), ""],
    ["lossy: lost", String(r.lossy.lost), "(allowed)"],
    ["duplicated", String(r.duplicated), "0"],
    ["reordered", String(r.reordered), "0"],
    ["remote resets (lost in them)", `${r.remote_resets} (${r.remote_reset_lost})`, ""],
    ["remote resets expected from kills", String(r.remote_resets_expected), ""],
    ["`restarted` seen / expected", `${r.restarts_seen} / ${r.restarts_expected}`, ""],
    ["detections (missed)", `${r.detections} (${r.missed_detections})`, "missed 0"],
    [
      "detection p50 / max",
      `${r.detection_p50_ms} / ${r.detection_max_ms} ms`,
      `bound ${r.detection_bound_ms} ms`,
    ],
    ["false downs", String(r.false_downs), "0"],
    [
      "recovery after a fault, p50 / max (unrecovered)",
      `${r.recovery_p50_ms} / ${r.recovery_max_ms} ms (${r.unrecovered})`,
      "unrecovered 0",
    ],
    ["crashes", String(r.crashes), "0"],
    ["unhandled errors", String(r.unhandled_errors), "0"],
    ["OOB parts received", JSON.stringify(r.oob_parts).replace(/[{}"]/g, ""), ""],
    [
      "RSS per node, start -> end (MB)",
      r.memory.map((m) => `${m.node} ${m.start_rss_mb} -> ${m.end_rss_mb}`).join(", "),
      "",
    ],
  ];
  const lines = ["| what | value | must be |", "| --- | --- | --- |"];
  for (const [a, b, c] of rows) lines.push(`| ${a} | ${b} | ${c} |`);
  return lines.join("\n");
}
