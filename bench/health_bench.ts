// Detection time at a 100 ms heartbeat interval: a killed peer process (TCP) and a blackholed
// link (in-memory transport, both directions stalled), each the median of several trials,
// against the configured bound (ratio = bound / measured; above 1 means faster than promised).

import { Messenger, type NodeEvent, silenceToDownMs } from "../mod.ts";
import { MemoryTransport } from "../testing.ts";
import { type BenchOptions, type BenchResult, median, wanted } from "./_common.ts";

const HEARTBEAT = { intervalMs: 100, acceptablePauseMs: 200, minStdDevMs: 20 };
const quiet = () => {};

/** The bound: silence to the threshold, plus one check period and one wheel tick. */
function bound(): number {
  return silenceToDownMs({ detector: "phi", phiThreshold: 8, graceMs: 0, ...HEARTBEAT }) +
    HEARTBEAT.intervalMs / 4 + 5;
}

function nextEvent(
  it: AsyncIterator<NodeEvent>,
  pred: (e: NodeEvent) => boolean,
): Promise<NodeEvent> {
  return (async () => {
    for (;;) {
      const r = await it.next();
      if (r.done) throw new Error("event stream ended");
      if (pred(r.value)) return r.value;
    }
  })();
}

async function blackholeTrial(): Promise<number> {
  const net = new MemoryTransport();
  const a = new Messenger({ name: "a", transports: [net], heartbeat: HEARTBEAT, logger: quiet });
  const b = new Messenger({ name: "b", transports: [net], heartbeat: HEARTBEAT, logger: quiet });
  await b.listen("mem://b");
  await a.connect("mem://b");
  const events = a.watch()[Symbol.asyncIterator]();
  await new Promise((r) => setTimeout(r, 1000)); // let the detector learn the interval
  const link = net.links[0];
  link.stallReads(true);
  link.peer.stallReads(true);
  const t0 = performance.now();
  await nextEvent(events, (e) => e.state === "down");
  const ms = performance.now() - t0;
  link.stallReads(false);
  link.peer.stallReads(false);
  await events.return?.();
  await Promise.all([a.close(), b.close()]);
  return ms;
}

async function crashTrial(server: Messenger, addr: string, n: number): Promise<number> {
  const name = `victim-${n}`;
  const events = server.watch()[Symbol.asyncIterator]();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net=127.0.0.1",
      new URL("../tests/fixtures/peer_node.ts", import.meta.url).href,
      addr,
      name,
      String(HEARTBEAT.intervalMs),
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await nextEvent(events, (e) => e.peer === name && e.state === "up");
  await new Promise((r) => setTimeout(r, 300));
  const t0 = performance.now();
  child.kill("SIGKILL");
  await nextEvent(events, (e) => e.peer === name && e.state === "down");
  const ms = performance.now() - t0;
  await child.status;
  await events.return?.();
  return ms;
}

/** The detection suite. */
export async function healthBenchmarks(options: BenchOptions): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  const trials = options.quick ? 3 : 10;
  if (wanted(options, "detect_crash_ms")) {
    const server = new Messenger({ name: "survivor", heartbeat: HEARTBEAT, logger: quiet });
    const addr = await server.listen("tcp://127.0.0.1:0");
    const times = [];
    for (let i = 0; i < trials; i++) times.push(await crashTrial(server, addr, i));
    await server.close();
    const value = median(times);
    out.push({
      name: "detect_crash_ms",
      unit: "ms",
      value,
      baseline_value: bound(),
      ratio: bound() / value,
      note: `median of ${trials} killed processes; the kernel resets the socket`,
    });
  }
  if (wanted(options, "detect_blackhole_ms")) {
    const times = [];
    for (let i = 0; i < trials; i++) times.push(await blackholeTrial());
    const value = median(times);
    out.push({
      name: "detect_blackhole_ms",
      unit: "ms",
      value,
      baseline_value: bound(),
      ratio: bound() / value,
      note: `median of ${trials} blackholed links, max ${Math.max(...times).toFixed(0)} ms`,
    });
  }
  return out;
}
