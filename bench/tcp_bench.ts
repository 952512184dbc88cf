// TCP on loopback: one-way throughput of 64 B and 1 KiB messages and 64 B ping-pong latency,
// heartline against raw Deno TCP doing the same work (4-byte length-prefixed frames, writes
// batched into 256 KiB buffers) in the same process and run.

import { heartlineOneWay, heartlinePingPong } from "./_heartline.ts";
import { readFrames, writeAll } from "./_raw.ts";
import { type BenchOptions, type BenchResult, median, percentile, wanted } from "./_common.ts";

const BATCH = 256 * 1024;

async function rawPair(): Promise<{ client: Deno.TcpConn; server: Deno.TcpConn; close(): void }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  client.setNoDelay(true);
  server.setNoDelay(true);
  listener.close();
  return {
    client,
    server,
    close() {
      client.close();
      server.close();
    },
  };
}

/** Raw baseline: messages/s for `count` length-prefixed messages of `size` bytes. */
async function rawOneWay(size: number, count: number): Promise<number> {
  const p = await rawPair();
  const body = new Uint8Array(size).fill(7);
  const start = performance.now();
  const reader = readFrames(p.server, count, (body) => {
    // Touch the message as a consumer would.
    if (body.length > 0 && body[0] !== 7) throw new Error("raw reader: corrupt");
  });
  const frame = 4 + size;
  const perBatch = Math.max(1, Math.floor(BATCH / frame));
  const buf = new Uint8Array(perBatch * frame);
  const view = new DataView(buf.buffer);
  for (let sent = 0; sent < count;) {
    const k = Math.min(perBatch, count - sent);
    for (let i = 0; i < k; i++) {
      view.setUint32(i * frame, size);
      buf.set(body, i * frame + 4);
    }
    await writeAll(p.client, buf.subarray(0, k * frame));
    sent += k;
  }
  await reader;
  const elapsed = performance.now() - start;
  p.close();
  return count / (elapsed / 1000);
}

/** Round-trip times in µs of `count` 64-byte ping-pongs over raw TCP. */
async function rawPingPong(count: number): Promise<number[]> {
  const p = await rawPair();
  const frame = new Uint8Array(4 + 64);
  new DataView(frame.buffer).setUint32(0, 64);
  const echo = (async () => {
    const buf = new Uint8Array(4096);
    for (let i = 0; i < count; i++) {
      let got = 0;
      while (got < frame.length) {
        const n = await p.server.read(buf.subarray(got));
        if (n === null) return;
        got += n;
      }
      await writeAll(p.server, buf.subarray(0, frame.length));
    }
  })();
  const rtts: number[] = [];
  const buf = new Uint8Array(4096);
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    await writeAll(p.client, frame);
    let got = 0;
    while (got < frame.length) {
      const n = await p.client.read(buf.subarray(got));
      if (n === null) throw new Error("raw ping: early end");
      got += n;
    }
    rtts.push((performance.now() - t0) * 1000);
  }
  await echo;
  p.close();
  return rtts;
}

/** The best of `rounds` runs, alternating baseline and heartline so drift hits both. */
async function bestOf(
  rounds: number,
  base: () => Promise<number>,
  ours: () => Promise<number>,
): Promise<[number, number]> {
  let b = 0, o = 0;
  for (let r = 0; r < rounds; r++) {
    b = Math.max(b, await base());
    o = Math.max(o, await ours());
  }
  return [o, b];
}

/** The TCP suite. */
export async function tcpBenchmarks(options: BenchOptions): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  const scale = options.quick ? 0.1 : 1;
  const rounds = options.quick ? 1 : 3;
  for (
    const [name, size, count] of [["tcp_oneway_64B", 64, 1_000_000], [
      "tcp_oneway_1KiB",
      1024,
      300_000,
    ]] as const
  ) {
    if (!wanted(options, name)) continue;
    const n = Math.round(count * scale);
    const [value, baseline] = await bestOf(
      rounds,
      () => rawOneWay(size, n),
      () => heartlineOneWay(size, n),
    );
    out.push({
      name,
      unit: "msg/s",
      value,
      baseline_value: baseline,
      ratio: value / baseline,
      note: `${n} messages, best of ${rounds}`,
    });
  }
  if (wanted(options, "tcp_oneway_64B_lossless")) {
    const n = Math.round(1_000_000 * scale);
    // Raw, lossy and lossless in turn, best of each: the ratio that matters is lossless/lossy.
    let raw = 0, lossy = 0, lossless = 0;
    for (let r = 0; r < rounds; r++) {
      raw = Math.max(raw, await rawOneWay(64, n));
      lossy = Math.max(lossy, await heartlineOneWay(64, n));
      lossless = Math.max(lossless, await heartlineOneWay(64, n, { policy: "losslessClient" }));
    }
    out.push({
      name: "tcp_oneway_64B_lossless",
      unit: "msg/s",
      value: lossless,
      baseline_value: raw,
      ratio: lossless / raw,
      note: `lossless/lossy = ${(lossless / lossy).toFixed(3)} (lossy ${Math.round(lossy)} msg/s)`,
    });
  }
  if (wanted(options, "tcp_pingpong")) {
    const count = options.quick ? 1000 : 10_000;
    await rawPingPong(500); // warm-up both paths
    await heartlinePingPong(500);
    const raw = await rawPingPong(count);
    const ours = await heartlinePingPong(count);
    for (const p of [50, 99]) {
      const value = percentile(ours, p), baseline = percentile(raw, p);
      out.push({
        name: `tcp_pingpong_64B_p${p}`,
        unit: "us",
        value,
        baseline_value: baseline,
        ratio: baseline / value,
        note: `${count} round trips; median raw ${median(raw).toFixed(1)} us`,
      });
    }
  }
  return out;
}
