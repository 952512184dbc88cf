// One conformance suite for every transport: each transport's test file calls
// runTransportSuite() with a factory (the shape of hono's router tests).

import assert from "node:assert/strict";
import {
  ConnectionClosedError,
  FrameError,
  type Link,
  type Listener,
  Messenger,
  type MessengerOptions,
  TimeoutError,
  type Transport,
  TransportError,
} from "../mod.ts";
import { splitReads } from "../transports/split_reads.ts";
import { captureLogger, deadline, take, waitEvent } from "./_helpers.ts";

/** A transport under test, plus what the suite needs to know about it. */
export interface TransportCase {
  /** The transport (a fresh one per test). */
  transport: Transport;
  /** An address to listen on (port 0 where ports exist). */
  listenAddr: string;
  /** Whether a reader that stops reading pushes back on the writer (TCP, QUIC, memory). */
  readBackpressure: boolean;
}

/**
 * Wraps a transport so the suite can cut every link it made, dialed or accepted: each end is
 * closed without a Close frame, as a network fault would.
 */
function cuttable(inner: Transport): { transport: Transport; cutAll(): void } {
  const links = new Set<Link>();
  const track = (link: Link) => {
    links.add(link);
    return link;
  };
  const transport: Transport = {
    schemes: inner.schemes,
    async listen(addr) {
      const l = await inner.listen(addr);
      const wrapped: Listener = {
        addr: l.addr,
        close: () => l.close(),
        async *[Symbol.asyncIterator]() {
          for await (const link of l) yield track(link);
        },
      };
      return wrapped;
    },
    async connect(addr, options) {
      return track(await inner.connect(addr, options));
    },
  };
  return {
    transport,
    cutAll() {
      for (const link of links) link.close();
      links.clear();
    },
  };
}

/** Registers the conformance tests for one transport. */
export function runTransportSuite(name: string, make: () => Promise<TransportCase>): void {
  registerSuite(name, make, false);
  // Again with every read split at random boundaries, as real networks hand bytes to readers.
  registerSuite(`${name} split`, make, true);
}

let splitSeed = 0;

function registerSuite(name: string, make: () => Promise<TransportCase>, split: boolean): void {
  async function setup(options: MessengerOptions = {}, policy?: "losslessClient") {
    const c = await make();
    const seed = ++splitSeed;
    const cut = cuttable(split ? splitReads(c.transport, { seed }) : c.transport);
    const common = {
      transports: [cut.transport],
      logger: captureLogger().log,
      reconnectBaseMs: 1,
      ...options,
    };
    const server = new Messenger({ name: "server", ...common });
    const client = new Messenger({ name: "client", ...common });
    const addr = await server.listen(c.listenAddr);
    const accepted = waitEvent(server, "accept");
    const conn = await client.connect(addr, policy ? { policy } : {});
    const serverConn = (await accepted).connection;
    return {
      c,
      cut,
      server,
      client,
      conn,
      serverConn,
      addr,
      async [Symbol.asyncDispose]() {
        await Promise.all([client.close(), server.close()]);
      },
    };
  }

  Deno.test(`[${name}] connect and accept: one session, both ends named`, async () => {
    await using s = await setup();
    assert.equal(s.conn.state, "open");
    assert.equal(s.conn.peerName, "server");
    assert.equal(s.serverConn.peerName, "client");
    assert.equal(s.conn, await s.client.connect(s.addr));
  });

  Deno.test(`[${name}] 10,000 messages of mixed sizes up to the frame limit, in order`, async () => {
    const max = 256 * 1024;
    await using s = await setup({ maxFrameBytes: max });
    const size = (i: number) => i % 1000 === 999 ? max - 24 : i % 10 === 0 ? 4096 : (i * 7) % 100;
    const sender = (async () => {
      for (let i = 0; i < 10_000; i++) {
        const body = new Uint8Array(size(i)).fill(i & 0xff);
        await s.conn.send(i, body);
      }
    })();
    const got = await take(s.server, 10_000);
    await sender;
    for (let i = 0; i < 10_000; i++) {
      assert.equal(got[i].type, i);
      assert.equal(got[i].payload.length, size(i));
      if (size(i) > 0) assert.equal(got[i].payload[size(i) - 1], i & 0xff);
    }
    await assert.rejects(s.conn.send(1, new Uint8Array(max)), RangeError);
  });

  Deno.test(`[${name}] a slow reader does not make the writer's memory grow`, async () => {
    const limit = 512 * 1024;
    await using s = await setup({ maxQueueBytes: limit, maxInboundMessages: 16 });
    let accepted = 0;
    let failed: unknown = null;
    const total = 1024; // x 64 KiB = 64 MiB
    const writer = (async () => {
      for (let i = 0; i < total; i++) {
        try {
          await s.conn.send(i, new Uint8Array(64 * 1024));
        } catch (e) {
          failed = e;
          return;
        }
        accepted++;
      }
    })();
    // Nobody reads on the server. Wait until the writer stops moving (or fails).
    let last = -1, still = 0;
    while (still < 30 && failed === null) {
      await new Promise((r) => setTimeout(r, 5));
      still = accepted === last ? still + 1 : 0;
      last = accepted;
    }
    assert.ok(s.conn.queuedBytes <= limit + 64 * 1024 + 64, `queued ${s.conn.queuedBytes}`);
    if (s.c.readBackpressure) {
      assert.equal(failed, null);
      assert.ok(accepted < total, `writer held back after ${accepted} messages`);
      const got = await take(s.server, total);
      await writer;
      assert.equal(got.at(-1)?.type, total - 1);
    } else {
      // No read back-pressure in the API: the receiving link gives up at its bound instead.
      const reset = await waitEvent(s.server, "reset").catch(() => null);
      await writer;
      assert.ok(failed !== null || reset !== null, "the link was closed at its bound");
    }
  });

  Deno.test(`[${name}] close from the dialing side`, async () => {
    await using s = await setup();
    const closed = waitEvent(s.server, "close");
    await s.conn.close("bye");
    assert.equal((await closed).reason, "bye");
    await assert.rejects(s.conn.send(1, new Uint8Array(1)), ConnectionClosedError);
  });

  Deno.test(`[${name}] close from the accepting side`, async () => {
    await using s = await setup();
    const closed = waitEvent(s.client, "close");
    await s.serverConn.close("going away");
    const ev = await closed;
    assert.equal(ev.by, "peer");
    assert.equal(ev.reason, "going away");
  });

  Deno.test(`[${name}] a messenger that closes its listener first still closes its sessions in order`, async () => {
    await using s = await setup({}, "losslessClient");
    // Both ways at once: the client streams while the server queues and then closes.
    const streaming = (async () => {
      for (let i = 0; i < 300; i++) await s.conn.send(i, new Uint8Array(1024));
    })().catch(() => {});
    for (let i = 0; i < 300; i++) await s.serverConn.send(i, new Uint8Array(1024));
    // The first of close or reset, so that a fault fails the test at once, saying why.
    const first = (async () => {
      for await (const e of s.client.events()) {
        if (e.kind === "close") return `close by ${e.by}`;
        if (e.kind === "reset") return `reset: ${e.error.message}`;
      }
      return "events ended";
    })();
    await s.server.close(); // listener first, then its connections: they must not be cut
    assert.equal(await deadline(first, "the client's session to end"), "close by peer");
    const got = await take(s.client, 300);
    assert.deepEqual(got.map((m) => m.type), Array.from({ length: 300 }, (_, i) => i));
    await streaming;
    assert.equal(s.conn.state, "closed");
    assert.equal(s.conn.error, null, "closed in order, not by a fault");
  });

  Deno.test(`[${name}] a cut link surfaces as a fault on both ends`, async () => {
    await using s = await setup();
    const a = waitEvent(s.client, "reset"), b = waitEvent(s.server, "reset");
    s.cut.cutAll();
    const [ea, eb] = await Promise.all([a, b]);
    assert.ok(ea.error instanceof Error && eb.error instanceof Error);
    assert.equal(s.conn.state, "closed");
  });

  Deno.test(`[${name}] a lossless session resumes over this transport`, async () => {
    await using s = await setup({}, "losslessClient");
    for (let i = 0; i < 1000; i++) await s.conn.send(i, new Uint8Array(32));
    const resumed = waitEvent(s.client, "resume");
    s.cut.cutAll();
    for (let i = 1000; i < 2000; i++) await s.conn.send(i, new Uint8Array(32));
    await resumed;
    const got = await take(s.server, 2000);
    assert.deepEqual(got.map((m) => m.type), Array.from({ length: 2000 }, (_, i) => i));
  });

  Deno.test(`[${name}] a buffer reused once write() settles reaches the peer as it was written`, async () => {
    // The contract sessions rely on to encode each batch into the buffer of the one before.
    const c = await make();
    const transport = split ? splitReads(c.transport, { seed: ++splitSeed }) : c.transport;
    const listener = await transport.listen(c.listenAddr);
    const incoming = listener[Symbol.asyncIterator]().next();
    const dialer = await deadline(transport.connect(listener.addr), "the dial", 5000);
    let peer: Link | undefined;
    try {
      const sizes = [100, 40_000], rounds = [1, 2, 3];
      // Written while the other end reads (a QUIC stream is accepted once bytes arrive).
      const writing = (async () => {
        for (const size of sizes) {
          const buf = new Uint8Array(size);
          for (const k of rounds) {
            buf.fill(k);
            await dialer.write([buf]);
          }
        }
      })();
      writing.catch(() => {}); // awaited below, never left unhandled
      const accepted = await deadline(incoming, "the accept", 5000);
      assert.ok(!accepted.done, "the listener yields the link");
      peer = accepted.value;
      const got: number[] = [];
      const total = sizes.reduce((t, n) => t + n * rounds.length, 0);
      while (got.length < total) {
        const chunk = await deadline(peer.read(), "a read of the writes", 5000);
        assert.ok(chunk !== null, "the link ended early");
        for (const b of chunk) got.push(b);
      }
      await deadline(writing, "the writes", 5000);
      let at = 0;
      for (const size of sizes) {
        for (const k of rounds) {
          const part = got.slice(at, at += size);
          assert.ok(part.every((b) => b === k), `write ${k} of ${size} bytes arrived as written`);
        }
      }
    } finally {
      dialer.close();
      peer?.close();
      listener.close();
    }
  });

  Deno.test(`[${name}] bad bytes are rejected with a FrameError, the listener keeps serving`, async () => {
    await using s = await setup();
    const failed = waitEvent(s.server, "error");
    const raw = await s.c.transport.connect(s.addr);
    await raw.write([new TextEncoder().encode("GARBAGE!GARBAGE!")]);
    const ev = await failed;
    assert.ok(ev.error instanceof FrameError);
    assert.equal((ev.error as FrameError).reason, "banner");
    raw.close();
    await s.conn.send(5, new Uint8Array(5));
    const [m] = await take(s.server, 1);
    assert.equal(m.type, 5);
  });

  Deno.test(`[${name}] dialing nowhere fails with TransportError, or TimeoutError when nothing answers`, async () => {
    const c = await make();
    const m = new Messenger({
      transports: [c.transport],
      logger: captureLogger().log,
      handshakeTimeoutMs: 1000, // QUIC to a closed UDP port hears nothing: the dial times out
    });
    const l = await c.transport.listen(c.listenAddr);
    const addr = l.addr;
    l.close();
    await new Promise((r) => setTimeout(r, 20));
    await assert.rejects(
      m.connect(addr),
      (e) => e instanceof TransportError || (e instanceof TimeoutError && e.timeoutMs === 1000),
    );
    await m.close();
  });
}
