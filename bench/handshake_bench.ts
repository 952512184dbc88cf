// Handshake time on TCP loopback, with authentication (HMAC proofs both ways) against the same
// handshake without it, in the same run: a fresh messenger dials, the handshake completes, the
// connection closes; the median of many.

import { Messenger, type MessengerOptions } from "../mod.ts";
import { type BenchOptions, type BenchResult, median, wanted } from "./_common.ts";

async function handshakes(count: number, options: MessengerOptions): Promise<number[]> {
  const server = new Messenger({ name: "server", logger: () => {}, ...options });
  const addr = await server.listen("tcp://127.0.0.1:0");
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const client = new Messenger({ name: `client${i}`, logger: () => {}, ...options });
    const t0 = performance.now();
    await client.connect(addr);
    times.push(performance.now() - t0);
    await client.close();
  }
  await server.close();
  return times;
}

/** The handshake row. */
export async function handshakeBenchmarks(options: BenchOptions): Promise<BenchResult[]> {
  if (!wanted(options, "handshake_auth_ms")) return [];
  const count = options.quick ? 30 : 300;
  await handshakes(20, {}); // warm-up
  const plain = median(await handshakes(count, {}));
  const auth = median(await handshakes(count, { auth: { key: "bench-cluster-key" } }));
  return [{
    name: "handshake_auth_ms",
    unit: "ms",
    value: auth,
    baseline_value: plain,
    ratio: plain / auth,
  }];
}
