// Timer wheel against host timers: 100,000 periodic 1 s registrations (issue 4 targets), and
// heartbeat frames for 100 connections with 50 OOB registrations each against one message per
// registration per interval.

import process from "node:process";
import { type BenchOptions, type BenchResult, wanted } from "./_common.ts";
import { TimerWheel } from "../src/timer/timer_wheel.ts";
import { ManualClock } from "../src/timer/clock.ts";
import { Messenger } from "../mod.ts";
import { MemoryTransport } from "../testing.ts";

function heapMiB(): number {
  return Deno.memoryUsage().heapUsed / (1024 * 1024);
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** CPU ms spent per second of firing, for `n` periodic 1 s timers over `seconds` real seconds. */
async function cpuPerSecond(start: () => () => void, seconds: number): Promise<number> {
  gc();
  const stop = start();
  // Let the first phase settle, then measure process CPU across whole seconds.
  await new Promise((r) => setTimeout(r, 1100));
  const before = process.cpuUsage();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const used = process.cpuUsage(before);
  stop();
  return (used.user + used.system) / 1000 / seconds;
}

/** The wheel suite. */
export async function wheelBenchmarks(options: BenchOptions): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  const n = options.quick ? 10_000 : 100_000;
  const seconds = options.quick ? 2 : 5;
  if (wanted(options, "wheel_100k_timers")) {
    let fired = 0;
    const hostTimers = () => {
      const ids: ReturnType<typeof setInterval>[] = [];
      for (let i = 0; i < n; i++) ids.push(setInterval(() => fired++, 1000));
      return () => ids.forEach((id) => clearInterval(id));
    };
    const wheelTimers = () => {
      const wheel = new TimerWheel({ tickMs: 5 });
      for (let i = 0; i < n; i++) wheel.every(1000, () => fired++);
      return () => wheel.close();
    };
    const measureHeap = (start: () => () => void) => {
      gc();
      const before = heapMiB();
      const stop = start();
      gc();
      const held = heapMiB() - before;
      stop();
      gc();
      return held;
    };
    const baseHeap = measureHeap(hostTimers);
    const wheelHeap = measureHeap(wheelTimers);
    const baseCpu = await cpuPerSecond(hostTimers, seconds);
    const wheelCpu = await cpuPerSecond(wheelTimers, seconds);
    out.push({
      name: "wheel_100k_timers_cpu",
      unit: "ms/s",
      value: wheelCpu,
      baseline_value: baseCpu,
      ratio: baseCpu / wheelCpu,
      note: `${n} periodic 1 s timers vs setInterval, CPU per second`,
    });
    out.push({
      name: "wheel_100k_timers_heap",
      unit: "MiB",
      value: wheelHeap,
      baseline_value: baseHeap,
      ratio: baseHeap / wheelHeap,
      note: `heap held by ${n} timers${
        (globalThis as { gc?: unknown }).gc ? "" : " (no --v8-flags=--expose-gc)"
      }`,
    });
  }
  if (wanted(options, "oob_frames_per_second")) {
    // 100 connections x 50 registrations (half 1 s, half 5 s), 30 s of virtual time.
    const clock = new ManualClock(0);
    const net = new MemoryTransport();
    const quiet = () => {};
    const server = new Messenger({ name: "s", clock, transports: [net], logger: quiet });
    const client = new Messenger({ name: "c", clock, transports: [net], logger: quiet });
    const conns = [];
    for (let i = 0; i < 100; i++) {
      await server.listen(`mem://s${i}`);
      conns.push(await client.connect(`mem://s${i}`));
    }
    for (let j = 0; j < 50; j++) server.onOob(`op${j}`, () => {});
    for (const conn of conns) {
      for (let j = 0; j < 50; j++) {
        conn.registerOob(`op${j}`, () => new Uint8Array(8), { intervalMs: j % 2 ? 1000 : 5000 });
      }
    }
    const span = 30_000;
    const framesBefore = client.oobStats.heartbeatFramesSent;
    for (let t = 0; t < span; t += 100) {
      clock.advance(100);
      await new Promise((r) => setTimeout(r, 0));
    }
    const frames = (client.oobStats.heartbeatFramesSent - framesBefore) / (span / 1000);
    // A per-user timer design sends one message per registration per interval.
    const baseline = 100 * (25 / 1 + 25 / 5);
    out.push({
      name: "oob_frames_per_second",
      unit: "frames/s",
      value: frames,
      baseline_value: baseline,
      ratio: baseline / frames,
      note: "100 conns x 50 registrations (1 s and 5 s), keepalive included",
    });
    await client.close();
    await server.close();
  }
  return out;
}
