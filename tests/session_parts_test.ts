// The parts of a session, each alone with fakes: the state machine and its per-state timers,
// the send queue, the replay buffer, the sequence (resume decisions), the writer and the link
// slot. The model-based tests (model_test.ts) check them together.

import { unhandledRejections } from "./_guard.ts";
import assert from "node:assert/strict";
import { FrameError } from "../src/errors.ts";
import { newCounters } from "../src/counters.ts";
import { resolveLimits } from "../src/options.ts";
import { BANNER, encodeFrame, FLAG_UNCHECKED, FrameDecoder, Tag } from "../src/protocol/frame.ts";
import {
  decodeMessageHeader,
  decodeMessagesHeader,
  encodeMessages,
  encodeOutgoing,
  messageFrameBytes,
} from "../src/protocol/message.ts";
import { IllegalTransitionError, StateMachine, type TimerPort } from "../src/session/state.ts";
import { type QueuedMessage, SendQueue } from "../src/session/send_queue.ts";
import { BodyArena, Receiver } from "../src/session/receiver.ts";
import { newSessionStats } from "../src/session/types.ts";
import { emptyRing, Ring } from "../src/_ring.ts";
import { Arena, SizeClassPool, writeBuffers } from "../src/_buffer_pool.ts";
import { Deferred } from "../src/_deferred.ts";
import { InboundQueue } from "../src/node/inbound.ts";
import type { Connection } from "../src/connection.ts";
import fc from "npm:fast-check@4";
import { REPLAY_CHUNK_BYTES, ReplayBuffer, WrittenRun } from "../src/session/replay_buffer.ts";
import { SessionSequence } from "../src/session/sequence.ts";
import { BATCH_BYTES, MIN_BATCH_BYTES, Writer, type WriterSession } from "../src/session/writer.ts";
import { LinkSlot } from "../src/session/link_slot.ts";
import { LinkReader, type ReaderOwner } from "../src/session/link_reader.ts";
import { Close } from "../src/session/close.ts";
import type { Link } from "../transports/types.ts";
import { deadline, rawHello } from "./_helpers.ts";

/** Timers that fire only when the test says so. */
function fakeTimers() {
  const timers: { ms: number; fn: () => void; cancelled: boolean }[] = [];
  const port: TimerPort = {
    schedule(ms, fn) {
      const t = { ms, fn, cancelled: false };
      timers.push(t);
      return { cancel: () => void (t.cancelled = true) };
    },
  };
  const fireAll = () => {
    for (const t of timers.splice(0)) if (!t.cancelled) t.fn();
  };
  return { port, timers, fireAll };
}

function message(seq: number, size = 4, priority = 1): QueuedMessage {
  const payload = new Uint8Array(size);
  return { type: seq, priority, payload, seq, bytes: messageFrameBytes(payload) };
}

Deno.test("StateMachine: leaving a state cancels its timer, so it never fires late", () => {
  const t = fakeTimers();
  const sm = new StateMachine(t.port);
  let fired = 0;
  sm.enter("handshaking", 5000, () => fired++);
  sm.enter("open");
  t.fireAll();
  assert.equal(fired, 0, "the handshake timeout belonged to handshaking");
  sm.enter("standby", 100, () => fired++);
  sm.rearm(200, () => (fired += 10));
  t.fireAll();
  assert.equal(fired, 10, "only the rearmed timer fires");
});

Deno.test("StateMachine: a transition the table does not allow throws IllegalTransitionError", () => {
  const sm = new StateMachine(fakeTimers().port);
  sm.enter("handshaking");
  sm.enter("reconnecting");
  assert.throws(() => sm.enter("standby"), IllegalTransitionError);
  assert.equal(sm.state, "reconnecting", "the state is unchanged");
});

Deno.test("Ring: behaves as an array queue under any mix of pushes, shifts, drains and lookups", () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.nat(50), fc.constant(-1), fc.constant(-2)), {
        minLength: 100,
        maxLength: 3000,
      }),
      (ops) => {
        const ring = new Ring<number>();
        const model: number[] = [];
        for (const op of ops) {
          if (op === -1) assert.equal(ring.shift(), model.shift());
          else if (op === -2 && model.length > 40) {
            assert.deepEqual(ring.drain(), model.splice(0));
          } else {
            // Pushes in runs, so the ring grows past its shrink size and wraps.
            for (let i = 0; i <= op; i++) {
              ring.push(model.length);
              model.push(model.length);
            }
          }
          assert.equal(ring.length, model.length);
          assert.equal(ring.peek(), model[0]);
          const k = model.length >> 1;
          assert.equal(ring.at(k), model[k]);
          assert.equal(ring.at(model.length), undefined);
        }
      },
    ),
    { seed: 20261206, numRuns: 200 },
  );
});

Deno.test("SendQueue: strict priorities, FIFO within one, waiters released below the limit", async () => {
  const q = new SendQueue();
  q.push({ ...message(1, 4, 2), bytes: 40 });
  q.push({ ...message(2, 4, 1), bytes: 40 });
  q.push({ ...message(3, 4, 0), bytes: 40 });
  q.push({ ...message(4, 4, 0), bytes: 40 });
  const room = q.waitForRoom(100);
  let released = false;
  room.then(() => released = true);
  const order = [];
  for (let m = q.shift(() => true); m; m = q.shift(() => true)) {
    order.push(m.type);
    q.taken(40, 100);
  }
  assert.deepEqual(order, [3, 4, 2, 1]);
  await room;
  assert.ok(released);
  assert.equal(q.bytes, 0);
});

Deno.test("SendQueue: a refused head blocks its level (no overtaking within a priority)", () => {
  const q = new SendQueue();
  q.push({ ...message(1, 4, 1), bytes: 40 });
  q.push({ ...message(2, 4, 1), bytes: 40 });
  assert.equal(q.shift(() => false), undefined);
  assert.equal(q.shift(() => true)?.type, 1);
});

Deno.test("SendQueue: an aborted wait rejects with the signal's reason and is forgotten", async () => {
  const q = new SendQueue();
  q.push({ ...message(1), bytes: 1000 });
  const abort = new AbortController();
  const waiting = q.waitForRoom(10, abort.signal);
  abort.abort(new Error("gave up"));
  await assert.rejects(waiting, /gave up/);
  q.failWaiters(() => new Error("must not reach the aborted waiter"));
});

Deno.test("ReplayBuffer: acks trim, a rewind writes everything unacknowledged again", () => {
  const r = new ReplayBuffer();
  for (let seq = 1; seq <= 5; seq++) r.push(message(seq, 10));
  assert.equal(r.bytes, 5 * messageFrameBytes(new Uint8Array(10)));
  assert.equal(r.replayPending, false);
  r.ack(2);
  assert.equal(r.count, 3);
  r.rewind();
  const again = [];
  for (let m = r.nextReplay(); m; m = r.nextReplay()) again.push(m.seq);
  assert.deepEqual(again, [3, 4, 5]);
  r.ack(5);
  assert.equal(r.count, 0);
  assert.equal(r.bytes, 0);
});

Deno.test("ReplayBuffer: stays exact across compaction of a long buffer", () => {
  const r = new ReplayBuffer();
  for (let seq = 1; seq <= 10_000; seq++) r.push(message(seq, 0));
  r.ack(6000); // past the compaction point
  r.rewind();
  assert.equal(r.nextReplay()?.seq, 6001);
  assert.equal(r.count, 4000);
  assert.deepEqual(r.takeAll().map((m) => m.seq).slice(0, 2), [6001, 6002]);
});

Deno.test("ReplayBuffer: keeps a Messages frame whole; a partial ack counts; a reset hands back copies", () => {
  const r = new ReplayBuffer();
  const ms = [1, 2, 3, 4].map((seq) => ({
    ...message(seq, 2, 2),
    payload: new Uint8Array([seq, 9]),
  }));
  const frame = encodeOutgoing(ms.slice(0, 3), 0, 0, 65536).chunks[0];
  r.pushRun(frame, 1, 3);
  const wire = frame.slice();
  frame.fill(0); // the writer reuses its buffer: the replay buffer kept a copy
  r.push(ms[3]);
  assert.equal(r.count, 4);
  assert.equal(r.bytes, wire.length + messageFrameBytes(ms[3].payload));
  r.ack(2);
  assert.equal(r.count, 2, "two of the frame's three records are acknowledged");
  assert.equal(r.bytes, wire.length + messageFrameBytes(ms[3].payload), "the frame stays whole");
  r.rewind();
  const again = r.nextReplay();
  assert.ok(again instanceof WrittenRun);
  assert.deepEqual([again.first, again.seq, again.count], [1, 3, 3]);
  assert.deepEqual(again.frame, wire);
  assert.equal(r.nextReplay(), ms[3]);
  const back = r.takeAll();
  assert.deepEqual(back.map((m) => [m.seq, m.type, m.priority, [...m.payload]]), [
    [3, 3, 2, [3, 9]],
    [4, 4, 2, [4, 9]],
  ]);
  assert.equal(back[1], ms[3], "a message kept alone comes back as it was");
  assert.deepEqual([r.count, r.bytes, r.replayPending], [0, 0, false]);
  r.pushRun(wire, 1, 3);
  r.ack(3);
  assert.deepEqual([r.count, r.bytes], [0, 0], "an ack of its last record drops the frame");
});

Deno.test("ReplayBuffer: chunks follow what it holds: a lone frame a small one, a backlog pooled 256 KiB ones", () => {
  const r = new ReplayBuffer();
  const frame = encodeOutgoing([message(1, 1000)], 0, 0, 65536).chunks[0];
  r.pushRun(frame, 1, 1);
  r.rewind();
  const lone = r.nextReplay() as WrittenRun;
  assert.equal(lone.frame.buffer.byteLength, 4096, "a small chunk");
  r.ack(1);
  // A backlog: 600 frames of about 1 KB, so later chunks are full-size ones.
  for (let seq = 2; seq <= 601; seq++) r.pushRun(frame, seq, seq);
  r.rewind();
  const held: WrittenRun[] = [];
  for (let w = r.nextReplay(); w; w = r.nextReplay()) held.push(w as WrittenRun);
  const big = held.filter((w) => w.frame.buffer.byteLength === REPLAY_CHUNK_BYTES);
  assert.ok(big.length > 200, `${big.length} frames in full-size chunks`);
  assert.ok(held.every((w, i) => w.seq === i + 2 && w.frame.length === frame.length));
  // Acknowledging every frame of the first full-size chunk gives it back to the pool, and the
  // next full-size chunk the buffer needs is that one.
  const first = big[0].chunk.buf;
  const lastInFirst = big.filter((w) => w.chunk.buf === first).at(-1)!.seq;
  r.ack(lastInFirst);
  for (let seq = 602; seq <= 1000; seq++) r.pushRun(frame, seq, seq);
  r.rewind();
  let reused = false;
  for (let w = r.nextReplay(); w; w = r.nextReplay()) {
    if ((w as WrittenRun).chunk.buf === first) reused = w.seq > 601 || reused;
  }
  assert.ok(reused, "the returned chunk was taken again");
  r.ack(1000);
  assert.deepEqual([r.count, r.bytes, r.lastSeq], [0, 0, 0], "empty: no chunk held");
});

Deno.test("SizeClassPool: rounds up to powers of two within its range, keeps at most 8 of each", () => {
  const pool = new SizeClassPool(4096, 262144);
  assert.deepEqual([1, 4096, 4097, 262144].map((n) => pool.take(n).length), [
    4096,
    4096,
    8192,
    262144,
  ]);
  const above = pool.take(262145);
  assert.equal(above.length, 262145, "above the range: exactly what was asked");
  pool.give(above);
  assert.notEqual(pool.take(262145), above, "and never kept");
  pool.give(new Uint8Array(5000)); // not a size class
  assert.equal(pool.take(5000).length, 8192);
  const nine = Array.from({ length: 9 }, () => pool.take(8192));
  for (const b of nine) pool.give(b);
  const back = Array.from({ length: 9 }, () => pool.take(8192));
  assert.equal(back.filter((b) => nine.includes(b)).length, 8, "8 kept, the ninth dropped");
  const roomy = new SizeClassPool(4096, 262144, 32);
  const many = Array.from({ length: 40 }, () => roomy.take(262144));
  for (const b of many) roomy.give(b);
  const again = Array.from({ length: 40 }, () => roomy.take(262144));
  assert.equal(again.filter((b) => many.includes(b)).length, 32, "as many as it is told to keep");
});

Deno.test("SessionSequence: next message, replayed duplicate, gap", () => {
  const s = new SessionSequence(() => false);
  const frame = (seq: number) =>
    encodeMessages([message(seq, 0)], messageFrameBytes(new Uint8Array(0)), 0).subarray(12);
  assert.equal(s.accept(frame(1))?.seq, 1);
  assert.equal(s.inSeq, 0, "nothing is committed before delivery");
  s.received(1);
  assert.equal(s.accept(frame(1)), null, "a replay of a delivered message is dropped");
  assert.throws(() => s.accept(frame(3)), FrameError);
  assert.equal(s.takeAckDue(), 1);
  assert.equal(s.takeAckDue(), undefined, "one standalone ack per new seq");
});

Deno.test("SessionSequence: an ack beyond the last sent is a protocol error", () => {
  const s = new SessionSequence(() => true);
  s.nextSeq();
  s.ack(1);
  assert.throws(() => s.ack(2), FrameError);
});

Deno.test("SessionSequence: resume needs the same incarnations, the session's id and its secret", () => {
  // Both ends derive the secret where the session began (link challenges "c0" and "d0").
  const origin = {
    serverChallenge: "c0",
    hello: rawHello({ name: "cli", nonce: "p1", challenge: "d0" }),
    server: { name: "srv", nonce: "me" },
    session: "s1",
  };
  const server = new SessionSequence(() => false), client = new SessionSequence(() => false);
  server.peerNonce = "p1";
  client.peerNonce = "me";
  server.id = client.id = "s1";
  server.began("", origin);
  client.began("", origin);
  // A new link: server challenge "c1", client challenge "d1".
  const hello = rawHello({
    nonce: "p1",
    resumeNonce: "me",
    session: "s1",
    challenge: "d1",
    resumeProof: client.resumeProof("hello", "c1", "d1"),
  });
  assert.deepEqual(server.decideAdopt(hello, "me", "c1"), { kind: "resume" });
  assert.equal(server.decideAdopt(hello, "me", "c2").kind, "reset", "a proof is for one link");
  assert.equal(
    server.decideAdopt({ ...hello, resumeProof: undefined }, "me", "c1").kind,
    "reset",
    "the public nonces alone do not resume",
  );
  const other = new SessionSequence(() => false);
  other.id = "s1";
  other.began("", { ...origin, serverChallenge: "cX" });
  assert.equal(
    server.decideAdopt(
      { ...hello, resumeProof: other.resumeProof("hello", "c1", "d1") },
      "me",
      "c1",
    )
      .kind,
    "reset",
    "a secret from other challenges does not resume",
  );
  server.began("k", origin);
  assert.equal(server.decideAdopt(hello, "me", "c1").kind, "reset", "the key goes into the secret");
  server.began("", origin);
  assert.equal(server.decideAdopt({ ...hello, session: "s0" }, "me", "c1").kind, "reset");
  assert.deepEqual(server.decideAdopt({ ...hello, nonce: "p2" }, "me", "c1"), {
    kind: "reset",
    reason: "peer restarted",
  });
  assert.deepEqual(server.decideAdopt({ ...hello, session: undefined }, "me", "c1"), {
    kind: "reset",
    reason: "peer lost the session",
  });
  const welcome = rawHello({
    nonce: "me",
    resumed: true,
    session: "s1",
    resumeProof: server.resumeProof("welcome", "c1", "d1"),
  });
  assert.equal(client.decideWelcome(welcome, "c1", "d1").kind, "resume");
  assert.equal(
    client.decideWelcome({ ...welcome, resumeProof: undefined }, "c1", "d1").kind,
    "unproven",
  );
  assert.equal(client.decideWelcome(welcome, "c1", "d2").kind, "unproven");
  assert.equal(client.decideWelcome({ ...welcome, resumed: false }, "c1", "d1").kind, "reset");
  assert.equal(client.decideWelcome({ ...welcome, session: "other" }, "c1", "d1").kind, "reset");
  assert.ok(
    server.checkClaim({ ...hello, inSeq: 1 }, "Resume") instanceof FrameError,
    "nothing sent",
  );
});

Deno.test("SessionSequence: a reset hands back the unacknowledged and numbers start over", () => {
  const s = new SessionSequence(() => false);
  for (let i = 0; i < 3; i++) s.replay.push(message(s.nextSeq()));
  s.ack(1);
  assert.deepEqual(s.reset().map((m) => m.seq), [2, 3]);
  assert.equal(s.outSeq, 0);
  assert.equal(s.nextSeq(), 1);
});

/** A writer over a fake session and link that records every batch. */
function writerRig(
  options: {
    lossy?: boolean;
    maxUnackedBytes?: number;
    unchecked?: boolean;
    /** The link's speed, bytes per ms of the rig's clock (default: writes take no time). */
    bytesPerMs?: () => number;
    /** Payload bytes of a Messages frame the peer takes (default 0: none). */
    batchLimit?: () => number;
    /** Where failed writes go (default: they throw, failing the test). */
    failures?: Error[];
    /** Whether the link rejects the next write (default: never). */
    rejectWrites?: () => boolean;
  } = {},
) {
  const batches: Uint8Array[][] = [];
  let time = 0;
  const link = {
    write(chunks: Uint8Array[]) {
      if (options.rejectWrites?.()) return Promise.reject(new Error("link failed"));
      batches.push(chunks.map((c) => c.slice())); // the writer reuses them once this settles
      const speed = options.bytesPerMs?.() ?? Infinity;
      let ms = 0;
      for (const c of chunks) ms += c.length / speed;
      // The time passes while the write is pending, as a kernel takes bytes as the link
      // carries them (the call itself returns at once).
      return Promise.resolve().then(() => void (time += ms));
    },
  } as unknown as Link;
  const queue = new SendQueue();
  const seq = new SessionSequence(() => options.lossy ?? false);
  let closing: Close | null = null;
  let passes = 0, delivered = 0;
  const session: WriterSession = {
    link,
    writable: true,
    policy: { lossy: options.lossy ?? false },
    written: () => void passes++,
    delivered: () => void delivered++,
    writeFailed: (_l, e) => {
      if (!options.failures) throw e;
      options.failures.push(e);
    },
    defect: (e) => {
      throw e;
    },
  };
  const limits = resolveLimits({ maxUnackedBytes: options.maxUnackedBytes });
  const stats = { messagesSent: 0, bytesSent: 0, framesSent: 0, replayed: 0 };
  const writer = new Writer({
    queue,
    seq,
    closing: () => closing,
    stats,
    counters: newCounters(),
    limits,
    session,
    messageFlags: () => options.unchecked ? FLAG_UNCHECKED : 0,
    batchLimit: options.batchLimit,
    now: () => time,
  });
  /** Every frame written, checksums checked. */
  const frames = () => {
    const out: { tag: number; payload: Uint8Array }[] = [];
    const d = new FrameDecoder({ maxFrameBytes: 1 << 20, expectBanner: false });
    d.allowUnchecked = options.unchecked ?? false;
    for (const b of batches) {
      for (const chunk of b) {
        if (chunk !== BANNER) {
          d.push(chunk, (tag, _f, p) => void out.push({ tag, payload: p.slice() }));
        }
      }
    }
    return out;
  };
  const tags = () => frames().map((f) => f.tag);
  return {
    queue,
    seq,
    writer,
    batches,
    tags,
    frames,
    stats,
    /** A new link takes over (as after a resume); it writes like the old one. */
    newLink: () => ((session as { link: Link }).link = { ...link } as Link),
    close: () => closing = new Close("bye", "local"),
    passes: () => passes,
    delivered: () => delivered,
  };
}

async function flushed(rig: ReturnType<typeof writerRig>): Promise<void> {
  const before = rig.passes();
  rig.writer.schedule();
  // A pass may wait a turn of the event loop between batches (Writer: gathering), so each
  // step lets immediates run, not only microtasks.
  for (let i = 0; i < 10_000 && rig.passes() === before; i++) {
    await new Promise((r) => setImmediate(r));
  }
  assert.ok(rig.passes() > before, "the writer finished a pass");
}

Deno.test("Writer: control frames first, then replay, then the queue; Close only after it", async () => {
  const rig = writerRig();
  rig.queue.push(message(0, 8));
  rig.queue.pushControl(encodeFrame(Tag.Heartbeat, new Uint8Array(26)));
  rig.close();
  await flushed(rig);
  assert.deepEqual(rig.tags(), [Tag.Heartbeat, Tag.Message, Tag.Close]);
  assert.equal(rig.seq.replay.count, 1, "a lossless writer keeps what it wrote");
  rig.seq.replay.rewind();
  await flushed(rig);
  assert.deepEqual(rig.tags().slice(3), [Tag.Message], "the rewound message is written again");
  assert.equal(rig.stats.replayed, 1);
});

Deno.test("Writer: on a slow link, batches stay small so a heartbeat waits behind little data", async () => {
  let speed = 100; // bytes per ms: 100 kB/s, a saturated link's share
  const rig = writerRig({ lossy: true, bytesPerMs: () => speed });
  const size = messageFrameBytes(new Uint8Array(1024));
  const fill = (bytes: number) => {
    for (let i = 0; i < bytes / size; i++) rig.queue.push(message(0, 1024));
  };
  const sizes = () => rig.batches.map((b) => b.reduce((s, c) => s + c.length, 0));
  fill(1024 * 1024);
  await flushed(rig);
  // A new link starts small and, carrying 1 kB per WRITE_TARGET_MS, stays at the floor.
  assert.equal(rig.writer.batchBytes, MIN_BATCH_BYTES);
  // Each write waited for the link (41 ms a batch): each says the peer takes our bytes.
  assert.equal(rig.delivered(), rig.batches.length);
  for (const bytes of sizes()) assert.ok(bytes < MIN_BATCH_BYTES + size, `${bytes}`);
  // A control frame queued now goes out after at most one such batch, not after 256 KiB.
  fill(64 * 1024);
  rig.batches.length = 0;
  rig.queue.pushControl(encodeFrame(Tag.Heartbeat, new Uint8Array(26)));
  await flushed(rig);
  assert.equal(rig.tags()[0], Tag.Heartbeat);
  // The link speeds up: batches double per measuring window up to full ones.
  speed = Infinity;
  rig.batches.length = 0;
  fill(2 * 1024 * 1024);
  await flushed(rig);
  assert.equal(rig.writer.batchBytes, BATCH_BYTES);
  const grown = sizes();
  for (let i = 1; i < grown.length; i++) {
    assert.ok(grown[i] <= 2 * grown[i - 1] + size, `from ${grown[i - 1]} to ${grown[i]}`);
  }
  // It slows down again: one full batch measures it, and the next is small at once.
  speed = 100;
  rig.batches.length = 0;
  fill(1024 * 1024);
  await flushed(rig);
  assert.equal(rig.writer.batchBytes, MIN_BATCH_BYTES);
  assert.ok(sizes()[1] < MIN_BATCH_BYTES + size, `second batch ${sizes()[1]}`);
});

Deno.test("Writer: a new link starts with small batches again", async () => {
  const rig = writerRig({ lossy: true, bytesPerMs: () => 1e6 });
  const size = messageFrameBytes(new Uint8Array(1024));
  const fill = () => {
    for (let i = 0; i < 4096; i++) rig.queue.push(message(0, 1024));
  };
  fill();
  await flushed(rig);
  assert.equal(rig.writer.batchBytes, BATCH_BYTES);
  rig.newLink();
  rig.batches.length = 0;
  fill();
  await flushed(rig);
  const first = rig.batches[0].reduce((s, c) => s + c.length, 0);
  assert.ok(first < MIN_BATCH_BYTES + size, `the new link's first batch: ${first}`);
});

Deno.test("Writer: on a fast link, batches grow to full ones within a few windows", async () => {
  const rig = writerRig({ lossy: true, bytesPerMs: () => 1e6 }); // 1 GB/s
  for (let i = 0; i < 4096; i++) rig.queue.push(message(0, 1024));
  await flushed(rig);
  assert.equal(rig.writer.batchBytes, BATCH_BYTES);
  assert.equal(rig.delivered(), 0, "writes that did not wait prove nothing of the peer");
  // 64 + 32 + 16 + 8 + 4 + 2 writes to ramp up, then 256 KiB each: 4 MiB in under 140.
  assert.ok(rig.batches.length < 140, `${rig.batches.length} writes for 4 MiB`);
});

Deno.test("Writer (lossless): keeps the Messages frames it wrote, writes them again sealed anew", async () => {
  let batchLimit = 65536;
  const rig = writerRig({ batchLimit: () => batchLimit });
  const sent = [0, 1, 2].map(() => message(0, 10));
  for (const m of sent) rig.queue.push(m);
  await flushed(rig);
  assert.deepEqual(rig.tags(), [Tag.Messages]);
  assert.equal(rig.seq.replay.count, 3);
  for (const m of sent) m.payload.fill(0xee); // kept as written: later changes do not show
  rig.seq.received(9); // the next frames carry ack 9
  rig.newLink();
  rig.seq.resumeFrom(1);
  assert.equal(rig.seq.replay.count, 2);
  rig.batches.length = 0;
  await flushed(rig);
  const [again] = rig.frames(); // its checksum was checked
  assert.equal(again.tag, Tag.Messages);
  const h = decodeMessagesHeader(again.payload);
  assert.deepEqual([h.seq, h.count, h.ack], [1, 3, 9], "the whole frame, with the new ack");
  assert.equal(rig.stats.replayed, 3);
  assert.equal(again.payload.filter((b) => b === 0xee).length, 0, "the bodies as written");
  // A peer that takes no Messages frames on the new link gets the records as Message frames.
  batchLimit = 0;
  rig.newLink();
  rig.seq.replay.rewind();
  rig.batches.length = 0;
  await flushed(rig);
  const singles = rig.frames();
  assert.deepEqual(singles.map((f) => f.tag), [Tag.Message, Tag.Message, Tag.Message]);
  assert.deepEqual(singles.map((f) => decodeMessageHeader(f.payload).seq), [1, 2, 3]);
  assert.equal(singles[2].payload.length, 24 + 10);
  assert.equal(singles[2].payload.subarray(24).filter((b) => b === 0xee).length, 0);
});

Deno.test("Writer (lossless): a batch whose encoding throws is kept for replay, not lost", async () => {
  const failures: Error[] = [];
  const rig = writerRig({ batchLimit: () => 65536, failures });
  const sent = [0, 1, 2].map(() => message(0, 10));
  for (const m of sent) rig.queue.push(m);
  const take = writeBuffers.take;
  writeBuffers.take = () => {
    throw new RangeError("out of memory"); // an allocation that fails under memory pressure
  };
  try {
    await flushed(rig);
  } finally {
    writeBuffers.take = take;
  }
  assert.equal(failures.length, 1, "the pass failed");
  assert.equal(failures[0].name, "UnwritableMessageError", "an error that ends the session");
  assert.match(failures[0].message, /could not be encoded: out of memory/);
  assert.equal(rig.seq.outSeq, 3);
  assert.deepEqual(rig.seq.replay.takeAll().map((m) => m.seq), [1, 2, 3], "nothing lost");
  assert.equal(rig.queue.messages, 0, "the queue let go of them");
  assert.equal(rig.queue.bytes, 0, "and of their bytes");
});

Deno.test("Writer: a body detached in the queue stops the pass there; what came before goes, it stays", async () => {
  for (const lossy of [false, true]) {
    const failures: Error[] = [];
    const rig = writerRig({ lossy, batchLimit: () => 65536, failures });
    const sent = [0, 1, 2, 3].map((i) => ({ ...message(0, 10), type: i }));
    for (const m of sent) rig.queue.push(m);
    (sent[2].payload.buffer as ArrayBuffer).transfer(); // the application broke its promise
    await flushed(rig);
    assert.equal(failures.length, 1, "the pass failed");
    assert.equal(failures[0].name, "UnwritableMessageError");
    assert.match(failures[0].message, /\(type 2\): its body was detached after send\(\)/);
    assert.equal(rig.seq.outSeq, 2, "only the two before it took sequence numbers");
    assert.deepEqual(rig.tags(), [Tag.Messages], "they were written");
    assert.equal(rig.queue.messages, 2, "it and the one after it stay queued");
    assert.equal(rig.queue.bytes, 2 * messageFrameBytes(new Uint8Array(10)), "counted as queued");
    assert.deepEqual(rig.queue.drain().map((m) => m.type), [2, 3], "to be handed back");
  }
});

Deno.test("Writer (lossless): a kept body detached before its replay fails the replay, and nothing after it goes", async () => {
  const failures: Error[] = [];
  const rig = writerRig({ batchLimit: () => 0, failures }); // every message a frame of its own
  const sent = [0, 1].map((i) => ({ ...message(0, 10), type: i }));
  for (const m of sent) rig.queue.push(m);
  await flushed(rig);
  assert.equal(rig.seq.replay.count, 2, "kept by reference, unacknowledged");
  (sent[0].payload.buffer as ArrayBuffer).transfer();
  rig.seq.replay.rewind(); // a new link: both are written again
  const before = rig.frames().length;
  await flushed(rig);
  assert.equal(failures.length, 1);
  assert.match(failures[0].message, /seq 1 \(type 0\).*before it was written again/);
  assert.equal(rig.frames().length, before, "nothing written again, the message after it neither");
  assert.deepEqual(rig.seq.replay.takeAll().map((m) => m.seq), [1, 2], "both handed back");
});

Deno.test("Writer: a body that changed length after send() (a resizable buffer) ends the pass, no empty writes", async () => {
  const failures: Error[] = [];
  const rig = writerRig({ lossy: true, batchLimit: () => 65536, failures });
  const rab = new ArrayBuffer(100, { maxByteLength: 200 });
  const m = {
    ...message(0, 0),
    payload: new Uint8Array(rab),
    bytes: messageFrameBytes(new Uint8Array(100)),
  };
  rig.queue.push(m);
  rab.resize(40); // the length-tracking view shrinks with it
  await flushed(rig);
  assert.equal(failures.length, 1, "the pass failed once and ended");
  assert.match(
    failures[0].message,
    /changed length by -60 bytes after send\(\), before it was written/,
  );
  assert.equal(rig.batches.length, 0, "nothing written, not even an empty batch");
  assert.equal(rig.queue.bytes, m.bytes, "still counted as queued, to be handed back");
});

Deno.test("Writer: an empty body whose buffer was detached is written as it was counted, empty", async () => {
  for (const batchLimit of [65536, 0]) { // in a Messages frame, and as a Message frame
    const rig = writerRig({ lossy: true, batchLimit: () => batchLimit });
    const sent = [message(0, 10), message(1, 0), message(2, 10)];
    for (const m of sent) rig.queue.push(m);
    (sent[1].payload.buffer as ArrayBuffer).transfer(); // a relay forwarded, then transferred it
    await flushed(rig);
    assert.equal(rig.stats.messagesSent, 3, `all three written (batch limit ${batchLimit})`);
    assert.equal(rig.queue.bytes, 0);
  }
});

Deno.test("Writer: a failed write after an unwritable message is found leaves nothing stale for the next link", async () => {
  const failures: Error[] = [];
  let reject = true;
  const rig = writerRig({ batchLimit: () => 65536, failures, rejectWrites: () => reject });
  const sent = [message(0, 10), message(0, 10)];
  for (const m of sent) rig.queue.push(m);
  (sent[1].payload.buffer as ArrayBuffer).transfer();
  await flushed(rig); // writes the first; the link rejects it
  assert.deepEqual(failures.map((e) => e.message), ["link failed"]);
  reject = false;
  rig.newLink();
  rig.seq.replay.rewind();
  rig.queue.pushControl(BANNER); // a new link starts with its banner
  await flushed(rig);
  assert.equal(rig.batches.at(-1)?.[0][0], BANNER[0], "the banner went out on the new link");
  assert.equal(failures.length, 2);
  assert.equal(failures[1].name, "UnwritableMessageError", "found again, not left over");
});

Deno.test("Writer (lossless): the Close goes after every replayed message, and never after an unwritable one", async () => {
  const rig = writerRig({ batchLimit: () => 0 }); // every message kept as it was sent
  for (let i = 0; i < 20; i++) rig.queue.push(message(0, 1024));
  await flushed(rig);
  assert.equal(rig.seq.replay.count, 20);
  rig.close();
  rig.seq.replay.rewind(); // a new link: 20 messages to write again, in batches of a few
  const before = rig.tags().length;
  await flushed(rig);
  const after = rig.tags().slice(before);
  assert.equal(after.length, 21);
  assert.equal(after.indexOf(Tag.Close), 20, "the Close last, after all 20");

  const failures: Error[] = [];
  const detached = writerRig({ batchLimit: () => 0, failures });
  const m = message(0, 10);
  detached.queue.push(m);
  await flushed(detached);
  (m.payload.buffer as ArrayBuffer).transfer();
  detached.close();
  detached.seq.replay.rewind();
  const written = detached.tags().length;
  await flushed(detached);
  assert.equal(failures[0]?.name, "UnwritableMessageError");
  assert.deepEqual(detached.tags().slice(written), [], "no Close after it");
});

Deno.test("ReplayBuffer: a kept body detached before its ack leaves no bytes counted", () => {
  const buffer = new ReplayBuffer();
  const m = { ...message(1, 1000) };
  buffer.push(m);
  assert.equal(buffer.bytes, messageFrameBytes(new Uint8Array(1000)));
  (m.payload.buffer as ArrayBuffer).transfer();
  buffer.ack(1);
  assert.equal(buffer.bytes, 0, "what was counted when kept is what the ack releases");
  assert.equal(buffer.count, 0);
});

Deno.test("Writer (lossless): Messages frames count against maxUnackedBytes", async () => {
  const rig = writerRig({ batchLimit: () => 65536, maxUnackedBytes: 1024 });
  for (let i = 0; i < 100; i++) {
    rig.queue.push(message(0, 100));
  }
  await flushed(rig);
  const held = rig.seq.replay.bytes;
  assert.ok(held >= 1024 && held < 1024 + 108 + 28, `${held} bytes unacknowledged`);
  assert.equal(rig.queue.messages, 100 - rig.seq.replay.count, "the rest waits for acks");
  rig.seq.ack(rig.seq.outSeq);
  await flushed(rig);
  assert.ok(rig.queue.messages < 100 - 9);
});

Deno.test("Writer: a full replay buffer holds messages in the queue", async () => {
  const size = messageFrameBytes(new Uint8Array(100));
  const rig = writerRig({ maxUnackedBytes: size * 2 });
  for (let i = 0; i < 5; i++) rig.queue.push(message(0, 100));
  await flushed(rig);
  assert.equal(rig.seq.replay.count, 2);
  assert.equal(rig.queue.messages, 3, "the rest waits for acks");
  rig.seq.ack(2);
  await flushed(rig);
  assert.equal(rig.queue.messages, 1);
});

Deno.test("Writer: on a link whose ends agreed, Message frames go without checksums", async () => {
  const flagsOf = (rig: ReturnType<typeof writerRig>, unchecked: boolean) => {
    const d = new FrameDecoder({ maxFrameBytes: 1 << 20, expectBanner: false });
    d.allowUnchecked = unchecked;
    const out: [number, number][] = [];
    for (const b of rig.batches) {
      for (const chunk of b) d.push(chunk, (tag, flags) => void out.push([tag, flags]));
    }
    return out;
  };
  const rig = writerRig({ unchecked: true });
  rig.queue.push(message(0, 8));
  rig.queue.pushControl(encodeFrame(Tag.Heartbeat, new Uint8Array(26)));
  await flushed(rig);
  assert.deepEqual(flagsOf(rig, true), [[Tag.Heartbeat, 0], [Tag.Message, FLAG_UNCHECKED]]);
  assert.throws(() => flagsOf(rig, false), FrameError, "refused where not agreed");
  const checked = writerRig();
  checked.queue.push(message(0, 8));
  await flushed(checked);
  assert.deepEqual(flagsOf(checked, false), [[Tag.Message, 0]]);
});

Deno.test("LinkSlot: a released reader's link stays open and reports nothing here", () => {
  const heard: string[] = [];
  const slot = new LinkSlot({
    chunk: () => void heard.push("chunk"),
    frame: () => void heard.push("frame"),
    chunkDone: () => undefined,
    heard: () => void heard.push("heard"),
    ended: () => void heard.push("ended"),
    failed: () => void heard.push("failed"),
    defect: () => void heard.push("defect"),
  }, 1024);
  let closed = false;
  const link = {
    read: () => new Promise<null>(() => {}),
    close: () => void (closed = true),
  } as unknown as Link;
  slot.attach(link, 1024);
  assert.equal(slot.epoch, 1);
  const reader = slot.release();
  assert.equal(slot.link, null);
  slot.readEnded(reader);
  slot.readFailed(reader, new Error("x"));
  slot.readHandled(reader);
  assert.deepEqual(heard, []);
  assert.equal(closed, false, "release hands the link on, open");
  slot.adopt(reader);
  assert.equal(slot.epoch, 2);
  slot.readEnded(reader);
  assert.deepEqual(heard, ["ended"]);
  slot.detach();
  assert.equal(closed, true);
});

/** A writer with one heartbeat queued, over a link whose writes `write` settles. */
function heartbeatWriter(
  write: () => Promise<void>,
  handlers: Pick<WriterSession, "written" | "writeFailed" | "defect"> & Partial<WriterSession>,
  now?: () => number,
): Writer {
  const queue = new SendQueue();
  queue.pushControl(encodeFrame(Tag.Heartbeat, new Uint8Array(26)));
  return new Writer({
    queue,
    seq: new SessionSequence(() => false),
    closing: () => null,
    stats: { messagesSent: 0, bytesSent: 0, framesSent: 0, replayed: 0 },
    counters: newCounters(),
    limits: resolveLimits({}),
    messageFlags: () => 0,
    session: {
      link: { write } as unknown as Link,
      writable: true,
      policy: { lossy: false },
      delivered: () => {},
      ...handlers,
    },
    now,
  });
}

Deno.test("Writer: a clock that throws once a write is under way is a defect; the write is not timed and the pass ends once", async () => {
  const calls: string[] = [];
  const passEnded = Promise.withResolvers<void>();
  let time = 0;
  const writer = heartbeatWriter(
    () => new Promise<void>((resolve) => setTimeout(resolve, 0)), // the write takes a while
    {
      written: () => {
        calls.push("written");
        passEnded.resolve();
      },
      writeFailed: (_l, e) => void calls.push(`writeFailed:${e.message}`),
      defect: (e) => void calls.push(`defect:${(e as Error).message}`),
      delivered: () => void calls.push("delivered"),
    },
    () => {
      if (time++ === 0) throw new Error("clock");
      return 1000; // read when the write completes: 1000 ms after 0, were it timed
    },
  );
  writer.schedule();
  await deadline(passEnded.promise, "the pass to end", 2000);
  assert.deepEqual(calls, ["defect:clock", "written"]);
  assert.equal(writer.batchBytes, MIN_BATCH_BYTES, "an untimed write sizes nothing");
});

Deno.test("Writer: a defect while settling a write pass is reported, never an unhandled rejection", async () => {
  const defects: unknown[] = [];
  const writer = heartbeatWriter(() => Promise.resolve(), {
    written: () => {
      throw new Error("a defect in written()");
    },
    writeFailed: () => {},
    defect: (e) => void defects.push(e),
  });
  writer.schedule();
  for (let i = 0; i < 100 && defects.length === 0; i++) await Promise.resolve();
  assert.equal(defects.length, 1, "the defect reached the session");
  assert.match(String(defects[0]), /a defect in written/);
});

/** A receiver that records what it delivers, on a lossy or lossless sequence. */
function recordingReceiver(lossy: boolean) {
  const got: { seq: number; type: number; body: Uint8Array }[] = [];
  const acks: number[] = [];
  const stats = newSessionStats();
  const seq = new SessionSequence(() => lossy);
  const receiver = new Receiver({
    handle: "h",
    seq,
    stats,
    counters: newCounters(),
    ack: (n) => void acks.push(n),
    lossy: () => lossy,
    inbound: {
      deliver: (_h, type, _p, body, n) => void got.push({ seq: n, type, body }),
      backpressure: () => undefined,
    },
  });
  /** The payload of a Messages frame carrying `seqs` (bodies filled with their seq). */
  const frame = (seqs: number[], ack = 0) => {
    const ms = seqs.map((n) => ({
      type: n,
      priority: 1,
      payload: new Uint8Array(3).fill(n),
      seq: n,
    }));
    return encodeOutgoing(ms, ack, 0, 65536).chunks[0].subarray(12);
  };
  return { got, acks, stats, seq, receiver, frame };
}

Deno.test("Receiver: a lossless session drops the replayed head of a Messages frame and takes the rest", () => {
  const r = recordingReceiver(false);
  r.receiver.messages(r.frame([1, 2, 3]));
  r.receiver.messages(r.frame([2, 3, 4, 5], 0)); // a replay that overlaps what arrived
  r.receiver.messages(r.frame([4, 5])); // all of it known already
  assert.deepEqual(r.got.map((m) => m.seq), [1, 2, 3, 4, 5]);
  assert.equal(r.stats.duplicatesDropped, 4);
  assert.equal(r.stats.messagesReceived, 5);
  assert.equal(r.seq.inSeq, 5);
  assert.throws(() => r.receiver.messages(r.frame([7])), /expected seq 6, got 7/);
  assert.equal(r.seq.inSeq, 5, "a gap commits nothing");
});

Deno.test("Receiver: a lossy session refuses a repeated Messages frame; acks are taken once per frame", () => {
  const r = recordingReceiver(true);
  r.receiver.messages(r.frame([1, 2]));
  assert.throws(
    () => r.receiver.messages(r.frame([2, 3])),
    (e) => e instanceof FrameError && e.reason === "unexpected",
  );
  const l = recordingReceiver(false);
  l.receiver.messages(l.frame([1, 2, 3], 9));
  assert.deepEqual(l.acks, [9]);
});

Deno.test("Receiver: bodies of a Messages frame in a reused read buffer are copies; an owned frame's are views", () => {
  const r = recordingReceiver(false);
  const read = r.frame([1, 2]).slice();
  r.receiver.messages(read);
  read.fill(0xee); // the next read reuses the buffer
  assert.deepEqual(r.got.map((m) => [...m.body]), [[1, 1, 1], [2, 2, 2]]);
  const owned = r.frame([3]).slice();
  r.receiver.messages(owned, true);
  assert.equal(r.got[2].body.buffer, owned.buffer, "no copy of a frame the decoder gave away");
});

Deno.test("Receiver: small bodies of a session share an aligned arena, never another session's; a quiet read lets it go", () => {
  const r = recordingReceiver(false);
  const read = (frame: Uint8Array) => {
    r.receiver.chunk(frame.length + 12);
    r.receiver.messages(frame.slice());
    r.receiver.chunkDone();
  };
  for (let n = 1; n <= 10; n++) read(r.frame([n])); // one read each
  const bodies = r.got.map((m) => m.body);
  assert.equal(new Set(bodies.map((b) => b.buffer)).size, 1, "no ArrayBuffer per body");
  assert.equal(bodies[0].buffer.byteLength, 256, "an occasional message gets a small buffer");
  for (let n = 11; n <= 300; n++) read(r.frame([n]));
  const busy = r.got.slice(10).map((m) => m.body.buffer.byteLength);
  assert.ok(Math.max(...busy) >= 2048, `a busy session's buffers grow: ${[...new Set(busy)]}`);
  assert.ok(new Set(r.got.map((m) => m.body.buffer)).size <= 5, "300 bodies, a few buffers");
  r.got.length = 10;
  for (const b of bodies) assert.equal(b.byteOffset % 8, 0, `offset ${b.byteOffset}`);
  assert.deepEqual(bodies.map((b) => [...b]), bodies.map((_, i) => [i + 1, i + 1, i + 1]));
  // Another connection's receiver: bodies of its own, so no connection's bytes are reachable
  // through another's body.
  const other = recordingReceiver(false);
  other.receiver.messages(other.frame([1]).slice());
  assert.notEqual(other.got[0].body.buffer, bodies[0].buffer);
  // A read that brings no message (heartbeats) lets the buffer go: an idle session holds none,
  // and the next message starts small again.
  r.receiver.chunk(38);
  r.receiver.chunkDone();
  read(r.frame([301]));
  assert.notEqual(r.got[10].body.buffer, bodies[9].buffer);
  assert.equal(r.got[10].body.buffer.byteLength, 256);
  r.got.length = 10;
  // Transferring a body's buffer empties the bodies of its session that share it (documented);
  // the next bodies come from a new buffer, whole.
  (bodies[9].buffer as ArrayBuffer).transfer();
  assert.equal(bodies[0].length, 0, "a neighbour reads as empty");
  read(r.frame([302]));
  assert.deepEqual([...r.got[10].body], [302 & 0xff, 302 & 0xff, 302 & 0xff]);
});

Deno.test("Receiver: an empty body batched in a Messages frame has a buffer of its own", () => {
  const r = recordingReceiver(false);
  const ms = [1, 2, 3].map((seq) => ({
    type: seq,
    priority: 1,
    payload: new Uint8Array(seq === 2 ? 0 : 64).fill(seq),
    seq,
  }));
  r.receiver.messages(encodeOutgoing(ms, 0, 0, 65536).chunks[0].subarray(12).slice());
  const [a, empty, c] = r.got.map((m) => m.body);
  assert.equal(empty.length, 0);
  assert.notEqual(empty.buffer, a.buffer);
  (empty.buffer as ArrayBuffer).transfer(); // an application may transfer it
  assert.equal(a.length, 64, "its neighbours are untouched");
  assert.equal(c[63], 3);
});

/**
 * A link whose reads follow `steps`, logging each read and any two at once; with `callbacks`
 * it also has `readThen` (the same reads, handed to callbacks), which the reader then uses.
 */
function scriptedLink(
  steps: (Uint8Array | null | Error | "throw" | "never")[],
  log: string[],
  callbacks = false,
) {
  let inFlight = 0;
  const link = {
    localAddr: "mem://a",
    remoteAddr: "mem://b",
    read(): Promise<Uint8Array | null> {
      const step = steps.length > 0 ? steps.shift()! : "never"; // (null: the end of the stream)
      log.push("read");
      if (step === "throw") throw new Error("read threw");
      if (step === "never") return new Promise(() => {});
      if (++inFlight > 1) log.push("TWO READS AT ONCE");
      const result = step instanceof Error ? Promise.reject(step) : Promise.resolve(step);
      return result.finally(() => inFlight--);
    },
    write: () => Promise.resolve(),
    close() {},
    readThen: undefined as Link["readThen"],
  };
  if (callbacks) {
    link.readThen = (onChunk, onError) => {
      log.push("(callbacks)");
      link.read().then(onChunk, onError); // a step that throws, throws here
    };
  }
  return link as unknown as Link;
}

Deno.test("LinkReader: every way a read loop ends reports once, and run() settles", async () => {
  const message = () => encodeFrame(Tag.Message, new Uint8Array(24));
  const heartbeat = () => encodeFrame(Tag.Heartbeat, new Uint8Array(26));
  type Steps = Parameters<typeof scriptedLink>[0];
  const cases: [string, Steps, Partial<ReaderOwner>, string[]][] = [
    ["a read that throws", ["throw"], {}, ["read", "failed:read threw"]],
    ["a read that rejects", [new Error("reset")], {}, ["read", "failed:reset"]],
    ["the end of the stream", [null], {}, ["read", "ended"]],
    ["a chunk that fails to decode", [new Uint8Array(12).fill(99, 0, 1)], {}, [
      "read",
      "chunk",
      "failed:Unknown frame tag: 99",
    ]],
    ["readHandled throwing", [heartbeat()], {
      readHandled: () => {
        throw new Error("handled threw");
      },
    }, ["read", "chunk", `frame${Tag.Heartbeat}`, "failed:handled threw"]],
    ["readHandled throwing after the turns", [message()], {
      readHandled: () => {
        throw new Error("handled threw");
      },
    }, ["read", "chunk", `frame${Tag.Message}`, "failed:handled threw"]],
    ["back-pressure that rejects", [message()], {
      readChunk: (r, c) => {
        r.decode(c);
        return Promise.reject(new Error("gone"));
      },
    }, ["read", `frame${Tag.Message}`, "handled", "failed:gone"]],
    ["readEnded throwing", [null], {
      readEnded: () => {
        throw new Error("ended threw");
      },
    }, ["read", "failed:ended threw"]],
    ["chunks, then the end", [message(), heartbeat(), message(), null], {}, [
      "read",
      "chunk",
      `frame${Tag.Message}`,
      "handled",
      "read",
      "chunk",
      `frame${Tag.Heartbeat}`,
      "handled",
      "read",
      "chunk",
      `frame${Tag.Message}`,
      "handled",
      "read",
      "ended",
    ]],
  ];
  for (
    const [[what, steps, overrides, expected], callbacks] of cases.flatMap((c) => [
      [c, false] as const,
      [c, true] as const,
    ])
  ) {
    const log: string[] = [];
    const owner: ReaderOwner = {
      readChunk: (r, c) => {
        log.push("chunk");
        r.decode(c);
        return undefined;
      },
      readHandled: () => void log.push("handled"),
      readFrame: (_r, tag) => void log.push(`frame${tag}`),
      readEnded: () => void log.push("ended"),
      readFailed: (_r, e) => void log.push(`failed:${e.message}`),
      defect: (e) => void log.push(`defect:${(e as Error).message}`),
      ...overrides,
    };
    const reader = new LinkReader(scriptedLink([...steps], log, callbacks), owner, 1 << 20);
    reader.decoder.push(BANNER, () => {});
    reader.start();
    const how = callbacks ? `${what} (readThen)` : what;
    await deadline(reader.run(), `${how}: the loop's end`, 2000); // run() after start(): one loop
    const reads = log.filter((l) => l === "read").length;
    assert.equal(log.filter((l) => l === "(callbacks)").length, callbacks ? reads : 0, how);
    assert.deepEqual(log.filter((l) => l !== "(callbacks)"), expected, how);
  }
});

Deno.test("LinkReader: a reader stopped by a frame of its chunk reports nothing more", async () => {
  for (
    const frame of [
      encodeFrame(Tag.Heartbeat, new Uint8Array(26)),
      encodeFrame(Tag.Message, new Uint8Array(24)),
    ]
  ) {
    const log: string[] = [];
    const owner: ReaderOwner = {
      readChunk: (r, c) => void r.decode(c),
      readHandled: () => void log.push("handled"),
      readFrame: () => {
        log.push("frame");
        reader.stopped = true; // e.g. the frame ended the session, which let go of the link
      },
      readEnded: () => void log.push("ended"),
      readFailed: () => void log.push("failed"),
      defect: () => void log.push("defect"),
    };
    const reader = new LinkReader(scriptedLink([frame], log), owner, 1 << 20);
    reader.decoder.push(BANNER, () => {});
    await deadline(reader.run(), "the loop's end", 2000);
    assert.deepEqual(log, ["read", "frame"]);
  }
});

Deno.test("InboundQueue: a body whose buffer was transferred before it was taken gives back what it counted", async () => {
  const inbound = new InboundQueue({ maxInboundMessages: 100, maxInboundBytes: 1000 });
  const conn = {} as Connection;
  const shared = new Uint8Array(1200);
  inbound.deliver(conn, 1, "normal", shared.subarray(0, 600), 1);
  inbound.deliver(conn, 2, "normal", shared.subarray(600, 1200), 2);
  const paused = inbound.backpressure(conn);
  assert.ok(paused, "over 1000 bytes: reads pause");
  const first = inbound.queue.shift()!;
  (first.payload.buffer as ArrayBuffer).transfer(); // the second body now reads as empty
  const second = inbound.queue.shift()!;
  assert.equal(second.payload.length, 0);
  // Taking both gave back the 1200 bytes counted, not 600 + 0: reading resumes, and nothing
  // stays counted against the connection.
  await deadline(paused, "reads resuming once both messages are taken", 2000);
  assert.equal(inbound.backpressure(conn), undefined);
  for (let seq = 3; seq < 12; seq++) inbound.deliver(conn, 1, "normal", new Uint8Array(100), seq);
  assert.equal(inbound.backpressure(conn), undefined, "900 bytes, counted from zero again");
  inbound.deliver(conn, 1, "normal", new Uint8Array(100), 12);
  assert.ok(inbound.backpressure(conn), "1000 bytes: reads pause again");
});

Deno.test("Arena: pieces are disjoint, aligned and fresh; buffers double up to their limit; a large piece gets its own", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({ bytes: fc.integer({ min: 1, max: 6000 }), release: fc.boolean() }),
        { minLength: 1, maxLength: 60 },
      ),
      (takes) => {
        const arena = new Arena(256, 4096);
        // The model: where the next piece goes, and the size of the next buffer.
        let buffer: ArrayBufferLike | null = null, capacity = 0, used = 0, next = 256;
        const pieces = takes.map(({ bytes, release }, i) => {
          if (release) {
            arena.release();
            buffer = null;
            capacity = used = 0;
            next = 256;
          }
          const piece = arena.take(bytes);
          assert.equal(piece.length, bytes);
          assert.ok(piece.every((x) => x === 0), "a piece is handed out once, zeroed");
          if (capacity - used >= bytes) {
            assert.equal(piece.buffer, buffer, "a piece that fits goes in the same buffer");
            assert.equal(piece.byteOffset, used);
          } else {
            assert.notEqual(piece.buffer, buffer, "a piece that does not fit gets a new one");
            assert.equal(piece.buffer.byteLength, Math.max(next, bytes));
            assert.equal(piece.byteOffset, 0);
            buffer = piece.buffer;
            capacity = piece.buffer.byteLength;
            used = 0;
            next = Math.min(next * 2, 4096);
          }
          used = (used + bytes + 7) & ~7; // 8-byte aligned
          piece.fill((i % 255) + 1);
          return piece;
        });
        // Writing each piece touched no other.
        pieces.forEach((piece, i) => assert.ok(piece.every((x) => x === (i % 255) + 1)));
      },
    ),
    { seed: 24, numRuns: 300 },
  );
});

Deno.test("Deferred: the first outcome wins, a promise asked for before or after it sees it, a rejection is never unhandled", async () => {
  const early = new Deferred<number>();
  const promise = early.promise;
  early.resolve(1);
  early.reject(new Error("ignored"));
  assert.equal(await promise, 1);
  assert.equal(early.promise, promise, "one promise");
  const late = new Deferred<number>();
  late.reject(new Error("failed"));
  late.resolve(2);
  assert.ok(late.settled);
  await assert.rejects(late.promise, /failed/);
  const unobserved = new Deferred<void>();
  unobserved.reject(new Error("nobody asks"));
  void unobserved.promise; // made after the rejection, and never awaited
  await new Promise((r) => setTimeout(r, 0)); // (an unhandled rejection would fail the run)
  assert.equal(unhandledRejections.length, 0);
});

Deno.test("BodyArena: an empty body has a buffer of its own (an application may transfer it)", () => {
  const arena = new BodyArena();
  const empty = new Uint8Array(24);
  const a = arena.copy(empty, 24), b = arena.copy(empty, 24);
  assert.equal(a.length, 0);
  assert.notEqual(a.buffer, b.buffer);
  (a.buffer as ArrayBuffer).transfer(); // detaches a's buffer only
  assert.equal(arena.copy(empty, 24).length, 0, "later empty bodies still work");
});

Deno.test("Writer: a pass ends once even when the session's handlers and its defect report throw", async () => {
  for (const failWrite of [false, true]) {
    const calls: string[] = [];
    const write = () => failWrite ? Promise.reject(new Error("write failed")) : Promise.resolve();
    const writer = heartbeatWriter(write, {
      written: () => {
        calls.push("written");
        throw new Error("written threw");
      },
      writeFailed: () => {
        calls.push("writeFailed");
        throw new Error("writeFailed threw");
      },
      defect: () => {
        calls.push("defect");
        throw new Error("the defect report threw too"); // a throwing logger
      },
    });
    writer.schedule();
    for (let i = 0; i < 100 && !calls.includes("defect"); i++) await Promise.resolve();
    for (let i = 0; i < 20; i++) await Promise.resolve(); // anything more would show here
    // The test guard fails the test on any unhandled rejection or uncaught error.
    assert.deepEqual(calls, failWrite ? ["writeFailed", "defect"] : ["written", "defect"]);
    assert.equal(writer.busy, false);
  }
});

Deno.test("Writer: a producer running in microtasks gets full batches, not a write per few messages", async () => {
  const rig = writerRig({ lossy: true });
  // As `for (...) await conn.send(...)` runs while the queue is under its limit: one message
  // per microtask, and writes that complete at once.
  for (let i = 0; i < 5000; i++) {
    rig.queue.push(message(0, 64));
    rig.writer.schedule();
    await Promise.resolve();
  }
  await flushed(rig);
  assert.equal(rig.queue.messages, 0);
  const writes = rig.batches.length;
  assert.ok(writes <= 250, `${writes} writes for 5000 messages (without gathering: one each)`);
  // A control frame queued while a pass waits for its turn goes at once, not after the turn.
  rig.batches.length = 0;
  for (let i = 0; i < 3; i++) rig.queue.push(message(0, 64));
  rig.writer.schedule();
  await Promise.resolve();
  rig.queue.pushControl(encodeFrame(Tag.Heartbeat, new Uint8Array(26)));
  await flushed(rig);
  assert.ok(rig.tags().includes(Tag.Heartbeat));
});

Deno.test("send queues and replay buffers share the empty ring until their first item, and never change it", () => {
  // An idle connection's queues hold the one shared, always-empty ring instead of rings of
  // their own; a queue that pushed to it would put its messages in every other idle queue.
  const message = (priority: number, type: number): QueuedMessage => ({
    type,
    priority,
    payload: new Uint8Array(1),
    seq: 0,
    bytes: 37 + (type % 3),
  });
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          queue: fc.integer({ min: 0, max: 1 }),
          op: fc.constantFrom("push", "push", "shift", "refuse", "drain", "replay", "ack"),
          priority: fc.integer({ min: 0, max: 2 }),
        }),
        { maxLength: 120 },
      ),
      (ops) => {
        const queues = [new SendQueue(), new SendQueue()];
        const replays = [new ReplayBuffer(), new ReplayBuffer()];
        const levels: QueuedMessage[][][] = [[[], [], []], [[], [], []]];
        const kept: number[][] = [[], []];
        let type = 0;
        for (const { queue, op, priority } of ops) {
          const model = levels[queue];
          if (op === "push") {
            const m = message(priority, type++);
            queues[queue].push(m);
            model[priority].push(m);
          } else if (op === "shift" || op === "refuse") {
            const want = op === "shift" ? model.find((l) => l.length > 0)?.shift() : undefined;
            assert.equal(queues[queue].shift(() => op === "shift"), want);
          } else if (op === "drain") {
            assert.deepEqual(queues[queue].drain(), model.flat());
            levels[queue] = [[], [], []];
          } else if (op === "replay") {
            const seq = (kept[queue].at(-1) ?? 0) + 1;
            replays[queue].push({ ...message(1, seq), seq });
            kept[queue].push(seq);
          } else {
            replays[queue].ack(kept[queue][0] ?? 0);
            kept[queue].shift();
          }
          for (const i of [0, 1]) {
            assert.equal(queues[i].messages, levels[i].flat().length);
            assert.equal(replays[i].count, kept[i].length);
          }
          assert.equal(emptyRing().length, 0, "the shared ring stays empty");
        }
      },
    ),
    { seed: 25, numRuns: 300 },
  );
  assert.throws(() => emptyRing<number>().push(1), TypeError);
});
