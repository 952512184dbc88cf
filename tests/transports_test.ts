// The conformance suite on every transport, and what a session makes of each.

import "./_guard.ts";
import {
  AdaptiveReadBuffer,
  READ_BUFFER_MAX_BYTES,
  READ_BUFFER_MIN_BYTES,
  READ_BUFFER_SMALL_FRAMES_BYTES,
} from "../transports/_stream.ts";
import assert from "node:assert/strict";
import {
  Messenger,
  type MessengerOptions,
  TcpTransport,
  TlsTransport,
  type Transport,
  TransportError,
  WebSocketTransport,
} from "../mod.ts";
import { deadline, runDeno, take } from "./_helpers.ts";
import { MemoryTransport } from "../testing.ts";
import { QuicTransport } from "../transports/quic.ts";
import {
  CLUSTER_SERVER_NAME,
  makeCerts,
  type TestCerts,
  testCerts,
} from "../examples/_dev_certs.ts";
import { runTransportSuite } from "./transport_suite.ts";
import type { Link } from "../transports/types.ts";
import { nodeNet, NodeSocketLink } from "../transports/_node_socket.ts";
import { once } from "node:events";
import type { Counters } from "../src/counters.ts";
import { Tag } from "../src/protocol/frame.ts";

runTransportSuite("tcp", () =>
  Promise.resolve({
    transport: new TcpTransport(),
    listenAddr: "tcp://127.0.0.1:0",
    readBackpressure: true,
  }));

runTransportSuite("tcp node:net", () =>
  Promise.resolve({
    transport: new TcpTransport({ sockets: "node" }),
    listenAddr: "tcp://127.0.0.1:0",
    readBackpressure: true,
  }));

runTransportSuite("mem", () =>
  Promise.resolve({
    transport: new MemoryTransport(),
    listenAddr: "mem://suite",
    readBackpressure: true,
  }));

runTransportSuite("quic", async () => {
  const certs = await testCerts();
  return {
    transport: new QuicTransport({ cert: certs.cert, key: certs.key, caCerts: [certs.caCert] }),
    listenAddr: "quic://127.0.0.1:0",
    readBackpressure: true,
  };
});

runTransportSuite("tls", async () => {
  const certs = await testCerts();
  return {
    transport: new TlsTransport({ cert: certs.cert, key: certs.key, caCerts: [certs.caCert] }),
    listenAddr: "tls://127.0.0.1:0",
    readBackpressure: true,
  };
});

runTransportSuite("ws", () =>
  Promise.resolve({
    transport: new WebSocketTransport({ maxUnreadBytes: 4 * 1024 * 1024 }),
    listenAddr: "ws://127.0.0.1:0/heartline",
    readBackpressure: false,
  }));

/** Sends `n` messages from a client to a server over `transport`, returns both messengers. */
async function exchange(
  transport: Transport,
  addr: string,
  options: MessengerOptions,
  serverOptions: MessengerOptions = options,
  n = 50,
) {
  const quiet = { logger: () => {} };
  const server = new Messenger({
    name: "srv",
    transports: [transport],
    ...quiet,
    ...serverOptions,
  });
  const client = new Messenger({ name: "cli", transports: [transport], ...quiet, ...options });
  const conn = await client.connect(await server.listen(addr), { policy: "losslessClient" });
  for (let i = 0; i < n; i++) await conn.send(i, new Uint8Array([i]));
  const got = await take(server, n);
  assert.deepEqual(got.map((m) => m.type), Array.from({ length: n }, (_, i) => i));
  return { server, client, close: () => Promise.all([client.close(), server.close()]) };
}

Deno.test("checksums: skipped on TLS and QUIC links, kept on TCP and when asked to", async () => {
  const certs = await testCerts();
  const tls = new TlsTransport({ cert: certs.cert, key: certs.key, caCerts: [certs.caCert] });
  const quic = new QuicTransport({ cert: certs.cert, key: certs.key, caCerts: [certs.caCert] });
  for (
    const [transport, addr] of [[tls, "tls://127.0.0.1:0"], [quic, "quic://127.0.0.1:0"]] as const
  ) {
    const skipped = await exchange(transport, addr, {});
    // Small messages share Messages frames: at least one frame went, none of them checked.
    const data = (c: Counters) => c.framesSent[Tag.Message] + c.framesSent[Tag.Messages];
    assert.ok(skipped.client.counters.uncheckedFrames >= 1, `${addr}: client skipped checksums`);
    assert.equal(skipped.client.counters.uncheckedFrames, data(skipped.client.counters));
    await skipped.close();
    const kept = await exchange(transport, addr, { checksumSecureLinks: true });
    assert.equal(kept.client.counters.uncheckedFrames, 0, `${addr}: checksums kept when asked`);
    await kept.close();
    // Either end asking is enough: the other does not skip alone.
    const one = await exchange(transport, addr, {}, { checksumSecureLinks: true });
    assert.equal(one.client.counters.uncheckedFrames, 0, `${addr}: the server asked to keep them`);
    await one.close();
  }
  const tcp = await exchange(new TcpTransport(), "tcp://127.0.0.1:0", {});
  assert.equal(tcp.client.counters.uncheckedFrames, 0, "TCP keeps its checksums");
  // Both ends accept CRC-32 (native here) in place of CRC-32C for Message frames.
  assert.ok(tcp.client.counters.crc32Frames >= 1, "TCP data frames go with CRC-32");
  assert.equal(
    tcp.client.counters.crc32Frames,
    tcp.client.counters.framesSent[Tag.Message] + tcp.client.counters.framesSent[Tag.Messages],
  );
  await tcp.close();
});

Deno.test("certificates: only the cluster CA's leaf for the pinned serverName passes, on TLS and QUIC", async () => {
  const cluster = await testCerts();
  // A leaf from another CA that the dialer does not trust, and one from the cluster CA's
  // rival for the very host dialed (as a public CA could issue for a public host name).
  const outsider = await makeCerts(`DNS:localhost,IP:127.0.0.1,DNS:${CLUSTER_SERVER_NAME}`);
  const hostOnly = await makeCerts("DNS:localhost,IP:127.0.0.1");
  const make = (scheme: "tls" | "quic", serving: TestCerts, trusted: string[]) => {
    const options = { cert: serving.cert, key: serving.key, caCerts: trusted };
    const pinned = { ...options, serverName: CLUSTER_SERVER_NAME };
    return scheme === "tls"
      ? { listen: new TlsTransport(options), dial: new TlsTransport(pinned) }
      : { listen: new QuicTransport(options), dial: new QuicTransport(pinned) };
  };
  for (const scheme of ["tls", "quic"] as const) {
    const cases: [TestCerts, string[], boolean, string][] = [
      [cluster, [cluster.caCert], true, "the cluster CA's leaf for the pinned name"],
      [outsider, [cluster.caCert], false, "a leaf from a CA the dialer does not trust"],
      [hostOnly, [cluster.caCert, hostOnly.caCert], false, "a trusted CA's leaf without the name"],
    ];
    for (const [serving, trusted, passes, what] of cases) {
      const { listen, dial } = make(scheme, serving, trusted);
      const listener = await listen.listen(`${scheme}://127.0.0.1:0`);
      const accepting = (async () => {
        for await (const link of listener) link.close();
      })();
      const dialed = await deadline(
        dial.connect(listener.addr).then((link) => (link.close(), true), (error) => error),
        `${scheme}: ${what}`,
      );
      if (passes) assert.equal(dialed, true, `${scheme}: ${what}: ${dialed}`);
      else {
        // Refused for its certificate, not for anything else.
        assert.ok(dialed instanceof TransportError, `${scheme}: ${what}: ${dialed}`);
        assert.match(dialed.message, /certificate|UnknownIssuer|NotValidForName/i, what);
      }
      listener.close();
      await deadline(accepting, `${scheme}: the listener to close`);
    }
  }
});

Deno.test("AdaptiveReadBuffer grows on reads that fill it and shrinks when reads stay small", () => {
  const b = new AdaptiveReadBuffer();
  assert.equal(b.buffer.length, READ_BUFFER_MIN_BYTES, "an idle link holds the small buffer");
  for (let i = 0; i < 20; i++) b.filled(b.buffer.length);
  assert.equal(b.buffer.length, READ_BUFFER_SMALL_FRAMES_BYTES, "small frames: at most 64 KiB");
  b.largeFrames();
  while (b.buffer.length < READ_BUFFER_MAX_BYTES) b.filled(b.buffer.length);
  assert.equal(b.buffer.length, READ_BUFFER_MAX_BYTES);
  b.filled(READ_BUFFER_MAX_BYTES);
  assert.equal(b.buffer.length, READ_BUFFER_MAX_BYTES, "never past the largest");
  // One small read changes nothing; a run of them shrinks it to what they needed, at once.
  b.filled(10);
  assert.equal(b.buffer.length, READ_BUFFER_MAX_BYTES);
  let reads = 1;
  for (; reads < 10_000 && b.buffer.length > READ_BUFFER_MIN_BYTES; reads++) b.filled(10);
  assert.equal(b.buffer.length, READ_BUFFER_MIN_BYTES);
  assert.equal(reads, 32, "from the largest to the smallest in one run of small reads");
  // A read that uses half of it keeps the size (no shrink streak).
  b.filled(READ_BUFFER_MIN_BYTES);
  b.filled(READ_BUFFER_MIN_BYTES);
  assert.equal(b.buffer.length, 2 * READ_BUFFER_MIN_BYTES);
  // Having shrunk, it needs to hear of large frames again to pass 64 KiB.
  for (let i = 0; i < 20; i++) b.filled(b.buffer.length);
  assert.equal(b.buffer.length, READ_BUFFER_SMALL_FRAMES_BYTES);
  // A run whose largest read was 5,000 bytes keeps room for twice that.
  for (let i = 0; i < 32; i++) b.filled(i === 7 ? 5000 : 10);
  assert.equal(b.buffer.length, 16 * 1024);
  // Told of large frames it grows past 64 KiB; 64 busy reads with no more news and it is back.
  b.largeFrames();
  while (b.buffer.length < READ_BUFFER_MAX_BYTES) b.filled(b.buffer.length);
  let busy = 0;
  for (; busy < 1000 && b.buffer.length > READ_BUFFER_SMALL_FRAMES_BYTES; busy++) {
    b.filled(b.buffer.length); // every read fills it: a busy link of small frames
  }
  assert.equal(b.buffer.length, READ_BUFFER_SMALL_FRAMES_BYTES);
  assert.ok(busy <= 64, `back to 64 KiB after ${busy} reads`);
});

Deno.test("[tcp] a link told of large frames reads up to 256 KiB at once; otherwise up to 64 KiB", async () => {
  for (const large of [false, true]) {
    const net = new TcpTransport();
    const listener = await net.listen("tcp://127.0.0.1:0");
    const accepted = (async () => {
      for await (const link of listener) return link;
    })();
    let dialed: Link | undefined, link: Link | undefined;
    const seen: number[] = [];
    try {
      dialed = await deadline(net.connect(listener.addr), "dial");
      link = await deadline(accepted, "accept");
      const data = new Uint8Array(4 << 20); // the link knows nothing of frames: bytes will do
      const writing = dialed.write([data]);
      for (let got = 0; got < data.length;) {
        const chunk = await deadline(link!.read(), "read");
        if (chunk === null) break;
        seen.push(chunk.length);
        got += chunk.length;
        if (large) link!.largeFrames?.(); // as the reader does for each frame over 64 KiB
      }
      await deadline(writing, "write");
    } finally {
      dialed?.close();
      link?.close();
      listener.close();
    }
    const largest = Math.max(...seen);
    assert.equal(seen.reduce((a, b) => a + b, 0), 4 << 20, "every byte read");
    if (large) assert.ok(largest > 65536, `told of large frames: reads of up to ${largest} B`);
    else assert.ok(largest <= 65536, `small frames: reads of up to ${largest} B`);
  }
});

Deno.test("TcpTransport({ reusePort }): two nodes on one port share the connections the kernel spreads", async () => {
  const nodes = ["w0", "w1"].map((name) =>
    new Messenger({ name, logger: () => {}, transports: [new TcpTransport({ reusePort: true })] })
  );
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const addr = `tcp://127.0.0.1:${probe.addr.port}`;
  probe.close();
  for (const n of nodes) assert.equal(await n.listen(addr), addr);
  const clients = Array.from(
    { length: 24 },
    (_, i) => new Messenger({ name: `c${i}`, logger: () => {} }),
  );
  const conns = await deadline(Promise.all(clients.map((c) => c.connect(addr))), "24 dials");
  const served = new Set(conns.map((c) => c.peerName));
  assert.deepEqual([...served].sort(), ["w0", "w1"], "both nodes took connections");
  await Promise.all([...clients, ...nodes].map((m) => m.close()));
});

Deno.test("TcpTransport({ reusePort }) without --unstable-net is a TypeError, not an exit", async () => {
  const out = await runDeno([
    "eval",
    `import { TcpTransport } from "./mod.ts";
     try { new TcpTransport({ reusePort: true }); console.log("made"); }
     catch (e) { console.log(e.name + ": " + e.message); }`,
  ], 30_000);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /TypeError: Option reusePort needs Deno's --unstable-net flag/);
});

Deno.test("TCP: a one-chunk write larger than the socket takes at once completes in order, twice in a row", async () => {
  const tcp = new TcpTransport();
  const listener = await tcp.listen("tcp://127.0.0.1:0");
  const accepting = listener[Symbol.asyncIterator]().next();
  let link: Link | undefined, server: Link | undefined;
  let writes: Promise<void> | undefined;
  try {
    link = await deadline(tcp.connect(listener.addr), "the dial");
    const accepted = await deadline(accepting, "the accept");
    assert.ok(!accepted.done, "the listener yields the link");
    server = accepted.value;
    const [dialer, peer] = [link, server];
    // 16 MiB is more than loopback's socket buffers take at once: the kernel takes part of it,
    // and the rest goes as the reader drains it.
    const big = new Uint8Array(16 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big[i] = (i / 4096) & 0xff;
    const tail = new Uint8Array([1, 2, 3]);
    writes = (async () => {
      await dialer.write([big]);
      await dialer.write([tail]);
    })();
    let got = 0, corrupt = 0;
    while (got < big.length + tail.length) {
      const chunk = await deadline(peer.read(), "bytes");
      assert.ok(chunk !== null, "the stream ended early");
      for (let k = 0; k < chunk.length; k++, got++) {
        const want = got < big.length ? big[got] : tail[got - big.length];
        if (chunk[k] !== want) corrupt++;
      }
    }
    await deadline(writes, "the writes");
    assert.equal(got, big.length + tail.length);
    assert.equal(corrupt, 0);
  } finally {
    writes?.catch(() => {}); // a failed assertion above is the failure to report
    link?.close();
    server?.close();
    listener.close();
  }
});

Deno.test("TCP over node:net sockets and over Deno's talk to each other, both ways", async () => {
  for (const [server, client] of [["node", "deno"], ["deno", "node"]] as const) {
    await using a = new Messenger({
      name: `a-${server}`,
      logger: () => {},
      transports: [new TcpTransport({ sockets: server })],
    });
    await using b = new Messenger({
      name: `b-${client}`,
      logger: () => {},
      transports: [new TcpTransport({ sockets: client })],
    });
    const addr = await a.listen("tcp://127.0.0.1:0");
    const conn = await deadline(b.connect(addr, { policy: "losslessClient" }), "the dial");
    const sizes = [0, 1, 100, 5000, 70_000, 300_000];
    for (const [i, size] of sizes.entries()) {
      await conn.send(i, new Uint8Array(size).fill(i + 1));
    }
    const got = await take(a, sizes.length);
    assert.deepEqual(got.map((m) => m.payload.length), sizes, `${server} <- ${client}`);
    for (const [i, m] of got.entries()) {
      assert.ok(m.payload.every((x) => x === i + 1), `${server} <- ${client}: body ${i}`);
    }
    // And back, on the same connection.
    await got[0].connection.send(9, new Uint8Array([7]));
    const [reply] = await take(b, 1);
    assert.deepEqual([reply.type, ...reply.payload], [9, 7]);
  }
});

Deno.test("TcpTransport: sockets is deno or node, and reusePort needs deno", () => {
  assert.throws(() => new TcpTransport({ sockets: "node", reusePort: true }), TypeError);
  assert.throws(
    () => new TcpTransport({ sockets: "uv" as unknown as "node" }),
    /sockets must be "deno" or "node"/,
  );
  assert.ok(new TcpTransport({ sockets: "node" }));
});

Deno.test("TCP over node:net: a write waiting on a full socket fails when the link closes", async () => {
  // The peer never reads: writes stop completing once the kernel's buffers are full. Closing
  // the link, or the peer closing it, must settle the waiting write (a writer that awaited
  // it forever could never write to the session's next link).
  const tcp = new TcpTransport({ sockets: "node" });
  for (const who of ["us", "the peer"] as const) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const accepted = listener.accept();
    const link = await deadline(tcp.connect(`tcp://127.0.0.1:${listener.addr.port}`), "dial");
    const peer = await deadline(accepted, "accept");
    // 64 MiB: more than the kernel's buffers on both ends can take, so it cannot complete
    // while the peer does not read.
    const waiting = link.write([new Uint8Array(64 << 20)]);
    const settled = waiting.then(() => "resolved", (e) => e);
    if (who === "us") link.close();
    else peer.close();
    const outcome = await deadline(settled, `${who}: the waiting write to settle`);
    assert.ok(outcome instanceof TransportError, `${who}: ${outcome}`);
    link.close();
    try {
      peer.close();
    } catch { /* closed above */ }
    listener.close();
  }
});

Deno.test("TCP over node:net: a link keeps the Link contract at its edges", async () => {
  const tcp = new TcpTransport({ sockets: "node" });
  const listener = await tcp.listen("tcp://127.0.0.1:0");
  const links = listener[Symbol.asyncIterator]();
  const port = Number(listener.addr.split(":").pop());
  const pair = async () => {
    const peer = await deadline(Deno.connect({ hostname: "127.0.0.1", port }), "dial");
    const link = (await deadline(links.next(), "accept")).value as Link;
    return { peer, link };
  };
  {
    // A reader that fell behind (the link paused its socket), one read (which resumes it),
    // then close(): what the socket still had under way is not handed out, and reads after
    // close() get the end. The link is made here over a socket of our own, to see it pause.
    const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const accepting = server.accept();
    const socket = nodeNet().connect({ host: "127.0.0.1", port: server.addr.port });
    await deadline(once(socket, "connect"), "the node socket's dial");
    const link = new NodeSocketLink(socket);
    const peer = await deadline(accepting, "accept");
    const paused = once(socket, "pause");
    let stop = false;
    const pushing = (async () => {
      const chunk = new Uint8Array(64 * 1024);
      try {
        while (!stop) await peer.write(chunk);
      } catch { /* closed below */ }
    })();
    await deadline(paused, "the link to pause its socket");
    assert.ok(await deadline(link.read(), "a chunk"));
    const closed = once(socket, "close");
    link.close();
    await deadline(closed, "the socket to close"); // after what the resume had under way
    assert.equal(await deadline(link.read(), "a read after close"), null);
    stop = true;
    peer.close();
    server.close();
    await deadline(pushing, "the peer's writes to stop");
  }
  {
    // After flush() (our side half-closed) a write fails alone; the peer's bytes still arrive.
    const { peer, link } = await pair();
    const reading = link.read();
    const flushing = link.flush!();
    await deadline(
      assert.rejects(link.write([new Uint8Array([1])]), TransportError),
      "the write after flush() to fail",
    );
    await deadline(peer.write(new Uint8Array([9, 9])), "the peer's write");
    assert.deepEqual([...(await deadline(reading, "the peer's bytes"))!], [9, 9]);
    // Two flushes wait for the same end; an empty write settles at once.
    const again = link.flush!();
    await deadline(link.write([]).catch(() => {}), "an empty write");
    await peer.closeWrite();
    await deadline(Promise.all([flushing, again]), "both flushes");
    link.close();
    peer.close();
  }
  {
    // Two iterators may wait on one listener; close() ends both.
    const l2 = await tcp.listen("tcp://127.0.0.1:0");
    const first = l2[Symbol.asyncIterator]().next(), second = l2[Symbol.asyncIterator]().next();
    l2.close();
    const ends = await deadline(Promise.all([first, second]), "both iterators to end");
    assert.deepEqual(ends.map((r) => r.done), [true, true]);
  }
  listener.close();
});

Deno.test("readThen on TCP links, Deno and node:net sockets: in order however late the reader, one at a time, nothing during or after close()", async () => {
  for (const sockets of ["deno", "node"] as const) {
    const tcp = new TcpTransport({ sockets });
    const listener = await tcp.listen("tcp://127.0.0.1:0");
    const accepting = listener[Symbol.asyncIterator]().next();
    const port = Number(listener.addr.split(":").pop());
    const peer = await deadline(Deno.connect({ hostname: "127.0.0.1", port }), "dial");
    const link = (await deadline(accepting, `${sockets}: accept`)).value as Link;
    assert.ok(link.readThen, `${sockets}: the link reads with callbacks`);
    const total = 4 << 20;
    const writing = (async () => {
      for (let at = 0; at < total; at += 65536) {
        const chunk = new Uint8Array(65536);
        for (let k = 0; k < chunk.length; k++) chunk[k] = (at + k) % 251;
        for (let off = 0; off < chunk.length;) off += await peer.write(chunk.subarray(off));
      }
    })();
    // A reader that sometimes reads again only after a timer (chunks wait for it meanwhile),
    // and that tries a second read while one is under way.
    const errors: unknown[] = [];
    let got = 0, firstBad = -1, reads = 0;
    await deadline(
      new Promise<void>((resolve, reject) => {
        const next = () => link.readThen!(onChunk, reject);
        const onChunk = (chunk: Uint8Array | null) => {
          if (chunk === null) return reject(new Error(`${sockets}: early end at ${got}`));
          for (let k = 0; k < chunk.length && firstBad < 0; k++) {
            if (chunk[k] !== (got + k) % 251) firstBad = got + k;
          }
          got += chunk.length;
          if (got >= total) return resolve();
          if (++reads % 3 === 0) setTimeout(next, 0);
          else next();
          if (reads === 5) link.readThen!(() => errors.push("a chunk"), (e) => errors.push(e));
        };
        next();
      }),
      `${sockets}: 4 MiB through readThen`,
    );
    await deadline(writing, `${sockets}: the peer's writes`);
    assert.equal(firstBad, -1, `${sockets}: every byte in order`);
    assert.equal(errors.length, 1, `${sockets}: the second read was refused`);
    assert.ok(errors[0] instanceof TypeError, `${sockets}: ${errors[0]}`);
    // A read waiting when the link closes gets null, after close() has returned.
    const ended: [Uint8Array | null, boolean][] = [];
    let closing = true;
    const end = new Promise<void>((resolve) =>
      link.readThen!((c) => (ended.push([c, closing]), resolve()), (e) => {
        ended.push([null, closing]);
        resolve();
        throw e;
      })
    );
    link.close();
    closing = false;
    await deadline(end, `${sockets}: the waiting read's end`);
    assert.deepEqual(ended, [[null, false]], `${sockets}: null, not during close()`);
    peer.close();
    listener.close();
  }
});

/** A TCP link of `sockets` dialed to a raw Deno listener, and the accepted end. */
async function dialTcpLink(sockets: "deno" | "node") {
  const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = server.accept();
  const link = await deadline(
    new TcpTransport({ sockets }).connect(`tcp://127.0.0.1:${server.addr.port}`),
    `${sockets}: dial`,
  );
  return { link, peer: await deadline(accepting, `${sockets}: accept`), server };
}

/** A chunk whose length cannot be read: joining a batch with it throws. */
const UNJOINABLE = {
  get length(): number {
    throw new RangeError("no room to join");
  },
} as unknown as Uint8Array;

Deno.test("writeThen on TCP links, Deno and node:net sockets: bytes and callbacks in order, never during the call, a waiting write fails on close()", async () => {
  for (const sockets of ["deno", "node"] as const) {
    const { link, peer, server } = await dialTcpLink(sockets);
    assert.ok(link.writeThen, `${sockets}: the link writes with callbacks`);
    // The peer reads everything and checks the byte pattern.
    const total = 4 << 20;
    const reading = (async () => {
      const buf = new Uint8Array(65536);
      let got = 0, firstBad = -1;
      while (got < total) {
        const n = await peer.read(buf);
        if (n === null) break;
        for (let k = 0; k < n && firstBad < 0; k++) {
          if (buf[k] !== (got + k) % 251) firstBad = got + k;
        }
        got += n;
      }
      return { got, firstBad };
    })();
    // Batches of one chunk, of several small ones, and of a small one and a large one; three
    // issued at once each round (later ones before the earlier have called back).
    const pattern = (at: number, size: number) => {
      const chunk = new Uint8Array(size);
      for (let k = 0; k < size; k++) chunk[k] = (at + k) % 251;
      return chunk;
    };
    const shapes = [[4096], [100, 200, 300], [1000, 40_000]];
    const order: number[] = [];
    let inCall = false, duringCall = 0, at = 0, issued = 0;
    await deadline(
      new Promise<void>((resolve, reject) => {
        const round = () => {
          if (at >= total) return resolve();
          let left = 3;
          for (let i = 0; i < 3; i++) {
            const batch = shapes[(issued + i) % 3].map((size) => {
              const chunk = pattern(at, Math.min(size, total - at));
              at += chunk.length;
              return chunk;
            }).filter((c) => c.length > 0);
            const id = issued++;
            inCall = true;
            link.writeThen!(batch, () => {
              if (inCall) duringCall++;
              order.push(id);
              if (--left === 0) round();
            }, reject);
            inCall = false;
          }
        };
        round();
      }),
      `${sockets}: 4 MiB through writeThen`,
    );
    const { got, firstBad } = await deadline(reading, `${sockets}: the peer's reads`);
    assert.equal(got, total, `${sockets}: every byte arrived`);
    assert.equal(firstBad, -1, `${sockets}: every byte in order`);
    assert.equal(duringCall, 0, `${sockets}: no callback during writeThen`);
    assert.deepEqual(order, order.toSorted((a, b) => a - b), `${sockets}: callbacks in order`);
    // The peer stops reading: a 64 MiB write cannot complete, and fails when the link closes,
    // after close() has returned; a write after close() fails too, never during its call.
    const outcomes: [string, boolean][] = [];
    let closing = true;
    const waiting = new Promise<void>((resolve) =>
      link.writeThen!([new Uint8Array(64 << 20)], () => {
        outcomes.push(["written", closing]);
        resolve();
      }, (e) => {
        outcomes.push([(e as Error).name, closing]);
        resolve();
      })
    );
    link.close();
    closing = false;
    await deadline(waiting, `${sockets}: the waiting write to settle`);
    const after = new Promise<[string, boolean]>((resolve) => {
      inCall = true;
      link.writeThen!(
        [new Uint8Array(1)],
        () => resolve(["written", inCall]),
        (e) => resolve([(e as Error).name, inCall]),
      );
      inCall = false;
    });
    outcomes.push(await deadline(after, `${sockets}: a write after close()`));
    assert.deepEqual(
      outcomes,
      [["TransportError", false], ["TransportError", false]],
      `${sockets}: both writes fail, neither during a call`,
    );
    peer.close();
    server.close();
  }
});

Deno.test("writeThen on TCP links: writes settled at once (empty, refused, failing to join, after close) call back in their turn, and a failing one does not jam the link", async () => {
  for (const sockets of ["deno", "node"] as const) {
    // The peer does not read: a 64 MiB write waits. An empty batch, a batch whose joining
    // throws (a chunk whose length cannot be read) and a write after close() are all settled
    // without the socket, and must still come after the writes issued before them.
    const { link, peer, server } = await dialTcpLink(sockets);
    const log: string[] = [];
    let inCall = false;
    const write = (name: string, chunks: Uint8Array[]) =>
      new Promise<void>((resolve) => {
        inCall = true;
        link.writeThen!(chunks, () => {
          log.push(`${name} written${inCall ? " during the call" : ""}`);
          resolve();
        }, (e) => {
          log.push(`${name} ${(e as Error).name}${inCall ? " during the call" : ""}`);
          resolve();
        });
        inCall = false;
      });
    const all = [
      write("big", [new Uint8Array(64 << 20)]),
      write("small", [new Uint8Array(10)]),
      write("empty", []),
      write("unjoinable", [new Uint8Array(1), UNJOINABLE]),
    ];
    link.close();
    all.push(write("after close", [new Uint8Array(1)]));
    await deadline(Promise.all(all), `${sockets}: every write to call back`);
    assert.deepEqual(log.map((l) => l.split(" ")[0]), [
      "big",
      "small",
      "empty",
      "unjoinable",
      "after",
    ], `${sockets}: in the order of the writes: ${log.join(", ")}`);
    assert.ok(!log.some((l) => l.includes("during the call")), `${sockets}: ${log.join(", ")}`);
    assert.ok(log[0].endsWith("TransportError"), `${sockets}: ${log[0]}`);
    assert.ok(log[3].endsWith("TransportError"), `${sockets}: ${log[3]}`);
    assert.ok(log[4].endsWith("TransportError"), `${sockets}: ${log[4]}`);
    peer.close();
    server.close();
    // On an open link, a batch that fails to join fails alone: the next write goes through.
    const second = await dialTcpLink(sockets);
    const failed = await deadline(
      new Promise<unknown>((resolve) =>
        second.link.writeThen!([new Uint8Array(1), UNJOINABLE], () => resolve("written"), resolve)
      ),
      `${sockets}: the unjoinable batch to fail`,
    );
    assert.ok(failed instanceof TransportError, `${sockets}: ${failed}`);
    await deadline(second.link.write([new Uint8Array([1, 2, 3])]), `${sockets}: the next write`);
    const got = new Uint8Array(3);
    let have = 0;
    while (have < 3) {
      const n = await deadline(second.peer.read(got.subarray(have)), `${sockets}: the peer's read`);
      assert.ok(n !== null, `${sockets}: early end`);
      have += n;
    }
    assert.deepEqual([...got], [1, 2, 3]);
    second.link.close();
    second.peer.close();
    second.server.close();
  }
});

Deno.test("writeThen on TCP links: a write settled at once and a real one issued after it, from a timer, call back in that order", async () => {
  // A node:net socket calls back in a nextTick, which can run before a microtask queued
  // earlier: a write settled at once must still come before a later write's callback.
  for (const sockets of ["deno", "node"] as const) {
    const { link, peer, server } = await dialTcpLink(sockets);
    for (
      const [settled, why] of [[[], "empty"], [
        [new Uint8Array(1), UNJOINABLE],
        "unjoinable",
      ]] as const
    ) {
      const order: string[] = [];
      await deadline(
        new Promise<void>((resolve) => {
          setTimeout(() => {
            const note = (what: string) => () => {
              order.push(what);
              if (order.length === 2) resolve();
            };
            link.writeThen!([...settled], note(why), note(why));
            link.writeThen!([new Uint8Array(8)], note("real"), note("real failed"));
          }, 0);
        }),
        `${sockets}: both writes (${why}) to call back`,
      );
      assert.deepEqual(order, [why, "real"], `${sockets}: in the order of the writes`);
    }
    link.close();
    peer.close();
    server.close();
  }
});
