// `deno task bench:cluster --netns`: the heartline design with every node a process of its own
// in its own network namespace (the chaos harness's hosts, tests/chaos/netns.ts), so frames,
// bytes and CPU are counted per real process and a hung node is a stopped process (SIGSTOP).
// Needs root. The separate design is not run this way (yet): its figures in this mode are its
// nominal load, computed, not measured.

import { Hosts, sweepStale, unsupported } from "../../tests/chaos/netns.ts";
import { LineChild } from "../../tests/chaos/lines.ts";

/** What one --netns run measured, summed over the node processes. */
export interface NetnsResult {
  sockets: number;
  heartbeatFramesPerSecond: number;
  heartbeatBytesPerSecond: number;
  cpuMsPerSecond: number;
  /** Median over the survivors of the time from SIGSTOP of the victim to its `down`. */
  detectMs: number;
  /** Suspect or down events of peers never stopped. */
  falseDowns: number;
  /** With `saturateS`: every link limited and flooded; what liveness saw meanwhile. */
  saturated?: {
    seconds: number;
    rate: string;
    bytes: number;
    maxPhi: number;
    /** Longest time any node went without hearing anything from a peer, ms. */
    maxSilenceMs: number;
    /** Longest a node's event loop was late (a 50 ms timer), ms: CPU, not the network. */
    maxLagMs: number;
    events: number;
    /** Each suspect or down event: who saw whom, and why. */
    eventList: string[];
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Link rate while saturating: the links, not the two cores, are then what is full. */
const SATURATE_RATE = "20mbit";

/**
 * Limits every node's link (tbf, both ways) and has every node flood all its connections for
 * `seconds`, while each samples its peers' phi: heartbeats must get through full links.
 */
async function saturate(hosts: Hosts, procs: LineChild[], seconds: number) {
  for (let i = 0; i < procs.length; i++) await hosts.bandwidth(i, SATURATE_RATE);
  try {
    await Promise.all(procs.map((p) => p.send(`flood ${seconds}`)));
    const results = await Promise.all(
      procs.map(async (p) =>
        JSON.parse((await p.take("flooded", seconds * 1000 + 30_000)).slice(8))
      ),
    );
    return {
      seconds,
      rate: SATURATE_RATE,
      bytes: results.reduce((s, r) => s + r.bytes, 0),
      maxPhi: Math.max(...results.map((r) => r.maxPhi)),
      maxSilenceMs: Math.max(...results.map((r) => r.maxSilenceMs)),
      maxLagMs: Math.max(...results.map((r) => r.maxLagMs)),
      events: results.reduce((s, r) => s + r.events, 0),
      eventList: results.flatMap((r) => r.list),
    };
  } finally {
    for (let i = 0; i < procs.length; i++) await hosts.bandwidth(i, null);
  }
}

/** Why --netns cannot run here, or null. */
export { unsupported };

/** Runs N node processes at `intervalMs`, measures a window, then hangs the last node. */
export async function runNetns(
  o: {
    nodes: number;
    users: number;
    intervalMs: number;
    windowS: number;
    saturateS?: number;
    /** `net.ipv4.tcp_notsent_lowat` in every namespace (0: the kernel's default). */
    notsentLowat?: number;
    /** `net.ipv4.tcp_congestion_control` in every namespace (default: what they inherit). */
    congestionControl?: string;
  },
): Promise<NetnsResult> {
  await sweepStale();
  const hosts = await Hosts.create(o.nodes, {
    notsentLowat: o.notsentLowat,
    congestionControl: o.congestionControl,
  });
  const procs: LineChild[] = [];
  const key = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16)).join(
    "",
  );
  const addr = (i: number) => `tcp://${hosts.addr(i)}:7100`;
  const name = (i: number) => `n${String(i).padStart(2, "0")}`;
  try {
    const script = new URL("./netns_node.ts", import.meta.url).pathname;
    for (let i = 0; i < o.nodes; i++) {
      const config = {
        name: name(i),
        listen: addr(i),
        dial: Array.from({ length: o.nodes - i - 1 }, (_, k) => ({
          name: name(i + 1 + k),
          addr: addr(i + 1 + k),
        })),
        peers: o.nodes - 1,
        users: o.users,
        intervalMs: o.intervalMs,
        minStdDevMs: o.intervalMs / 10,
        key,
      };
      const child = new Deno.Command("ip", {
        args: ["netns", "exec", hosts.ns(i), Deno.execPath(), "run", "--quiet", "-A", script],
        env: { CLUSTER_NODE: JSON.stringify(config) },
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      procs.push(new LineChild(child));
    }
    await Promise.all(procs.map((p) => p.take("ready", 30_000)));
    await Promise.all(procs.map((p) => p.take("connected", 60_000)));
    await sleep(o.intervalMs * 3 + 500); // phases and detectors settle
    await Promise.all(procs.map((p) => p.send("window")));
    await sleep(o.windowS * 1000);
    await Promise.all(procs.map((p) => p.send("report")));
    const reports = await Promise.all(
      procs.map(async (p) => JSON.parse((await p.take("report", 10_000)).slice(7))),
    );
    const victim = procs.length - 1, survivors = procs.slice(0, victim);
    await Promise.all(survivors.map((p) => p.send(`watch ${name(victim)}`)));
    await sleep(100);
    const stoppedAt = Date.now();
    procs[victim].child.kill("SIGSTOP");
    const downs = await Promise.all(survivors.map(async (p) => {
      const line = await p.take("down", o.intervalMs * 40 + 5000).catch(() => null);
      return line === null ? NaN : Number(line.split(" ")[2]) - stoppedAt;
    }));
    procs[victim].child.kill("SIGCONT");
    await Promise.all(survivors.map((p) => p.send("watch none")));
    await sleep(o.intervalMs * 5); // the victim is back and heard again before the flood
    const saturated = o.saturateS ? await saturate(hosts, procs, o.saturateS) : undefined;
    const sum = (k: string) => reports.reduce((s, r) => s + r[k], 0);
    const sorted = downs.filter(Number.isFinite).sort((a, b) => a - b);
    return {
      sockets: sum("sockets"),
      heartbeatFramesPerSecond: sum("frames"),
      heartbeatBytesPerSecond: sum("bytes"),
      cpuMsPerSecond: sum("cpu"),
      detectMs: sorted.length === survivors.length ? sorted[Math.floor(sorted.length / 2)] : NaN,
      falseDowns: reports.slice(0, victim).reduce((s, r) => s + r.falseDowns, 0),
      saturated,
    };
  } finally {
    await Promise.all(procs.map((p) => p.send("exit").catch(() => {})));
    await sleep(1000);
    for (const p of procs) {
      try {
        p.child.kill("SIGKILL");
      } catch { /* exited */ }
    }
    await hosts.destroy();
  }
}
