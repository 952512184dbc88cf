// deno task chaos [--nodes 5] [--seconds 60] [--seed N] [--bound-ms 3000] [--json]
//                 [--faults partition,kill,pause,oneway,bandwidth] [--write-docs] [--keep]
//
// N node processes, each in its own network namespace (./netns.ts), exchange lossless and lossy
// messages and liveness parts while a seeded schedule partitions their links (no FIN), drops
// one direction, limits bandwidth, kills and restarts them (`kill -9`) and pauses them
// (SIGSTOP/SIGCONT). Afterwards the nodes' logs are checked (./report.ts) and a report is
// printed; `--json` ends the output with one line holding `{"chaos": {...}}`, `--write-docs`
// writes the table to docs/reliability.md. Exits 0 only if every promise held. The
// namespaces and the bridge are removed at the end, on Ctrl-C and on SIGTERM.

import { seededRandom } from "../../testing.ts";
import { Hosts, sweepStale, unsupported } from "./netns.ts";
import { LineChild } from "./lines.ts";
import {
  analyse,
  type ChaosReport,
  type Fault,
  type FaultKind,
  type Incarnation,
  markdown,
  type NodeConfig,
  passed,
  type Timed,
} from "./report.ts";

interface Options {
  nodes: number;
  seconds: number;
  seed: number;
  boundMs: number;
  json: boolean;
  writeDocs: boolean;
  keep: boolean;
  kinds: FaultKind[];
}

const KINDS: FaultKind[] = ["partition", "kill", "pause", "oneway", "bandwidth"];

function parseArgs(args: string[]): Options {
  const o: Options = {
    nodes: 5,
    seconds: 60,
    seed: Date.now() % 1_000_000,
    boundMs: 3000,
    json: false,
    writeDocs: false,
    keep: false,
    kinds: KINDS,
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i], next = () => Number(args[++i]);
    if (a === "--nodes") o.nodes = next();
    else if (a === "--seconds") o.seconds = next();
    else if (a === "--seed") o.seed = next();
    else if (a === "--bound-ms") o.boundMs = next();
    else if (a === "--json") o.json = true;
    else if (a === "--write-docs") o.writeDocs = true;
    else if (a === "--keep") o.keep = true;
    else if (a === "--faults") o.kinds = args[++i].split(",") as FaultKind[];
    else throw new TypeError(`unknown argument ${a}`);
  }
  const unknown = o.kinds.filter((k) => !KINDS.includes(k));
  if (unknown.length > 0 || o.kinds.length === 0) {
    throw new TypeError(`--faults takes some of ${KINDS.join(",")}: ${o.kinds.join(",")}`);
  }
  if (!(o.nodes >= 2 && o.nodes <= 50)) throw new RangeError("--nodes must be 2 to 50");
  if (!(o.seconds >= 20 && o.seconds <= 3600)) throw new RangeError("--seconds must be 20 to 3600");
  return o;
}

const PORT = 7000;
const HEARTBEAT = { intervalMs: 200, acceptablePauseMs: 500, minStdDevMs: 50 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A planned fault: what, where, for how long. */
interface Planned {
  kind: FaultKind;
  node: number;
  ms: number;
}

/**
 * The seeded schedule, one fault at a time, each long enough to be detected within the bound
 * (partitions, pauses and the downtime of a kill last longer than it). The harness waits for
 * every node to see every other up again before the next one (see `main`).
 */
function* plan(o: Options, random: () => number): Generator<Planned & { gapMs: number }> {
  const between = (lo: number, hi: number) => Math.round(lo + random() * (hi - lo));
  const kinds = o.kinds;
  for (;;) {
    const kind = kinds[Math.floor(random() * kinds.length)];
    const ms = kind === "bandwidth"
      ? between(4000, 7000)
      : between(o.boundMs + 1000, o.boundMs + 3500);
    yield { kind, node: Math.floor(random() * o.nodes), ms, gapMs: between(1000, 2500) };
  }
}

/** One node process (one incarnation at a time). */
class NodeProcess {
  readonly name: string;
  inc = 0;
  child!: Deno.ChildProcess;
  incarnations: Incarnation[] = [];
  #io!: LineChild;
  /** What this incarnation's watch() last said of each peer. */
  peerStates = new Map<string, string>();
  #expectExit = false;
  #status!: Promise<Deno.CommandStatus>;

  constructor(
    readonly index: number,
    readonly hosts: Hosts,
    readonly dir: string,
    readonly cfg: (inc: number) => NodeConfig,
  ) {
    this.name = `n${index}`;
  }

  get logPath(): string {
    return `${this.dir}/${this.name}.${this.inc}.log`;
  }

  /** Starts the next incarnation; resolves once it listens. */
  async start(): Promise<void> {
    this.inc++;
    this.#expectExit = false;
    this.peerStates = new Map();
    const incarnation: Incarnation = {
      node: this.name,
      inc: this.inc,
      records: [],
      crashed: false,
    };
    this.incarnations.push(incarnation);
    const cfg = { ...this.cfg(this.inc), log: this.logPath };
    const script = new URL("./node.ts", import.meta.url).pathname;
    this.child = new Deno.Command("ip", {
      args: [
        ...["netns", "exec", this.hosts.ns(this.index), Deno.execPath(), "run", "--quiet"],
        ...["--allow-net", "--allow-env=CHAOS_NODE", `--allow-read=${this.dir}`],
        ...[`--allow-write=${this.dir}`, script],
      ],
      env: { CHAOS_NODE: JSON.stringify(cfg) },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = await Deno.open(`${this.dir}/${this.name}.${this.inc}.stderr`, {
      write: true,
      create: true,
    });
    this.child.stderr.pipeTo(stderr.writable).catch(() => {});
    const states = this.peerStates;
    this.#io = new LineChild(this.child, (line) => {
      const [tag, peer, state] = line.split(" ");
      if (tag === "N") states.set(peer, state);
      return tag === "N";
    });
    this.#status = this.child.status;
    this.#status.then((s) => {
      if (!this.#expectExit && incarnation.killedAt === undefined) {
        incarnation.crashed = true;
        console.error(`chaos: ${this.name}#${incarnation.inc} exited on its own (${s.code})`);
      }
    });
    await this.expect("ready", 20_000);
  }

  /** Waits for a line on the node's stdout, at most `ms`. */
  async expect(line: string, ms: number): Promise<void> {
    await this.#io.take(line, ms, this.name);
  }

  /** Writes a command to the node's stdin. */
  send(command: string): Promise<void> {
    return this.#io.send(command);
  }

  /** `kill -9`, and waits for the process to be gone. */
  async kill(): Promise<void> {
    this.incarnations.at(-1)!.killedAt = Date.now();
    this.child.kill("SIGKILL");
    await this.#status;
  }

  signal(sig: "SIGSTOP" | "SIGCONT"): void {
    this.child.kill(sig);
  }

  /** Asks the node to exit; kills it if it does not within `ms`. */
  async exit(ms: number): Promise<void> {
    this.#expectExit = true;
    await this.send("exit").catch(() => {});
    const done = await Promise.race([this.#status.then(() => true), sleep(ms).then(() => false)]);
    if (!done) {
      this.incarnations.at(-1)!.crashed = true; // hung on exit
      this.child.kill("SIGKILL");
      await this.#status;
    }
  }

  /** Ends whatever runs, for the cleanup path. */
  stopNow(): void {
    try {
      this.child?.kill("SIGKILL");
    } catch { /* gone */ }
  }
}

/** Waits until every node sees every other up, at most `ms`. */
async function allUp(nodes: NodeProcess[], ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  const up = () =>
    nodes.every((n) => nodes.every((m) => m === n || n.peerStates.get(m.name) === "up"));
  while (!up()) {
    if (Date.now() > until) return false;
    await sleep(100);
  }
  return true;
}

async function inject(p: Planned, node: NodeProcess, hosts: Hosts): Promise<Fault> {
  const start = Date.now();
  switch (p.kind) {
    case "partition":
      await hosts.link(p.node, false);
      await sleep(p.ms);
      await hosts.link(p.node, true);
      break;
    case "oneway":
      await hosts.oneWayLoss(p.node, true);
      await sleep(p.ms);
      await hosts.oneWayLoss(p.node, false);
      break;
    case "bandwidth":
      await hosts.bandwidth(p.node, "1mbit");
      await sleep(p.ms);
      await hosts.bandwidth(p.node, null);
      break;
    case "pause":
      node.signal("SIGSTOP");
      await sleep(p.ms);
      node.signal("SIGCONT");
      break;
    case "kill":
      await node.kill();
      await sleep(p.ms);
      await node.start();
      break;
  }
  return { kind: p.kind, node: node.name, start, end: Date.now() };
}

function readLog(path: string): Timed[] {
  const out: Timed[] = [];
  let text = "";
  try {
    text = Deno.readTextFileSync(path);
  } catch {
    return out;
  }
  for (const line of text.split("\n")) {
    if (!line) continue;
    try {
      out.push(JSON.parse(line));
    } catch { /* a line cut by kill -9 */ }
  }
  return out;
}

async function main(): Promise<number> {
  const o = parseArgs(Deno.args);
  const why = await unsupported();
  if (why) {
    console.error(`chaos: ${why}`);
    return 2;
  }
  const stale = await sweepStale();
  if (stale > 0) console.error(`chaos: removed ${stale} namespaces left by an interrupted run`);
  const dir = await Deno.makeTempDir({ prefix: "heartline-chaos-" });
  const key = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16)).join(
    "",
  );
  const hosts = await Hosts.create(o.nodes).catch(async (error) => {
    await sweepStale();
    throw error;
  });
  const nodes: NodeProcess[] = [];
  const cleanup = async () => {
    for (const n of nodes) n.stopNow();
    await hosts.destroy();
  };
  const onSignal = () => {
    console.error("chaos: interrupted; removing the namespaces");
    cleanup().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const faults: Fault[] = [];
  let stopAt = Infinity;
  const recoveries: number[] = [];
  try {
    const names = Array.from({ length: o.nodes }, (_, i) => `n${i}`);
    const addrOf = (i: number) => `tcp://${hosts.addr(i)}:${PORT}`;
    for (let i = 0; i < o.nodes; i++) {
      nodes.push(
        new NodeProcess(i, hosts, dir, (inc) => ({
          name: names[i],
          incarnation: inc,
          listen: addrOf(i),
          peers: names.flatMap((name, j) => j === i ? [] : [{ name, addr: addrOf(j) }]),
          key,
          log: "",
          rate: 20,
          oobMs: 200,
          heartbeat: HEARTBEAT,
        })),
      );
    }
    await Promise.all(nodes.map((n) => n.start()));
    const t0 = Date.now();
    log(o, `chaos: ${o.nodes} nodes up in ${dir}; seed ${o.seed}, ${o.seconds} s`);
    await sleep(4000); // warm-up: every pair connects, every detector learns the interval
    if (!await allUp(nodes, 30_000)) throw new Error("the cluster did not form within 30 s");
    const end = t0 + (o.seconds - 10) * 1000; // then heal and drain
    for (const p of plan(o, seededRandom(o.seed))) {
      if (Date.now() + p.ms + p.gapMs > end) break;
      log(o, `chaos: ${p.kind} of n${p.node} for ${p.ms} ms`);
      faults.push(await inject(p, nodes[p.node], hosts));
      const healed = Date.now();
      const up = await allUp(nodes, 30_000);
      recoveries.push(up ? Date.now() - healed : Infinity);
      if (!up) {
        log(o, "chaos: the cluster did not recover within 30 s; each node's view is in its log");
        await Promise.all(nodes.map((n) => n.send("dump").catch(() => {})));
      }
      await sleep(p.gapMs);
    }
    const rest = t0 + (o.seconds - 8) * 1000 - Date.now();
    if (rest > 0) await sleep(rest); // heal: everything recovers
    await Promise.all(nodes.map((n) => n.send("stop")));
    await Promise.all(
      nodes.map((n) => n.expect("drained", 15_000).catch((e) => log(o, String(e)))),
    );
    await sleep(500); // the last acks and receipts land in the logs
    stopAt = Date.now();
    await Promise.all(nodes.map((n) => n.exit(10_000)));
  } finally {
    await cleanup();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
  const left = await hosts.leftovers();
  if (left.length > 0) console.error(`chaos: namespaces left behind: ${left.join(", ")}`);
  const incarnations = nodes.flatMap((n) => n.incarnations);
  for (const i of incarnations) i.records = readLog(`${dir}/${i.node}.${i.inc}.log`);
  const report = analyse({
    seed: o.seed,
    seconds: o.seconds,
    boundMs: o.boundMs,
    nodes: nodes.map((n) => n.name),
    incarnations,
    faults,
    stopAt,
    recoveries,
  });
  await output(o, report, dir);
  const ok = passed(report) && left.length === 0;
  if (ok && !o.keep) await Deno.remove(dir, { recursive: true });
  else console.error(`chaos: logs kept in ${dir}`);
  return ok ? 0 : 1;
}

/** Progress goes to stderr with --json (stdout ends with the JSON line), else to stdout. */
function log(o: Options, line: string): void {
  if (o.json) console.error(line);
  else console.log(line);
}

async function output(o: Options, report: ChaosReport, dir: string): Promise<void> {
  const table = markdown(report);
  const verdict = passed(report) ? "every promise held" : "PROMISES BROKEN";
  log(o, `\n${table}\n\nchaos: ${verdict}`);
  for (const e of report.examples) log(o, `  ${e}`);
  const { examples: _examples, ...summary } = report;
  await Deno.writeTextFile(`${dir}/report.json`, JSON.stringify(summary, null, 2));
  if (o.writeDocs) await writeDocs(o, report, table);
  if (o.json) console.log(JSON.stringify({ chaos: summary }));
}

async function writeDocs(o: Options, report: ChaosReport, table: string): Promise<void> {
  const path = new URL("../../docs/reliability.md", import.meta.url).pathname;
  const text = await Deno.readTextFile(path).catch(() => "");
  const begin = "<!-- chaos report: begin -->", end = "<!-- chaos report: end -->";
  const block = [
    begin,
    "",
    `Run of ${new Date().toISOString().slice(0, 10)}: \`deno task chaos --nodes ${o.nodes} ` +
    `--seconds ${o.seconds} --seed ${report.seed}\` (${passed(report) ? "passed" : "FAILED"}).`,
    "",
    table,
    "",
    end,
  ].join("\n");
  const next = text.includes(begin)
    ? text.slice(0, text.indexOf(begin)) + block + text.slice(text.indexOf(end) + end.length)
    : `${text}\n${block}\n`;
  await Deno.writeTextFile(path, next);
}

if (import.meta.main) Deno.exit(await main());
