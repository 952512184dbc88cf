// QUIC, TLS and WebSocket: heartline against the raw transport doing the same work in the same
// run (4-byte length-prefixed messages, writes batched into 256 KiB: a raw QUIC stream or TLS
// stream with batched writes, a raw WebSocket with one binary message per batch).

import { TlsTransport, type Transport, WebSocketTransport } from "../mod.ts";
import { heartlineOneWay, heartlinePingPong } from "./_heartline.ts";
import { QuicTransport } from "../transports/quic.ts";
import { testCerts } from "../examples/_dev_certs.ts";
import { type BenchOptions, type BenchResult, percentile, wanted } from "./_common.ts";

const BATCH = 256 * 1024;

/** Builds batches of `count` length-prefixed messages of `size` bytes. */
function* batches(size: number, count: number): Generator<Uint8Array> {
  const frame = 4 + size;
  const perBatch = Math.max(1, Math.floor(BATCH / frame));
  const buf = new Uint8Array(perBatch * frame);
  const view = new DataView(buf.buffer);
  for (let i = 0; i < perBatch; i++) {
    view.setUint32(i * frame, size);
    buf.fill(7, i * frame + 4, (i + 1) * frame);
  }
  for (let sent = 0; sent < count;) {
    const k = Math.min(perBatch, count - sent);
    yield buf.subarray(0, k * frame);
    sent += k;
  }
}

/** Counts length-prefixed messages across chunks. */
class Counter {
  got = 0;
  #pending = new Uint8Array(0);
  push(chunk: Uint8Array): void {
    let data = chunk;
    if (this.#pending.length) {
      data = new Uint8Array(this.#pending.length + chunk.length);
      data.set(this.#pending);
      data.set(chunk, this.#pending.length);
    }
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    let at = 0;
    while (data.length - at >= 4) {
      const len = view.getUint32(at);
      if (data.length - at - 4 < len) break;
      at += 4 + len;
      this.got++;
    }
    this.#pending = data.slice(at);
  }
}

async function quicPair() {
  const certs = await testCerts();
  const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
  const listener = endpoint.listen({ alpnProtocols: ["raw"], cert: certs.cert, key: certs.key });
  // The server must accept while the client dials: the handshake needs both.
  const [client, server] = await Promise.all([
    Deno.connectQuic({
      hostname: "127.0.0.1",
      port: endpoint.addr.port,
      alpnProtocols: ["raw"],
      caCerts: [certs.caCert],
    }),
    listener.accept(),
  ]);
  const cs = await client.createBidirectionalStream();
  const w = cs.writable.getWriter();
  await w.write(new Uint8Array([0xff])); // a stream exists for the peer once bytes flow
  const ss = (await server.incomingBidirectionalStreams.getReader().read()).value!;
  const serverReader = ss.readable.getReader();
  const first = (await serverReader.read()).value!;
  return {
    clientWriter: w,
    clientReader: cs.readable.getReader(),
    serverWriter: ss.writable.getWriter(),
    serverReader,
    leftover: first.subarray(1), // bytes after the prelude, if they came along
    close() {
      client.close();
      server.close();
      endpoint.close();
    },
  };
}

async function rawQuicOneWay(size: number, count: number): Promise<number> {
  const p = await quicPair();
  const counter = new Counter();
  counter.push(p.leftover);
  const t0 = performance.now();
  const reader = (async () => {
    while (counter.got < count) {
      const { value, done } = await p.serverReader.read();
      if (done) throw new Error("raw QUIC: early end");
      counter.push(value);
    }
  })();
  for (const batch of batches(size, count)) {
    await p.clientWriter.ready;
    await p.clientWriter.write(batch.slice());
  }
  await reader;
  const rate = count / ((performance.now() - t0) / 1000);
  p.close();
  return rate;
}

async function rawQuicPingPong(count: number): Promise<number[]> {
  const p = await quicPair();
  const frame = new Uint8Array(68);
  new DataView(frame.buffer).setUint32(0, 64);
  const echo = (async () => {
    const c = new Counter();
    c.push(p.leftover);
    while (c.got < count) {
      const before = c.got;
      const { value, done } = await p.serverReader.read();
      if (done) return;
      c.push(value);
      for (let i = before; i < c.got; i++) await p.serverWriter.write(frame.slice());
    }
  })();
  const rtts: number[] = [];
  const c = new Counter();
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    await p.clientWriter.write(frame.slice());
    while (c.got <= i) {
      const { value, done } = await p.clientReader.read();
      if (done) throw new Error("raw QUIC ping: early end");
      c.push(value);
    }
    rtts.push((performance.now() - t0) * 1000);
  }
  await echo;
  p.close();
  return rtts;
}

/** A raw TLS stream (Deno.listenTls / Deno.connectTls) with writes batched like heartline's. */
async function rawTlsOneWay(size: number, count: number): Promise<number> {
  const certs = await testCerts();
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: certs.cert,
    key: certs.key,
  });
  const [client, server] = await Promise.all([
    Deno.connectTls({ hostname: "127.0.0.1", port: listener.addr.port, caCerts: [certs.caCert] }),
    listener.accept(),
  ]);
  const counter = new Counter();
  const t0 = performance.now();
  const reader = (async () => {
    const buf = new Uint8Array(64 * 1024);
    while (counter.got < count) {
      const n = await server.read(buf);
      if (n === null) throw new Error("raw TLS: early end");
      counter.push(buf.subarray(0, n));
    }
  })();
  for (const batch of batches(size, count)) {
    for (let at = 0; at < batch.length;) at += await client.write(batch.subarray(at));
  }
  await reader;
  const rate = count / ((performance.now() - t0) / 1000);
  client.close();
  server.close();
  listener.close();
  return rate;
}

async function rawWsOneWay(size: number, count: number): Promise<number> {
  const counter = new Counter();
  let done!: () => void;
  const finished = new Promise<void>((r) => done = r);
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const { socket, response } = Deno.upgradeWebSocket(req);
    socket.binaryType = "arraybuffer";
    socket.onmessage = (e) => {
      counter.push(new Uint8Array(e.data as ArrayBuffer));
      if (counter.got >= count) done();
    };
    return response;
  });
  const ws = new WebSocket(`ws://127.0.0.1:${server.addr.port}/`);
  ws.binaryType = "arraybuffer";
  await new Promise((r) => ws.onopen = r);
  const t0 = performance.now();
  for (const batch of batches(size, count)) {
    ws.send(batch);
    while (ws.bufferedAmount > 1024 * 1024) await new Promise((r) => setTimeout(r, 1));
  }
  await finished;
  const rate = count / ((performance.now() - t0) / 1000);
  ws.close();
  await server.shutdown();
  return rate;
}

/** The QUIC and WebSocket suite. */
export async function transportBenchmarks(options: BenchOptions): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  const scale = options.quick ? 0.1 : 1;
  const names = [
    "quic_oneway_64B",
    "quic_oneway_1KiB",
    "tls_oneway_64B",
    "tls_oneway_64B_crc",
    "tls_oneway_64KiB",
    "tls_oneway_64KiB_crc",
    "quic_oneway_1KiB_crc",
    "ws_oneway_64B",
    "quic_pingpong",
  ];
  if (!names.some((name) => wanted(options, name))) return out; // no certificates needed
  const certs = await testCerts();
  const quic = () =>
    new QuicTransport({ cert: certs.cert, key: certs.key, caCerts: [certs.caCert] });
  const cases: [string, () => Promise<number>, () => Promise<number>][] = [];
  const tls = () => new TlsTransport({ cert: certs.cert, key: certs.key, caCerts: [certs.caCert] });
  /**
   * One-way rows: heartline over `transport` against `raw` in the same run; with `crc`, also
   * the row `<name>_crc` with frame checksums kept (`checksumSecureLinks`), to show what
   * skipping them saves on links that protect integrity.
   */
  const oneWay = (
    name: string,
    [size, count]: [number, number],
    raw: (size: number, count: number) => Promise<number>,
    transport: () => Transport,
    listenAddr: string,
    crc = false,
  ) => {
    const n = Math.round(count * scale);
    for (const keep of crc ? [false, true] : [false]) {
      cases.push([
        keep ? `${name}_crc` : name,
        () => raw(size, n),
        () =>
          heartlineOneWay(size, n, {
            transport: transport(),
            listenAddr,
            checksumSecureLinks: keep,
          }),
      ]);
    }
  };
  const quicAddr = "quic://127.0.0.1:0", tlsAddr = "tls://127.0.0.1:0";
  oneWay("quic_oneway_64B", [64, 300_000], rawQuicOneWay, quic, quicAddr);
  oneWay("quic_oneway_1KiB", [1024, 100_000], rawQuicOneWay, quic, quicAddr, true);
  oneWay("tls_oneway_64B", [64, 500_000], rawTlsOneWay, tls, tlsAddr, true);
  oneWay("tls_oneway_64KiB", [65536, 10_000], rawTlsOneWay, tls, tlsAddr, true);
  oneWay(
    "ws_oneway_64B",
    [64, 300_000],
    rawWsOneWay,
    () => new WebSocketTransport(),
    "ws://127.0.0.1:0/heartline",
  );
  for (const [name, base, ours] of cases) {
    if (!wanted(options, name)) continue;
    let b = 0, o = 0;
    for (let r = 0; r < (options.quick ? 1 : 2); r++) {
      b = Math.max(b, await base());
      o = Math.max(o, await ours());
    }
    out.push({ name, unit: "msg/s", value: o, baseline_value: b, ratio: o / b });
  }
  if (wanted(options, "quic_pingpong")) {
    const count = options.quick ? 300 : 3000;
    await rawQuicPingPong(200);
    await heartlinePingPong(200, { transport: quic(), listenAddr: "quic://127.0.0.1:0" });
    const raw = await rawQuicPingPong(count);
    const ours = await heartlinePingPong(count, {
      transport: quic(),
      listenAddr: "quic://127.0.0.1:0",
    });
    const value = percentile(ours, 50), baseline = percentile(raw, 50);
    out.push({
      name: "quic_pingpong_64B_p50",
      unit: "us",
      value,
      baseline_value: baseline,
      ratio: baseline / value,
    });
  }
  return out;
}
