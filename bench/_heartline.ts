// The heartline side of the transport benchmarks, shared by every transport's suite: a
// messenger pair on one transport, one-way throughput and ping-pong round trips.

import { Messenger, type PolicyName, TcpTransport, type Transport } from "../mod.ts";

const quiet = () => {};

/** Where and how the pair talks. */
export interface PairOptions {
  /** Transport (default TCP). */
  transport?: Transport;
  /** Address the server listens on (default `tcp://127.0.0.1:0`). */
  listenAddr?: string;
  /** Client policy (default lossy). */
  policy?: PolicyName;
  /** Keep frame checksums on links that protect integrity (default: skip them). */
  checksumSecureLinks?: boolean;
}

async function pair(o: PairOptions) {
  const transports = [o.transport ?? new TcpTransport()];
  const common = { transports, logger: quiet, checksumSecureLinks: o.checksumSecureLinks };
  const server = new Messenger({ name: "bench-server", ...common });
  const client = new Messenger({ name: "bench-client", ...common });
  const addr = await server.listen(o.listenAddr ?? "tcp://127.0.0.1:0");
  const conn = await client.connect(addr, { policy: o.policy ?? "lossyClient" });
  return {
    server,
    client,
    conn,
    close: () => Promise.all([client.close(), server.close()]),
  };
}

/** Messages per second for `count` one-way messages of `size` bytes. */
export async function heartlineOneWay(
  size: number,
  count: number,
  o: PairOptions = {},
): Promise<number> {
  const { server, conn, close } = await pair(o);
  const body = new Uint8Array(size).fill(7);
  const t0 = performance.now();
  const reader = (async () => {
    let got = 0;
    for await (const m of server.messages()) {
      if (size > 0 && m.payload[0] !== 7) throw new Error("heartline reader: corrupt");
      if (++got === count) break;
    }
  })();
  for (let i = 0; i < count; i++) await conn.send(1, body);
  await reader;
  const rate = count / ((performance.now() - t0) / 1000);
  await close();
  return rate;
}

/** Round-trip times in µs of `count` 64-byte ping-pongs. */
export async function heartlinePingPong(count: number, o: PairOptions = {}): Promise<number[]> {
  const { server, client, conn, close } = await pair(o);
  const echo = (async () => {
    let n = 0;
    for await (const m of server.messages()) {
      await m.connection.send(2, m.payload);
      if (++n === count) break;
    }
  })();
  const replies = client.messages()[Symbol.asyncIterator]();
  const body = new Uint8Array(64);
  const rtts: number[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    await conn.send(1, body);
    await replies.next();
    rtts.push((performance.now() - t0) * 1000);
  }
  await echo;
  await close();
  return rtts;
}
