// The receive path under the pieces real networks hand a reader: bodies of every size class
// completed by reads shorter than the body (defect 1 of the session-core issue).

import assert from "node:assert/strict";
import { Messenger, type PolicyName } from "../mod.ts";
import { MemoryTransport } from "../testing.ts";
import { splitReads } from "../transports/split_reads.ts";
import { TcpTransport } from "../transports/tcp.ts";
import { ForwardingLink, type Link, mapLinks, type Transport } from "../transports/types.ts";
import { BANNER, PREAMBLE_BYTES, Tag } from "../src/protocol/frame.ts";
import { captureLogger, deadline, take } from "./_helpers.ts";

async function splitPair(policy: PolicyName, seed: number, maxPiece: number) {
  const net = splitReads(new MemoryTransport(), { seed, maxPiece });
  const common = { transports: [net], logger: captureLogger().log };
  const server = new Messenger({ name: "server", ...common });
  const client = new Messenger({ name: "client", ...common });
  const addr = await server.listen("mem://split");
  const conn = await client.connect(addr, { policy });
  return {
    server,
    client,
    conn,
    async [Symbol.asyncDispose]() {
      await client.close();
      await server.close();
    },
  };
}

for (const policy of ["lossyClient", "losslessClient"] as const) {
  Deno.test(`[${policy}] 1 KiB bodies completed by 700-byte reads arrive whole, no reset`, async () => {
    await using p = await splitPair(policy, 11, 700);
    const failures: string[] = [];
    const watcher = (async () => {
      for await (const e of p.server.events()) {
        if (e.kind === "reset" || e.kind === "error" || e.kind === "disconnect") {
          failures.push(`${e.kind}: ${"error" in e ? e.error.message : ""}`);
        }
      }
    })();
    const n = 500;
    for (let i = 0; i < n; i++) await p.conn.send(i, new Uint8Array(1024).fill(i & 0xff));
    const got = await take(p.server, n);
    assert.deepEqual(failures, []);
    for (let i = 0; i < n; i++) {
      assert.equal(got[i].type, i);
      assert.equal(got[i].payload.length, 1024);
      assert.ok(got[i].payload.every((b) => b === (i & 0xff)), `body of message ${i}`);
    }
    await p.client.close();
    await p.server.close();
    await watcher;
  });
}

Deno.test("every body size class survives reads split at random boundaries", async () => {
  const sizes = [0, 1, 255, 256, 257, 700, 1024, 4095, 4096, 4097, 9000, 70_000];
  for (const seed of [1, 2, 3]) {
    await using p = await splitPair("losslessClient", seed, 1 + seed * 97);
    for (let i = 0; i < sizes.length * 4; i++) {
      const size = sizes[i % sizes.length];
      await p.conn.send(i, new Uint8Array(size).fill((i * 13) & 0xff));
    }
    const got = await take(p.server, sizes.length * 4);
    got.forEach((m, i) => {
      const size = sizes[i % sizes.length];
      assert.equal(m.type, i, `seed ${seed}: order`);
      assert.equal(m.payload.length, size, `seed ${seed}: length of message ${i}`);
      assert.ok(m.payload.every((b) => b === ((i * 13) & 0xff)), `seed ${seed}: body ${i}`);
    });
    assert.equal(p.conn.state, "open");
  }
});

Deno.test("messages({ batch: true }) yields what arrived together, in order, at most maxBatch", async () => {
  await using p = await splitPair("lossyClient", 3, 4096);
  for (let i = 0; i < 300; i++) await p.conn.send(i, new Uint8Array([i & 0xff]));
  const types: number[] = [];
  let batches = 0;
  for await (const batch of p.server.messages({ batch: true, maxBatch: 64 })) {
    assert.ok(batch.length >= 1 && batch.length <= 64, `batch of ${batch.length}`);
    batches++;
    for (const m of batch) types.push(m.type);
    if (types.length === 300) break;
  }
  assert.deepEqual(types, Array.from({ length: 300 }, (_, i) => i));
  assert.ok(batches < 300, `one await per read, not per message: ${batches} batches`);
  assert.throws(() => p.server.messages({ batch: true, maxBatch: 0 }), RangeError);
});

Deno.test("a body assembled across reads is handed on without a copy and stays intact", async () => {
  // 64 KiB bodies over reads of at most 1,000 bytes: each frame is assembled in a buffer of
  // its own, which later reads never touch.
  await using p = await splitPair("losslessClient", 5, 1000);
  const bodies = [1, 2, 3].map((k) => new Uint8Array(65536).fill(k));
  for (const b of bodies) await p.conn.send(9, b);
  const got = await take(p.server, 3);
  for (const [i, m] of got.entries()) {
    assert.equal(m.payload.length, 65536);
    assert.ok(m.payload.every((x) => x === i + 1), `body ${i} intact`);
    // A view just past the preamble and header in the frame's own buffer: not copied again.
    assert.equal(m.payload.byteOffset, 12 + 24);
    assert.equal(m.payload.buffer.byteLength, 12 + 24 + 65536);
  }
});

/** Whether `chunk` (whole frames, perhaps after the banner) holds a Message or Messages frame. */
function carriesMessage(chunk: Uint8Array): boolean {
  let pos = chunk[0] === BANNER[0] && chunk[1] === BANNER[1] ? BANNER.length : 0;
  while (pos + PREAMBLE_BYTES <= chunk.length) {
    if (chunk[pos] === Tag.Message || chunk[pos] === Tag.Messages) return true;
    pos += PREAMBLE_BYTES + new DataView(chunk.buffer, chunk.byteOffset).getUint32(pos + 4);
  }
  return false;
}

/** A link that logs when a read is posted, a read brings messages, and a message is written. */
class RecordingLink extends ForwardingLink {
  constructor(inner: Link, readonly log: string[]) {
    super(inner);
  }
  override async read(): Promise<Uint8Array | null> {
    this.log.push("read posted");
    const chunk = await this.inner.read();
    if (chunk !== null && carriesMessage(chunk)) this.log.push("message read");
    return chunk;
  }
  override write(chunks: Uint8Array[]): Promise<void> {
    if (carriesMessage(chunks[0])) this.log.push("message written");
    return this.inner.write(chunks);
  }
}

Deno.test("[tcp] an echoing node writes its reply before it posts its next read", async () => {
  const log: string[] = [];
  const tcp = new TcpTransport();
  const recording: Transport = {
    schemes: tcp.schemes,
    listen: async (addr) => mapLinks(await tcp.listen(addr), (l) => new RecordingLink(l, log)),
    connect: (addr, options) => tcp.connect(addr, options),
  };
  const logger = captureLogger().log;
  const server = new Messenger({ name: "echo", transports: [recording], logger });
  const client = new Messenger({ name: "ping", logger });
  try {
    const conn = await client.connect(await server.listen("tcp://127.0.0.1:0"));
    const echoFailures: unknown[] = [];
    const echo = (async () => {
      for await (const m of server.messages()) await m.connection.send(2, m.payload);
    })().catch((e) => void echoFailures.push(e)); // (never a rejection left unhandled)
    for (let i = 0; i < 50; i++) {
      await conn.send(1, new Uint8Array([i]));
      const [reply] = await take(client, 1);
      assert.equal(reply.payload[0], i);
    }
    // After a read that brought a ping, the reply went out before the next read was posted
    // (the read's syscall would otherwise delay every reply). Without that order no reply
    // would; a few may wait behind a write still in flight when the ping arrived (a loaded
    // machine), so nine in ten must.
    const reads = log.flatMap((e, i) => (e === "message read" ? [i] : []));
    assert.ok(reads.length >= 50, `${reads.length} reads brought pings`);
    const repliedFirst = reads.filter((i) =>
      log.slice(i + 1).find((e) => e !== "message read") === "message written"
    );
    assert.ok(repliedFirst.length >= 45, `${repliedFirst.length} of 50: ${log.slice(0, 40)}`);
    await server.close();
    await deadline(echo, "the echo loop to end once the server closed", 5000);
    assert.deepEqual(echoFailures, []);
  } finally {
    await client.close();
    await server.close();
  }
});
