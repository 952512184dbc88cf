// Bad input over real TCP sockets: each case closes only the offending connection with a typed
// error and a log line, while a healthy connection on the same messenger keeps working.

import assert from "node:assert/strict";
import { FrameError, HandshakeRefusedError, Messenger } from "../mod.ts";
import {
  BANNER,
  encodeFrame,
  FLAG_CRC32,
  FLAG_UNCHECKED,
  FrameDecoder,
  Tag,
} from "../src/protocol/frame.ts";
import { decodeHello, encodeJson, type Hello } from "../src/protocol/handshake.ts";
import { encodeChallenge, newChallenge } from "../src/protocol/auth.ts";
import {
  decodeMessageHeader,
  decodeMessagesHeader,
  encodeOutgoing,
  MESSAGE_HEADER_BYTES,
  MESSAGES_HEADER_BYTES,
  RECORD_HEADER_BYTES,
  recordLength,
  recordType,
} from "../src/protocol/message.ts";
import { bytes, captureLogger, deadline, rawHello, take, waitEvent } from "./_helpers.ts";

const HELLO = rawHello();

async function rawDial(addr: string): Promise<Deno.TcpConn> {
  const port = Number(new URL(addr).port);
  return await Deno.connect({ hostname: "127.0.0.1", port });
}

/** Reads until the server closes the socket (failing after 5 s); returns everything read. */
async function readToEnd(conn: Deno.TcpConn): Promise<Uint8Array> {
  const chunks: number[] = [];
  const buf = new Uint8Array(4096);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    conn.close(); // ends the pending read
  }, 5000);
  for (;;) {
    let n: number | null;
    try {
      n = await conn.read(buf);
    } catch {
      break; // reset by the server (or closed above): also a close
    }
    if (n === null) break;
    chunks.push(...buf.subarray(0, n));
  }
  clearTimeout(timer);
  if (timedOut) throw new Error("the server did not close the connection within 5 s");
  try {
    conn.close();
  } catch {
    // closed already
  }
  return new Uint8Array(chunks);
}

/**
 * Sends the banner and `hello`, then reads until the server's banner, Challenge (44 bytes) and
 * Welcome (at least 32 bytes) are in; a server that closes first fails the test.
 */
async function helloAndWelcome(raw: Deno.TcpConn, hello: Hello): Promise<void> {
  await raw.write(new Uint8Array([...BANNER, ...encodeFrame(Tag.Hello, encodeJson(hello))]));
  const buf = new Uint8Array(4096);
  for (let got = 0; got < BANNER.length + 44 + 12 + 20;) {
    const n = await raw.read(buf);
    assert.ok(n !== null, "the server closed before its Welcome");
    got += n;
  }
}

async function setup() {
  const log = captureLogger();
  const server = new Messenger({ name: "server", logger: log.log, handshakeTimeoutMs: 300 });
  const addr = await server.listen("tcp://127.0.0.1:0");
  const good = new Messenger({ name: "good", logger: captureLogger().log });
  const conn = await good.connect(addr);
  return { log, server, addr, good, conn };
}

async function stillServes(s: Awaited<ReturnType<typeof setup>>, type: number) {
  await s.conn.send(type, bytes(100));
  const [m] = await take(s.server, 1);
  assert.equal(m.type, type);
  assert.equal(s.conn.state, "open");
}

function truncatedHello(): Uint8Array {
  const frame = encodeFrame(Tag.Hello, encodeJson(HELLO));
  return frame.subarray(0, frame.length - 5);
}

function oversizedFrame(): Uint8Array {
  const frame = encodeFrame(Tag.Hello, new Uint8Array(0));
  new DataView(frame.buffer, frame.byteOffset).setUint32(4, 0x7fff_ffff);
  return frame;
}

/** A Hello preamble that announces 1 MiB (under the frame limit, over the handshake cap). */
function bigHelloPreamble(): Uint8Array {
  const frame = encodeFrame(Tag.Hello, new Uint8Array(0));
  new DataView(frame.buffer, frame.byteOffset).setUint32(4, 1024 * 1024);
  return frame.subarray(0, 12);
}

function corruptHello(): Uint8Array {
  const frame = encodeFrame(Tag.Hello, encodeJson(HELLO));
  frame[20] ^= 0x55;
  return frame;
}

/** A Messages frame of 10-byte bodies with these sequence numbers, the first record's priority set. */
function messagesFrame(seqs: number[], priority = 1): Uint8Array {
  const ms = seqs.map((seq, i) => ({ type: 40 + i, priority: 1, payload: bytes(10), seq }));
  const frame = encodeOutgoing(ms, 0, 0, 65536).chunks[0];
  if (priority !== 1) {
    frame[12 + MESSAGES_HEADER_BYTES] = priority;
    return encodeFrame(Tag.Messages, frame.subarray(12)); // sealed again: a valid checksum
  }
  return frame;
}

const CASES: { name: string; bytes: () => Uint8Array; reason: string; half?: boolean }[] = [
  {
    name: "garbage",
    bytes: () => crypto.getRandomValues(new Uint8Array(512)).map((b, i) => i === 0 ? 0 : b),
    reason: "banner",
  },
  {
    name: "a wrong banner",
    bytes: () => new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"),
    reason: "banner",
  },
  {
    name: "a truncated frame",
    bytes: () => new Uint8Array([...BANNER, ...truncatedHello()]),
    reason: "truncated",
    half: true,
  },
  {
    name: "an oversized length",
    bytes: () => new Uint8Array([...BANNER, ...oversizedFrame()]),
    reason: "oversize",
  },
  {
    // Refused as the preamble arrives: the 1 MiB is never sent, let alone buffered.
    name: "a Hello announced above 16 KiB",
    bytes: () => new Uint8Array([...BANNER, ...bigHelloPreamble()]),
    reason: "oversize",
  },
  {
    name: "a corrupt checksum",
    bytes: () => new Uint8Array([...BANNER, ...corruptHello()]),
    reason: "checksum",
  },
  {
    name: "a data frame before the handshake",
    bytes: () => new Uint8Array([...BANNER, ...encodeFrame(Tag.Message, new Uint8Array(24))]),
    reason: "unexpected",
  },
  {
    name: "a Messages frame before the handshake",
    bytes: () => new Uint8Array([...BANNER, ...messagesFrame([1, 2], 0)]),
    reason: "unexpected",
  },
  { name: "silence", bytes: () => new Uint8Array(0), reason: "handshake-timeout" },
];

for (const c of CASES) {
  Deno.test(`[tcp] ${c.name} closes only that connection with a FrameError`, async () => {
    const s = await setup();
    const failed = waitEvent(s.server, "error");
    const raw = await rawDial(s.addr);
    const data = c.bytes();
    if (data.length > 0) await raw.write(data);
    if (c.half) await raw.closeWrite();
    const answer = await readToEnd(raw);
    const ev = await failed;
    assert.ok(ev.error instanceof FrameError, String(ev.error));
    assert.equal((ev.error as FrameError).reason, c.reason);
    // The server answered with its banner at most, then closed.
    assert.ok(answer.length <= BANNER.length + 1024);
    assert.ok(
      s.log.lines.some((l) => l.startsWith("warn:") && l.includes(ev.error.message)),
      "a log line says why",
    );
    await stillServes(s, 7);
    assert.equal(s.server.health().connections.open, 1);
    await s.good.close();
    await s.server.close();
  });
}

Deno.test("[tcp] another protocol version is refused with HandshakeRefusedError", async () => {
  const s = await setup();
  const failed = waitEvent(s.server, "error");
  const raw = await rawDial(s.addr);
  const banner = BANNER.slice();
  banner[7] = 99;
  await raw.write(banner);
  await readToEnd(raw);
  const ev = await failed;
  assert.ok(ev.error instanceof HandshakeRefusedError);
  assert.equal((ev.error as HandshakeRefusedError).field, "version");
  await stillServes(s, 8);
  await s.good.close();
  await s.server.close();
});

Deno.test("[tcp] an out-of-order message after the handshake resets that session only", async () => {
  const s = await setup();
  const reset = waitEvent(s.server, "reset");
  const raw = await rawDial(s.addr);
  await helloAndWelcome(raw, HELLO); // the session is open on the server
  const msg = new Uint8Array(24);
  new DataView(msg.buffer).setUint32(12, 5); // seq 5 where 1 is expected
  await raw.write(encodeFrame(Tag.Message, msg));
  await readToEnd(raw);
  const ev = await reset;
  assert.ok(ev.error instanceof FrameError);
  assert.equal((ev.error as FrameError).reason, "unexpected");
  assert.match(ev.error.message, /expected seq 1, got 5/);
  await stillServes(s, 9);
  await s.good.close();
  await s.server.close();
});

Deno.test("[tcp] a message without its checksum is refused on a link that does not protect integrity", async () => {
  const s = await setup();
  const reset = waitEvent(s.server, "reset");
  const raw = await rawDial(s.addr);
  // It even claims integrity: the server's own end of a TCP link does not, so it never agrees.
  await helloAndWelcome(raw, { ...HELLO, integrity: true });
  const msg = new Uint8Array(24);
  new DataView(msg.buffer).setUint32(12, 1); // the expected seq: only the flag is wrong
  await raw.write(encodeFrame(Tag.Message, msg, FLAG_UNCHECKED));
  await readToEnd(raw);
  const ev = await reset;
  assert.ok(ev.error instanceof FrameError);
  assert.equal((ev.error as FrameError).reason, "malformed");
  assert.match(ev.error.message, /without checksum/);
  assert.equal(s.server.counters.messagesReceived.reduce((a, b) => a + b), 0, "nothing delivered");
  await stillServes(s, 10);
  await s.good.close();
  await s.server.close();
});

Deno.test("[tcp] a storm of bad peers leaves memory and connections bounded", async () => {
  const s = await setup();
  const makers = [
    () => new Uint8Array([...BANNER, ...oversizedFrame()]),
    () => new Uint8Array([...BANNER, ...corruptHello()]),
    () => crypto.getRandomValues(new Uint8Array(2048)).map((b, i) => i === 0 ? 1 : b),
  ];
  // Warm up, then measure.
  const round = async (n: number) => {
    for (let i = 0; i < n; i += 10) {
      await Promise.all(Array.from({ length: 10 }, async (_, j) => {
        const raw = await rawDial(s.addr);
        await raw.write(makers[(i + j) % makers.length]()).catch(() => {});
        await readToEnd(raw);
      }));
    }
  };
  await round(30);
  const before = Deno.memoryUsage().heapUsed;
  await round(300);
  const grown = Deno.memoryUsage().heapUsed - before;
  assert.ok(grown < 32 * 1024 * 1024, `heap grew by ${grown} bytes`);
  await stillServes(s, 10);
  // Only the healthy connection is left (the raw peers' ends are gone).
  assert.equal(s.server.connections().length, 1);
  // Each distinct cause was logged, one line per connection, not more.
  assert.ok(s.log.lines.length >= 330 && s.log.lines.length <= 340, `${s.log.lines.length}`);
  await s.good.close();
  await s.server.close();
});

Deno.test("[tcp] a peer that trickles its hello slower than the timeout is cut off", async () => {
  const s = await setup();
  const failed = waitEvent(s.server, "error");
  const raw = await rawDial(s.addr);
  const data = new Uint8Array([...BANNER, ...encodeFrame(Tag.Hello, encodeJson(HELLO))]);
  let cut = false;
  const trickle = (async () => {
    for (let i = 0; i < data.length && !cut; i++) {
      try {
        await raw.write(data.subarray(i, i + 1));
      } catch {
        cut = true;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const ev = await failed;
  cut = true;
  assert.ok(ev.error instanceof FrameError);
  assert.equal((ev.error as FrameError).reason, "handshake-timeout");
  await trickle;
  raw.close();
  await stillServes(s, 11);
  await s.good.close();
  await s.server.close();
});

Deno.test("[tcp] a peer that never reads makes send() wait; the queue stays bounded", async () => {
  const log = captureLogger();
  const limit = 256 * 1024;
  const server = new Messenger({ name: "server", logger: log.log, maxQueueBytes: limit });
  const addr = await server.listen("tcp://127.0.0.1:0");
  const accepted = waitEvent(server, "accept");
  const raw = await rawDial(addr);
  await raw.write(new Uint8Array([...BANNER, ...encodeFrame(Tag.Hello, encodeJson(HELLO))]));
  const conn = (await accepted).connection;
  let sent = 0;
  let maxQueued = 0;
  const total = 4096; // 4096 x 16 KiB = 64 MiB, far beyond socket buffers
  const sender = (async () => {
    for (; sent < total; sent++) {
      await conn.send(1, bytes(16 * 1024)).catch(() => {});
      maxQueued = Math.max(maxQueued, conn.queuedBytes);
      if (conn.state !== "open") break;
    }
  })();
  // Wait until the sender is stuck: the count stops moving across 20 event-loop turns.
  let last = -1;
  let still = 0;
  while (still < 20) {
    await new Promise((r) => setTimeout(r, 5));
    still = sent === last ? still + 1 : 0;
    last = sent;
  }
  assert.ok(sent < total, `sender was blocked after ${sent} messages`);
  assert.ok(maxQueued <= limit + 16 * 1024 + 64, `queue peaked at ${maxQueued}`);
  raw.close();
  await sender;
  assert.equal(conn.state, "closed");
  await server.close();
});

Deno.test("Message frames go with CRC-32 only to a peer that says it accepts them (an older node gets CRC-32C)", async () => {
  const server = new Messenger({ name: "server", logger: captureLogger().log });
  const addr = await server.listen("tcp://127.0.0.1:0");
  let raw: Deno.TcpConn | undefined;
  try {
    for (const [hello, flags] of [[HELLO, 0], [{ ...HELLO, crc32: true }, FLAG_CRC32]] as const) {
      raw = await rawDial(addr);
      const accepted = waitEvent(server, "accept");
      accepted.catch(() => {}); // awaited below; never left unhandled if the write fails first
      await raw.write(new Uint8Array([...BANNER, ...encodeFrame(Tag.Hello, encodeJson(hello))]));
      const conn = (await accepted).connection;
      await conn.send(7, bytes(3000));
      // Every frame is decoded, so each checksum is checked with the algorithm its flags name.
      const decoder = new FrameDecoder({ maxFrameBytes: 1 << 20 });
      const seen: { tag: number; flags: number }[] = [];
      const buf = new Uint8Array(64 * 1024);
      const until = performance.now() + 5000;
      while (!seen.some((f) => f.tag === Tag.Message) && performance.now() < until) {
        const n = await deadline(raw!.read(buf), "a frame from the server", 5000);
        assert.ok(n !== null, "the server closed before its message");
        decoder.push(buf.slice(0, n), (tag, f) => void seen.push({ tag, flags: f }));
      }
      const message = seen.find((f) => f.tag === Tag.Message);
      assert.ok(message, `no Message among ${JSON.stringify(seen)}`);
      assert.equal(message.flags, flags, `hello ${JSON.stringify(hello.crc32)}`);
      const welcome = seen.find((f) => f.tag === Tag.Welcome);
      assert.equal(welcome?.flags, 0, "handshake frames always go with CRC-32C");
      raw.close();
      raw = undefined;
    }
  } finally {
    raw?.close();
    await server.close();
  }
});

Deno.test("a dialer sends CRC-32 Message frames only to a server whose Welcome accepts them", async () => {
  for (const [welcomeExtra, flags] of [[{}, 0], [{ crc32: true }, FLAG_CRC32]] as const) {
    // A hand-made server: banner and Challenge, then a Welcome with or without `crc32`.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const client = new Messenger({ name: "client", logger: captureLogger().log });
    let raw: Deno.TcpConn | undefined;
    try {
      const dialed = client.connect(`tcp://127.0.0.1:${listener.addr.port}`);
      dialed.catch(() => {}); // awaited below; never left unhandled if the test fails first
      raw = await deadline(listener.accept(), "the client's dial", 5000);
      await raw.write(
        new Uint8Array([
          ...BANNER,
          ...encodeFrame(Tag.Challenge, encodeChallenge(newChallenge())),
        ]),
      );
      const decoder = new FrameDecoder({ maxFrameBytes: 1 << 20 });
      const seen: { tag: number; flags: number; payload: Uint8Array }[] = [];
      const buf = new Uint8Array(64 * 1024);
      const readUntil = async (tag: number) => {
        const until = performance.now() + 5000;
        while (!seen.some((f) => f.tag === tag) && performance.now() < until) {
          const n = await deadline(raw!.read(buf), `frame ${tag} from the client`, 5000);
          assert.ok(n !== null, "the client closed");
          decoder.push(
            buf.slice(0, n),
            (t, f, p) => void seen.push({ tag: t, flags: f, payload: p.slice() }),
          );
        }
        const frame = seen.find((f) => f.tag === tag);
        assert.ok(frame, `no frame ${tag} among ${seen.map((f) => f.tag)}`);
        return frame;
      };
      const hello = decodeHello((await readUntil(Tag.Hello)).payload);
      assert.equal(hello.crc32, true, "the dialer says it accepts CRC-32");
      const welcome = rawHello({ name: "rawsrv", policy: "statelessServer", ...welcomeExtra });
      await raw.write(encodeFrame(Tag.Welcome, encodeJson(welcome)));
      const conn = await deadline(dialed, "the client's session", 5000);
      await conn.send(5, bytes(2000));
      const message = await readUntil(Tag.Message);
      assert.equal(message.flags, flags, `Welcome ${JSON.stringify(welcomeExtra)}`);
    } finally {
      raw?.close();
      await client.close();
      listener.close();
    }
  }
});

Deno.test("[tcp] a malformed Messages frame resets that session only, and delivers none of it", async () => {
  const s = await setup();
  const cut = (() => {
    // Its last record runs past the frame: the checksum is right, the structure is not.
    const frame = messagesFrame([1, 2, 3]);
    return encodeFrame(Tag.Messages, frame.subarray(12, frame.length - 4));
  })();
  const cases: [string, Uint8Array, string, RegExp][] = [
    ["a record past its frame", cut, "malformed", /past its frame/],
    ["an unknown priority", messagesFrame([1, 2], 7), "malformed", /priority: 7/],
    ["a gap", messagesFrame([5, 6]), "unexpected", /expected seq 1, got 5/],
  ];
  try {
    for (const [what, frame, reason, message] of cases) {
      const reset = waitEvent(s.server, "reset");
      const raw = await rawDial(s.addr);
      await helloAndWelcome(raw, HELLO);
      await raw.write(frame);
      await readToEnd(raw);
      const ev = await reset;
      assert.ok(ev.error instanceof FrameError, `${what}: ${ev.error}`);
      assert.equal((ev.error as FrameError).reason, reason, what);
      assert.match(ev.error.message, message, what);
      // Nothing of the bad frame was delivered: the next message taken is the good peer's.
      await stillServes(s, 9);
    }
  } finally {
    await s.good.close();
    await s.server.close();
  }
});

Deno.test("[tcp] a Messages frame larger than the node takes is refused as its preamble arrives", async () => {
  const s = await setup();
  try {
    const reset = waitEvent(s.server, "reset");
    const raw = await rawDial(s.addr);
    await helloAndWelcome(raw, HELLO);
    // 16 MiB of empty records would be two million messages from one frame: only the preamble
    // is sent, and it is refused before any payload is buffered.
    const preamble = new Uint8Array(12);
    preamble[0] = Tag.Messages;
    new DataView(preamble.buffer).setUint32(4, 16 * 1024 * 1024 - 64);
    await raw.write(preamble);
    await readToEnd(raw);
    const ev = await reset;
    assert.ok(ev.error instanceof FrameError, String(ev.error));
    assert.equal((ev.error as FrameError).reason, "oversize");
    await stillServes(s, 9);
  } finally {
    await s.good.close();
    await s.server.close();
  }
});

Deno.test("Messages frames go only to a peer that says batch, within its limit; large bodies go alone", async () => {
  const server = new Messenger({ name: "server", logger: captureLogger().log });
  const addr = await server.listen("tcp://127.0.0.1:0");
  let raw: Deno.TcpConn | undefined;
  try {
    for (const batch of [undefined, 4096]) {
      raw = await rawDial(addr);
      const accepted = waitEvent(server, "accept");
      accepted.catch(() => {}); // awaited below; never left unhandled if the write fails first
      const hello = { ...HELLO, crc32: true, batch };
      await raw.write(new Uint8Array([...BANNER, ...encodeFrame(Tag.Hello, encodeJson(hello))]));
      const conn = (await accepted).connection;
      const sizes = Array.from({ length: 300 }, (_, i) => i === 150 ? 20_000 : 100);
      for (const [i, n] of sizes.entries()) await conn.send(i, new Uint8Array(n).fill(i & 0xff));
      const got: { type: number; seq: number; body: Uint8Array }[] = [];
      const frames: { tag: number; length: number; count: number }[] = [];
      const decoder = new FrameDecoder({ maxFrameBytes: 1 << 20 });
      const onFrame = (tag: number, _f: number, p: Uint8Array) => {
        if (tag === Tag.Message) {
          const h = decodeMessageHeader(p);
          got.push({ type: h.type, seq: h.seq, body: p.slice(MESSAGE_HEADER_BYTES) });
          frames.push({ tag, length: p.length, count: 1 });
        } else if (tag === Tag.Messages) {
          const h = decodeMessagesHeader(p);
          for (let i = 0, at = MESSAGES_HEADER_BYTES; i < h.count; i++) {
            const start = at + RECORD_HEADER_BYTES, end = start + recordLength(p, at);
            got.push({ type: recordType(p, at), seq: h.seq + i, body: p.slice(start, end) });
            at = end;
          }
          frames.push({ tag, length: p.length, count: h.count });
        }
      };
      const buf = new Uint8Array(64 * 1024);
      const until = performance.now() + 5000;
      while (got.length < sizes.length && performance.now() < until) {
        const n = await deadline(raw!.read(buf), "messages from the server", 5000);
        assert.ok(n !== null, "the server closed before its messages");
        decoder.push(buf.slice(0, n), onFrame);
      }
      assert.deepEqual(got.map((m) => m.type), sizes.map((_, i) => i), `batch ${batch}: order`);
      assert.deepEqual(got.map((m) => m.seq), sizes.map((_, i) => i + 1), `batch ${batch}: seqs`);
      for (const [i, m] of got.entries()) {
        assert.ok(m.body.length === sizes[i] && m.body.every((b) => b === (i & 0xff)), `body ${i}`);
      }
      const batched = frames.filter((f) => f.tag === Tag.Messages);
      if (batch === undefined) {
        assert.equal(batched.length, 0, "an older peer gets a Message frame per message");
      } else {
        assert.ok(batched.length > 0, "small messages share Messages frames");
        assert.ok(batched.every((f) => f.length <= batch), "each within the peer's limit");
        assert.ok(batched.some((f) => f.count > 1), "more than one message per frame");
        const alone = frames.filter((f) => f.tag === Tag.Message);
        assert.deepEqual(alone.map((f) => f.length), [MESSAGE_HEADER_BYTES + 20_000]);
      }
      raw.close();
      raw = undefined;
    }
  } finally {
    raw?.close();
    await server.close();
  }
});
