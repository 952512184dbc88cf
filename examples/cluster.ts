/**
 * The demo: starts a local cluster of four nodes (separate processes, loopback only) that send
 * each other numbered messages over lossless peer sessions, while three liveness users per
 * connection (OSDPing, LingerPing, WatchPing) ride the heartbeats as out-of-band parts.
 * Mid-run it kills one node with SIGKILL, measures how long the survivors take to see it
 * `down`, and restarts it on the same address, which the survivors see as `restarted`. On
 * Ctrl-C (or after `--seconds`) it stops every node in order and prints a summary: frames
 * saved by coalescing, the detection time, `restarted` seen, and whether every message was
 * delivered exactly once.
 *
 * ```sh
 * deno task demo                 # until Ctrl-C (the kill comes after 6 s)
 * deno task demo --seconds 12    # bounded run (the kill at 30%; none under 6 s)
 * deno task demo --transport ws  # over WebSocket (also: quic, with throwaway certificates)
 * ```
 *
 * Nodes (examples/node.ts with `--report`) talk to this process in lines on their stdout:
 * lines that start with `@json ` are reports for the demo and are not echoed; the others are
 * printed with the node's name in front.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { Report, StreamReport } from "./node.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string" },
    nodes: { type: "string", default: "4" },
    transport: { type: "string", default: "tcp" },
  },
});

/** Runs shorter than this skip the kill: it needs time to be seen and the node to rejoin. */
const MIN_SECONDS_FOR_KILL = 6;
/** The kill comes at this share of `--seconds` (once every node is connected). */
const KILL_AT_SHARE = 0.3;
/** Without `--seconds`, the kill comes after this long (once every node is connected). */
const KILL_AFTER_MS = 6_000;
/** The killed node is restarted this long after its `down` is seen ... */
const RESTART_AFTER_DOWN_MS = 200;
/** ... or this long after the kill if no survivor reports it down. */
const RESTART_AT_MOST_MS = 10_000;
/** At the end of `--seconds`, a restarted node still rejoining gets at most this long more. */
const REJOIN_GRACE_MS = 5_000;
/** Nodes get this long to close in order after SIGTERM before they are killed. */
const STOP_BOUND_MS = 20_000;

/** Ports handed out so far (nothing listens on them until the nodes start). */
const takenPorts = new Set<number>();

/**
 * A port that is free now, chosen below the kernel's ephemeral range (32768 and up on Linux):
 * a port the kernel hands out for bind(0) or an outgoing connection could be taken by another
 * process between this check and the node's own bind.
 */
function freePort(): number {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    // Nothing is bound to the ports handed out until the nodes start: never hand one twice.
    if (takenPorts.has(port)) continue;
    takenPorts.add(port);
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return port;
    } catch (error) {
      if (!(error instanceof Deno.errors.AddrInUse)) throw error;
    }
  }
}

/** The lines of a byte stream as they complete. Ends when the stream ends. */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    let nl: number;
    while ((nl = rest.indexOf("\n")) >= 0) {
      yield rest.slice(0, nl);
      rest = rest.slice(nl + 1);
    }
  }
  if (rest) yield rest;
}

const count = Number(values.nodes);
const transport = values.transport!;
const seconds = values.seconds === undefined ? undefined : Number(values.seconds);
if (!["tcp", "ws", "quic"].includes(transport)) {
  console.error(`Unknown transport: ${transport} (tcp, ws or quic)`);
  Deno.exit(2);
}
const NAMES = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"];
if (!Number.isInteger(count) || count < 1 || count > NAMES.length) {
  console.error(`Option --nodes must be 1 to ${NAMES.length}: ${values.nodes}`);
  Deno.exit(2);
}
if (seconds !== undefined && !(seconds > 0)) {
  console.error(`Option --seconds must be positive: ${values.seconds}`);
  Deno.exit(2);
}
const addrOf = (port: number) =>
  transport === "ws" ? `ws://127.0.0.1:${port}/heartline` : `${transport}://127.0.0.1:${port}`;
// QUIC needs TLS: make a throwaway CA and leaf for this run, removed on exit.
let certDir: string | null = null;
const extraArgs: string[] = [];
const nodeFlags: string[] = [];
if (transport === "quic") {
  const { testCerts } = await import("./_dev_certs.ts");
  const certs = await testCerts();
  certDir = await Deno.makeTempDir({ prefix: "heartline-demo-" });
  for (const [name, pem] of Object.entries(certs)) {
    await Deno.writeTextFile(`${certDir}/${name}.pem`, pem);
  }
  extraArgs.push(
    "--cert",
    `${certDir}/cert.pem`,
    "--key",
    `${certDir}/key.pem`,
    "--ca",
    `${certDir}/caCert.pem`,
  );
  nodeFlags.push("--unstable-net", `--allow-read=${certDir}`);
}
const names = NAMES.slice(0, count);
const ports = names.map(() => freePort());
const adminPorts = names.map(() => freePort());
const nodeScript = new URL("./node.ts", import.meta.url);
const colors = ["\x1b[36m", "\x1b[33m", "\x1b[35m", "\x1b[32m", "\x1b[34m"];
const useColor = Deno.stdout.isTerminal();
const started = Date.now();
const secondsNow = () => ((Date.now() - started) / 1000).toFixed(1);

function label(name: string, i: number): string {
  return useColor ? `${colors[i % colors.length]}${name.padEnd(8)}\x1b[0m` : name.padEnd(8);
}
const demoLabel = useColor ? `\x1b[1m${"demo".padEnd(8)}\x1b[0m` : "demo".padEnd(8);

/** Prints a line of the demo's own, beside the nodes' lines. */
function say(line: string): void {
  console.log(`${demoLabel}| ${line}`);
}

/** One process of a node; a restarted node has a second one. */
interface Incarnation {
  child: Deno.ChildProcess;
  status: Promise<Deno.CommandStatus>;
  /** The node's instance nonce, from its `ready` report. */
  nonce?: string;
  final?: Extract<Report, { kind: "final" }>;
  killed: boolean;
  /** Settles when its stdout and stderr have been read to the end (never rejects). */
  output: Promise<unknown>;
}

/** A node of the demo: its name, address and processes. */
interface DemoNode {
  name: string;
  index: number;
  incarnations: Incarnation[];
  /** Peers this node has reported `up`. */
  up: Set<string>;
}

const nodes: DemoNode[] = names.map((name, index) => ({
  name,
  index,
  incarnations: [],
  up: new Set(),
}));

/** What the kill showed; null when the run is too short for one. */
const kill = {
  planned: seconds === undefined || seconds >= MIN_SECONDS_FOR_KILL ? count > 1 : false,
  victim: nodes[count - 1],
  /** Date.now() of the SIGKILL. */
  at: 0,
  /** First `down` for the victim after the kill: who saw it, why, and when (Date.now()). */
  down: null as null | { by: string; reason: string; wallMs: number },
  restartedAt: 0,
  /** Survivors that saw the new incarnation as `restarted`. */
  restartedSeen: new Set<string>(),
  /** Messages written to the killed incarnation and never acknowledged, as survivors saw. */
  unacked: 0,
};

let oobUsers: Record<string, number> = {};
let heartbeat: Extract<Report, { kind: "ready" }>["heartbeat"] | undefined;

function spawn(node: DemoNode): void {
  const i = node.index;
  const args = [
    "run",
    "--allow-net=127.0.0.1",
    ...nodeFlags,
    nodeScript.href,
    "--name",
    node.name,
    "--listen",
    addrOf(ports[i]),
    ...extraArgs,
    "--admin-port",
    String(adminPorts[i]),
    "--every-ms",
    "100",
    "--report",
    // Each node dials the nodes before it: one connection per pair.
    ...names.slice(0, i).flatMap((_, j) => ["--peer", addrOf(ports[j])]),
  ];
  const child = new Deno.Command(Deno.execPath(), {
    args,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const inc: Incarnation = {
    child,
    status: child.status,
    killed: false,
    output: Promise.resolve(),
  };
  node.incarnations.push(inc);
  const prefix = label(node.name, i);
  const stdout = (async () => {
    for await (const line of lines(child.stdout)) {
      if (!line.startsWith("@json ")) {
        console.log(`${prefix}| ${line}`);
        continue;
      }
      try {
        onReport(node, inc, JSON.parse(line.slice(6)) as Report);
      } catch (error) {
        say(`bad report from ${node.name}: ${(error as Error).message}: ${line}`);
      }
    }
  })().catch((error) => say(`reading ${node.name}'s output failed: ${error?.message ?? error}`));
  // The library's log lines (stderr), with the node's name in front too.
  const stderr = (async () => {
    for await (const line of lines(child.stderr)) console.error(`${prefix}| ${line}`);
  })().catch((error) => say(`reading ${node.name}'s log failed: ${error?.message ?? error}`));
  inc.output = Promise.all([stdout, stderr]);
}

function onReport(node: DemoNode, inc: Incarnation, r: Report): void {
  switch (r.kind) {
    case "ready":
      inc.nonce = r.incarnation;
      oobUsers = r.oobUsers;
      heartbeat = r.heartbeat;
      break;
    case "final":
      inc.final = r;
      break;
    case "remote-reset":
      if (r.peer === kill.victim.name && kill.at > 0) kill.unacked += r.unacked;
      break;
    case "node":
      if (r.state === "up") node.up.add(r.peer);
      else node.up.delete(r.peer);
      onNodeEvent(node, r);
      break;
  }
}

function onNodeEvent(node: DemoNode, r: Extract<Report, { kind: "node" }>): void {
  if (kill.at === 0 || r.peer !== kill.victim.name) {
    if (killWaiting && nodes.every((n) => n.up.size === count - 1)) killNow();
    return;
  }
  // Detection is the failure detector's verdict on a silent peer; a `down` for a session that
  // ended (`closed`, `reset`) is a node stopping, not a detection.
  const detected = r.reason === "silent" || r.reason === "not-echoing";
  if (r.state === "down" && detected && !stopping && kill.down === null && kill.restartedAt === 0) {
    kill.down = { by: node.name, reason: r.reason, wallMs: r.wallMs };
    say(
      `${node.name} sees ${kill.victim.name} down (${r.reason}) ${r.wallMs - kill.at} ms ` +
        `after the kill`,
    );
    clearTimeout(restartTimer);
    restartTimer = setTimeout(restart, RESTART_AFTER_DOWN_MS);
  }
  if (r.state === "up" && r.reason === "restarted" && kill.restartedAt > 0) {
    kill.restartedSeen.add(node.name);
    say(`${node.name} sees ${kill.victim.name} restarted`);
    if (rejoining()) return;
    onRejoined?.();
  }
}

/** Whether the restarted node is up but not yet seen `restarted` by every survivor. */
function rejoining(): boolean {
  return kill.restartedAt > 0 && kill.restartedSeen.size < count - 1;
}
let onRejoined: (() => void) | null = null;

let killTimer: ReturnType<typeof setTimeout> | undefined;
let restartTimer: ReturnType<typeof setTimeout> | undefined;
let killWaiting = false;

/** Kills the victim once every node is connected to every other. */
function killWhenConnected(): void {
  if (stopping) return;
  if (nodes.every((n) => n.up.size === count - 1)) killNow();
  else killWaiting = true;
}

function killNow(): void {
  killWaiting = false;
  if (stopping || kill.at > 0) return;
  const inc = kill.victim.incarnations.at(-1)!;
  say(`killing ${kill.victim.name} with SIGKILL at ${secondsNow()} s`);
  kill.at = Date.now();
  inc.killed = true;
  try {
    inc.child.kill("SIGKILL");
  } catch {
    // already gone
  }
  restartTimer = setTimeout(restart, RESTART_AT_MOST_MS);
}

function restart(): void {
  if (stopping || kill.restartedAt > 0) return;
  if (kill.down === null) say(`no survivor saw ${kill.victim.name} down yet`);
  say(`restarting ${kill.victim.name} on ${addrOf(ports[kill.victim.index])}`);
  kill.restartedAt = Date.now();
  spawn(kill.victim);
}

const bound = seconds === undefined ? "Ctrl-C stops them" : `for ${seconds} s`;
console.log(
  `heartline demo: ${count} nodes on 127.0.0.1 over ${transport}, ${bound}; each sends every ` +
    `peer 10 numbered messages a second over lossless peer sessions`,
);
for (const [i, name] of names.entries()) {
  say(`${name.padEnd(8)} ${addrOf(ports[i])}, admin http://127.0.0.1:${adminPorts[i]}/health`);
}
say(`live page: http://127.0.0.1:${adminPorts[0]}/`);
if (kill.planned) {
  const when = seconds === undefined
    ? `after ${KILL_AFTER_MS / 1000} s`
    : `at ${(seconds * KILL_AT_SHARE).toFixed(1)} s`;
  say(`plan: kill ${kill.victim.name} with SIGKILL ${when}, restart it once it is seen down`);
} else if (count > 1) {
  say(`no kill in this run: it needs --seconds ${MIN_SECONDS_FOR_KILL} or more`);
}
for (const node of nodes) spawn(node);
if (kill.planned) {
  const ms = seconds === undefined ? KILL_AFTER_MS : seconds * KILL_AT_SHARE * 1000;
  killTimer = setTimeout(killWhenConnected, ms);
}

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  clearTimeout(killTimer);
  clearTimeout(restartTimer);
  const current = nodes.map((n) => n.incarnations.at(-1)!);
  for (const inc of current) {
    if (inc.killed) continue;
    try {
      inc.child.kill("SIGTERM");
    } catch {
      // already gone
    }
  }
  const overdue = setTimeout(() => {
    say(`nodes still running ${STOP_BOUND_MS / 1000} s after SIGTERM: killing them`);
    for (const inc of current) {
      try {
        inc.child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
  }, STOP_BOUND_MS);
  // The final reports are the last lines a node prints: read each output to its end too.
  const statuses = await Promise.all(current.map(async (inc) => {
    const status = await inc.status;
    await inc.output;
    return status;
  }));
  clearTimeout(overdue);
  if (certDir) await Deno.remove(certDir, { recursive: true });
  printSummary();
  // A node counts as clean when its last process closed in order (a SIGTERM that came before
  // the node could handle it counts too); the killed process does not count against it.
  let clean = 0, total = 0;
  const notes: string[] = [];
  for (const [i, status] of statuses.entries()) {
    if (current[i].killed) {
      notes.push(`${nodes[i].name} was killed and not restarted before the stop`);
      continue;
    }
    total++;
    if (status.success || status.signal === "SIGTERM") clean++;
  }
  const note = notes.length > 0 ? ` (${notes.join("; ")})` : "";
  console.log(`demo stopped: ${clean}/${total} nodes clean${note}`);
  Deno.exit(clean === total ? 0 : 1);
}

/** Totals of one row of the message table. */
interface Tally {
  sent: number;
  delivered: number;
  died: number;
  lost: number;
  duplicated: number;
  reordered: number;
}

function newTally(): Tally {
  return { sent: 0, delivered: 0, died: 0, lost: 0, duplicated: 0, reordered: 0 };
}

/**
 * The message accounting, from the nodes' final reports. Every sender numbers its messages
 * per peer from 1; each receiver reports, per sender incarnation, the first and last number
 * it got and how many distinct, duplicated and reordered. Messages to the killed process are
 * the numbers before the first one its new incarnation got: they died with it.
 */
function tallyMessages(): {
  stopped: Tally;
  killed: Tally;
  missing: string[];
  anomalies: string[];
} {
  const stopped = newTally(), killed = newTally();
  const missing: string[] = [];
  /** Streams that were not exactly once, for the reader to look into. */
  const anomalies: string[] = [];
  const note = (from: string, to: string, t: Partial<Tally>, s: StreamReport | undefined) => {
    if (!t.lost && !t.duplicated && !t.reordered) return;
    const got = s ? `#${s.first}-#${s.last}, ${s.delivered} distinct` : "nothing";
    const sent = t.sent === undefined ? "" : `${t.sent} sent, `;
    anomalies.push(
      `${from} -> ${to}: ${sent}received ${got}; lost ${t.lost ?? 0}, ` +
        `duplicated ${t.duplicated ?? 0}, reordered ${t.reordered ?? 0}`,
    );
  };
  const finals = new Map<string, Extract<Report, { kind: "final" }>>();
  for (const node of nodes) {
    const last = node.incarnations.at(-1)!;
    if (last.final) finals.set(node.name, last.final);
    else if (!last.killed) missing.push(node.name); // (a killed process reports nothing)
  }
  const killedNonce = kill.at > 0 ? kill.victim.incarnations[0].nonce : undefined;
  const streamOf = (receiver: string, from: string, incarnation: string) =>
    finals.get(receiver)?.received.find((s) => s.from === from && s.incarnation === incarnation);
  for (const sender of finals.values()) {
    for (const [receiver, numbered] of Object.entries(sender.sent)) {
      const receiverKilled = killedNonce !== undefined && receiver === kill.victim.name;
      // No final counts to compare with (unless it is the killed node, not yet restarted).
      if (!finals.has(receiver) && !receiverKilled) continue;
      const sent = numbered - (sender.failed[receiver] ?? 0);
      const s: StreamReport | undefined = streamOf(receiver, sender.name, sender.incarnation);
      const died = receiverKilled ? (s ? s.first - 1 : sent) : 0;
      const delivered = s?.delivered ?? 0;
      stopped.sent += sent;
      stopped.delivered += delivered;
      stopped.died += died;
      const lost = Math.max(0, sent - died - delivered);
      stopped.lost += lost;
      stopped.duplicated += s?.duplicated ?? 0;
      stopped.reordered += s?.reordered ?? 0;
      note(sender.name, receiver, {
        sent,
        lost,
        duplicated: s?.duplicated,
        reordered: s?.reordered,
      }, s);
    }
  }
  if (killedNonce !== undefined) {
    // What the killed process sent is known only as far as it arrived: from #1, no gaps.
    for (const final of finals.values()) {
      for (const s of final.received) {
        if (s.incarnation !== killedNonce) continue;
        killed.delivered += s.delivered;
        const lost = s.first - 1 + (s.last - s.first + 1 - s.delivered);
        killed.lost += lost;
        killed.duplicated += s.duplicated;
        killed.reordered += s.reordered;
        note(`${s.from} (killed)`, final.name, { lost, ...s }, s);
      }
    }
  }
  return { stopped, killed, missing, anomalies };
}

function printSummary(): void {
  const finals = nodes.map((n) => n.incarnations.at(-1)!.final).filter((f) => f !== undefined);
  const rows: [string, string][] = [];
  const restarted = kill.restartedAt > 0
    ? " (one killed with SIGKILL and restarted)"
    : kill.at > 0
    ? " (one killed with SIGKILL, not restarted before the stop)"
    : "";
  rows.push(["nodes", `${count}${restarted}`]);
  const users = Object.entries(oobUsers).map(([op, ms]) => `${op} every ${ms} ms`);
  rows.push(["liveness users per connection", `${users.length}: ${users.join(", ")}`]);
  const frames = finals.reduce((sum, f) => sum + f.heartbeatFrames, 0);
  const byOp = new Map<string, number>();
  for (const f of finals) {
    for (const [op, n] of Object.entries(f.partsSent)) byOp.set(op, (byOp.get(op) ?? 0) + n);
  }
  const parts = [...byOp.values()].reduce((a, b) => a + b, 0);
  const perOp = [...byOp].map(([op, n]) => `${op} ${n}`).join(", ");
  rows.push(["OOB parts sent", `${parts} (${perOp})`]);
  rows.push(["heartbeat frames sent", `${frames} (each also carries the node's own keepalive)`]);
  const ratio = frames > 0 ? (parts / frames).toFixed(2) : "-";
  rows.push(["frames saved by coalescing", `${parts - frames} (${ratio} parts per frame)`]);
  if (kill.at === 0) {
    rows.push(["kill", kill.planned ? "not done before the stop" : "skipped (run too short)"]);
  } else {
    const d = kill.down;
    rows.push([
      "kill detected in",
      d
        ? `${d.wallMs - kill.at} ms (first down: ${d.by} saw ${kill.victim.name} ${d.reason})`
        : "not detected before the stop",
    ]);
    if (heartbeat) {
      rows.push([
        "failure detector",
        `phi accrual, heartbeat every ${heartbeat.intervalMs} ms, threshold ` +
        `${heartbeat.phiThreshold}, acceptable pause ${heartbeat.acceptablePauseMs} ms`,
      ]);
    }
    const survivors = nodes.filter((n) => n !== kill.victim).map((n) =>
      `${n.name} ${kill.restartedSeen.has(n.name) ? "yes" : "no"}`
    );
    const seen = kill.restartedAt > 0 ? survivors.join(", ") : "no restart before the stop";
    rows.push(["restarted seen", seen]);
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  console.log("\nsummary (from the nodes' final reports)");
  for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${v}`);

  const { stopped, killed, missing, anomalies } = tallyMessages();
  const head = [
    "sent",
    "delivered",
    "died with the killed process",
    "lost",
    "duplicated",
    "reordered",
  ];
  const table: string[][] = [["messages", ...head]];
  const row = (what: string, t: Tally, unknown: boolean) => [
    what,
    unknown ? "-" : String(t.sent),
    String(t.delivered),
    unknown ? "-" : String(t.died),
    String(t.lost),
    String(t.duplicated),
    String(t.reordered),
  ];
  table.push(row("by nodes that stopped in order", stopped, false));
  if (kill.at > 0) table.push(row(`by ${kill.victim.name} before its kill`, killed, true));
  const widths = table[0].map((_, c) => Math.max(...table.map((r) => r[c].length)));
  for (const r of table) {
    console.log(
      `  ${
        r.map((cell, c) => c === 0 ? cell.padEnd(widths[c]) : cell.padStart(widths[c])).join("  ")
      }`,
    );
  }
  if (missing.length > 0) console.log(`  no final report from: ${missing.join(", ")}`);
  const clean = stopped.lost + stopped.duplicated + stopped.reordered + killed.lost +
          killed.duplicated + killed.reordered === 0 && missing.length === 0;
  const died = kill.at > 0
    ? `; ${stopped.died} reached ${kill.victim.name}'s killed process and died with it ` +
      `(${kill.unacked} of them unacknowledged)`
    : "";
  console.log(`  exactly once: ${clean ? "yes" : "NO"}${died}`);
  for (const a of anomalies) console.log(`    ${a}`);
  console.log("");
}

function stopOnSignal(): void {
  stop().catch((error) => {
    console.error(`demo: stopping failed: ${error?.stack ?? error}`);
    Deno.exit(1);
  });
}
Deno.addSignalListener("SIGINT", stopOnSignal);
if (seconds !== undefined) {
  setTimeout(() => {
    if (!rejoining()) return stopOnSignal();
    // The summary is about the restart: let it finish, for a bounded time.
    say(`waiting for ${kill.victim.name} to rejoin (at most ${REJOIN_GRACE_MS / 1000} s)`);
    onRejoined = stopOnSignal;
    setTimeout(stopOnSignal, REJOIN_GRACE_MS);
  }, seconds * 1000);
}
