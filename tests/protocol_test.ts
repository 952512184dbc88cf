import assert from "node:assert/strict";
import fc from "npm:fast-check@4";
import { crc32c, slicingCrc } from "../src/protocol/crc32c.ts";
import { crc32, nativeCrc32 } from "../src/protocol/crc32.ts";
import {
  BANNER,
  encodeFrame,
  FLAG_CRC32,
  FLAG_UNCHECKED,
  FrameDecoder,
  MESSAGES_FRAME_BYTES,
  PREALLOC_MAX_BYTES,
  PREAMBLE_BYTES,
  PROTOCOL_VERSION,
  Tag,
} from "../src/protocol/frame.ts";
import { decodeAck, encodeAck } from "../src/protocol/control.ts";
import {
  decodeMessageHeader,
  decodeMessagesHeader,
  decodeWrittenRun,
  encodeMessageChunks,
  encodeMessages,
  encodeOutgoing,
  GATHER_MIN_BYTES,
  MESSAGE_HEADER_BYTES,
  messageFrameBytes,
  MESSAGES_HEADER_BYTES,
  type OutgoingMessage,
  RECORD_HEADER_BYTES,
  recordLength,
  recordType,
  resealRun,
} from "../src/protocol/message.ts";
import {
  decodeHeartbeat,
  encodeBareHeartbeatFrame,
  encodeHeartbeat,
  encodeHeartbeatCounted,
  heartbeatPartCount,
  OpDictionary,
} from "../src/protocol/heartbeat.ts";
import {
  decodeHello,
  decodeRefusal,
  encodeJson,
  encodeRefusal,
} from "../src/protocol/handshake.ts";
import { FrameError, HandshakeRefusedError } from "../src/errors.ts";
import { rawHello } from "./_helpers.ts";
import { createHash, createHmac, hkdfSync } from "node:crypto";
import { hkdfSha256, hmacSha256, sha256, timingSafeEqual, toHex } from "../src/protocol/_sha256.ts";

function decodeAll(bytes: Uint8Array, max = 1 << 20, banner = false) {
  const frames: { tag: number; payload: Uint8Array }[] = [];
  const d = new FrameDecoder({ maxFrameBytes: max, expectBanner: banner });
  d.push(bytes, (tag, _f, payload) => frames.push({ tag, payload: payload.slice() }));
  return { frames, decoder: d };
}

Deno.test("crc32c matches the standard check values", () => {
  assert.equal(crc32c(0, new TextEncoder().encode("123456789")), 0xe3069283);
  assert.equal(crc32c(0, new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(0, new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  const data = crypto.getRandomValues(new Uint8Array(1000));
  assert.equal(crc32c(crc32c(0, data, 0, 333), data, 333), crc32c(0, data));
});

Deno.test("FrameDecoder reassembles frames split at every byte boundary", () => {
  const a = encodeFrame(Tag.Close, new TextEncoder().encode("first"));
  const b = encodeFrame(Tag.Ack, encodeAck(42));
  const all = new Uint8Array([...BANNER, ...a, ...b]);
  for (let cut = 1; cut < all.length; cut++) {
    const seen: number[] = [];
    const d = new FrameDecoder({ maxFrameBytes: 1024 });
    d.push(all.subarray(0, cut), (tag) => seen.push(tag));
    d.push(all.subarray(cut), (tag) => seen.push(tag));
    assert.deepEqual(seen, [Tag.Close, Tag.Ack], `cut at ${cut}`);
    d.end();
  }
});

Deno.test("FrameDecoder joins a large frame sent one byte at a time", () => {
  const payload = crypto.getRandomValues(new Uint8Array(5000));
  const frame = encodeFrame(Tag.Close, payload);
  const d = new FrameDecoder({ maxFrameBytes: 8192, expectBanner: false });
  let got: Uint8Array | undefined;
  for (let i = 0; i < frame.length; i++) {
    d.push(frame.subarray(i, i + 1), (_t, _f, p) => got = p.slice());
  }
  assert.deepEqual(got, payload);
  assert.equal(d.buffered, 0);
});

Deno.test("FrameDecoder rejects a wrong banner", () => {
  const d = new FrameDecoder({ maxFrameBytes: 1024 });
  assert.throws(
    () => d.push(new TextEncoder().encode("GET / HTTP/1.1\r\n"), () => {}),
    (e) => e instanceof FrameError && e.reason === "banner",
  );
});

Deno.test("FrameDecoder refuses another protocol version", () => {
  const d = new FrameDecoder({ maxFrameBytes: 1024 });
  const banner = BANNER.slice();
  banner[7] = PROTOCOL_VERSION + 1;
  assert.throws(
    () => d.push(banner, () => {}),
    (e) => e instanceof HandshakeRefusedError && e.field === "version",
  );
});

Deno.test("FrameDecoder rejects an oversized length before buffering it", () => {
  const frame = encodeFrame(Tag.Close, new Uint8Array(10));
  new DataView(frame.buffer, frame.byteOffset).setUint32(4, 0xffff_fff0);
  const d = new FrameDecoder({ maxFrameBytes: 1024, expectBanner: false });
  assert.throws(
    () => d.push(frame.subarray(0, PREAMBLE_BYTES), () => {}),
    (e) => e instanceof FrameError && e.reason === "oversize",
  );
});

Deno.test("FrameDecoder rejects a corrupt checksum, an unknown tag and reserved bits", () => {
  const frame = encodeFrame(Tag.Close, new TextEncoder().encode("hello"));
  const corrupt = frame.slice();
  corrupt[PREAMBLE_BYTES + 1] ^= 1;
  assert.throws(
    () => decodeAll(corrupt),
    (e) => e instanceof FrameError && e.reason === "checksum",
  );
  const unknown = frame.slice();
  unknown[0] = 200;
  assert.throws(
    () => decodeAll(unknown),
    (e) => e instanceof FrameError && e.reason === "unknown-tag",
  );
  const reserved = frame.slice();
  reserved[2] = 1;
  assert.throws(
    () => decodeAll(reserved),
    (e) => e instanceof FrameError && e.reason === "malformed",
  );
});

Deno.test("FrameDecoder.end() reports a truncated frame", () => {
  const frame = encodeFrame(Tag.Close, new Uint8Array(100));
  const { decoder, frames } = decodeAll(frame.subarray(0, 50));
  assert.equal(frames.length, 0);
  assert.throws(() => decoder.end(), (e) => e instanceof FrameError && e.reason === "truncated");
});

Deno.test("heartbeat parts repeating their last bytes go as 2-byte references, per link", () => {
  const tx = new OpDictionary(), rx = new OpDictionary();
  const small = new Uint8Array(8).fill(7), big = new Uint8Array(65).fill(9);
  const hb = (parts: { op: string; data: Uint8Array }[]) => ({
    stamp: 1,
    echo: -1,
    echoDelay: 0,
    parts,
  });
  const parts = [{ op: "OSDPing", data: small }, { op: "Big", data: big }];
  const first = encodeHeartbeatCounted(hb(parts), tx);
  const second = encodeHeartbeatCounted(hb(parts), tx);
  assert.equal(first.same, 0);
  assert.equal(second.same, 1, "only the small part is remembered");
  assert.equal(second.payload.length, 26 + 2 + (2 + 2 + 65), "a 2-byte ref, then id, length, data");
  const a = decodeHeartbeat(first.payload, rx), b = decodeHeartbeat(second.payload, rx);
  assert.deepEqual(
    b.parts.map((p) => [p.op, [...p.data]]),
    a.parts.map((p) => [p.op, [...p.data]]),
  );
  b.parts[0].data.fill(0); // a handler that scribbles on its part changes nothing remembered
  const changed = new Uint8Array(8).fill(8);
  const third = encodeHeartbeatCounted(hb([{ op: "OSDPing", data: small }]), tx);
  assert.deepEqual([...decodeHeartbeat(third.payload, rx).parts[0].data], [...small]);
  const fourth = encodeHeartbeatCounted(hb([{ op: "OSDPing", data: changed }]), tx);
  assert.equal(fourth.same, 0, "new bytes travel whole");
  assert.deepEqual([...decodeHeartbeat(fourth.payload, rx).parts[0].data], [...changed]);
  // A new link starts afresh: the first part there travels whole.
  const fresh = encodeHeartbeatCounted(hb([{ op: "OSDPing", data: changed }]), new OpDictionary());
  assert.equal(fresh.same, 0);
});

Deno.test("heartbeat: a reference to nothing remembered, or one that also defines, is malformed", () => {
  const tx = new OpDictionary();
  const hb = { stamp: 1, echo: -1, echoDelay: 0, parts: [{ op: "A", data: new Uint8Array(1) }] };
  encodeHeartbeat(hb, tx);
  const repeat = encodeHeartbeat(hb, tx); // the receiver below never saw the first
  const rx = new OpDictionary();
  rx.define(0, "A");
  assert.throws(() => decodeHeartbeat(repeat, rx), /none is remembered/);
  const both = repeat.slice();
  both[26] |= 0x80; // defines and repeats
  assert.throws(() => decodeHeartbeat(both, new OpDictionary()), FrameError);
});

Deno.test("heartbeat payload round-trips stamps and parts; op names travel once per link", () => {
  const parts = [
    { op: "OSDPing", data: new Uint8Array([1, 2, 3]) },
    { op: "LingerPing", data: new Uint8Array(0) },
    { op: "ünïcode", data: new Uint8Array(300).fill(7) },
  ];
  const tx = new OpDictionary(), rx = new OpDictionary();
  const first = encodeHeartbeat({ stamp: 12.5, echo: -1, echoDelay: 0, parts }, tx);
  const hb = decodeHeartbeat(first, rx);
  assert.equal(hb.stamp, 12.5);
  assert.equal(hb.echo, -1);
  assert.deepEqual(hb.parts, parts);
  const second = encodeHeartbeat({ stamp: 13, echo: 12.5, echoDelay: 1, parts }, tx);
  assert.ok(second.length < first.length, "the second frame carries ids, not names");
  // The two small parts repeat (2-byte references); the 300-byte one travels whole.
  assert.equal(second.length, 26 + 2 + 2 + 4 + 300);
  assert.deepEqual(decodeHeartbeat(second, rx).parts, parts);
  // A new link (a fresh dictionary) cannot read ids defined on the old one.
  assert.throws(() => decodeHeartbeat(second, new OpDictionary()), FrameError);
});

Deno.test("heartbeat decoding rejects truncated and padded payloads", () => {
  const good = encodeHeartbeat({
    stamp: 1,
    echo: 2,
    echoDelay: 3,
    parts: [{ op: "x", data: new Uint8Array(8) }],
  }, new OpDictionary());
  for (const bad of [good.subarray(0, 10), good.subarray(0, good.length - 1)]) {
    assert.throws(() => decodeHeartbeat(bad, new OpDictionary()), FrameError);
  }
  const padded = new Uint8Array(good.length + 1);
  padded.set(good);
  assert.throws(() => decodeHeartbeat(padded, new OpDictionary()), FrameError);
  assert.throws(
    () =>
      encodeHeartbeat(
        { stamp: 0, echo: -1, echoDelay: 0, parts: [{ op: "big", data: new Uint8Array(70_000) }] },
        new OpDictionary(),
      ),
    RangeError,
  );
});

Deno.test("hello decoding validates fields", () => {
  const hello = rawHello({ name: "a", nonce: "n", cluster: "c" });
  assert.deepEqual(decodeHello(encodeJson(hello)), hello);
  assert.throws(() => decodeHello(new TextEncoder().encode("{nope")), FrameError);
  assert.throws(() => decodeHello(encodeJson({ ...hello, name: 5 })), FrameError);
  assert.throws(
    () => decodeHello(encodeJson({ ...hello, heartbeat: { mode: "both", intervalMs: 1 } })),
    FrameError,
  );
  assert.throws(() => decodeHello(encodeJson([1, 2])), FrameError);
});

Deno.test("ack payload round-trips sequence numbers up to 2^53", () => {
  for (const n of [0, 1, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER]) {
    assert.equal(decodeAck(encodeAck(n)), n);
  }
  assert.throws(() => decodeAck(new Uint8Array(4)), FrameError);
});

Deno.test("FrameDecoder copies what it keeps, so callers may reuse their read buffer", () => {
  const payload = crypto.getRandomValues(new Uint8Array(3000));
  const frames = new Uint8Array([
    ...encodeFrame(Tag.Close, payload),
    ...encodeFrame(Tag.Ack, encodeAck(7)),
  ]);
  const d = new FrameDecoder({ maxFrameBytes: 8192, expectBanner: false });
  const reused = new Uint8Array(100);
  const got: Uint8Array[] = [];
  for (let at = 0; at < frames.length; at += reused.length) {
    const piece = frames.subarray(at, at + reused.length);
    reused.set(piece);
    d.push(reused.subarray(0, piece.length), (_t, _f, p) => got.push(p.slice()));
    reused.fill(0xee); // the next read overwrites the buffer
  }
  assert.equal(got.length, 2);
  assert.deepEqual(got[0], payload);
  assert.equal(decodeAck(got[1]), 7);
});

Deno.test("crc32c agrees with the bitwise definition for every length and offset up to 70", () => {
  function bitwise(bytes: Uint8Array): number {
    let c = 0xffffffff;
    for (const byte of bytes) {
      c ^= byte;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    }
    return (c ^ 0xffffffff) >>> 0;
  }
  const data = crypto.getRandomValues(new Uint8Array(80));
  for (let start = 0; start < 8; start++) {
    for (let end = start; end <= 70; end++) {
      assert.equal(
        crc32c(0, data, start, end),
        bitwise(data.subarray(start, end)),
        `${start}-${end}`,
      );
    }
  }
});

Deno.test("a Refuse frame about the cluster names the field, not the refusing node's cluster id", () => {
  const error = new HandshakeRefusedError("cluster", "cluster differs: local secret-id, peer x", {
    local: "secret-id",
    peer: "x",
  });
  const text = new TextDecoder().decode(encodeRefusal(error));
  assert.ok(!text.includes("secret-id"), text);
  assert.equal(decodeRefusal(encodeRefusal(error)).field, "cluster");
});

Deno.test("FrameDecoder: any split of a stream gives its frames in order; only frames that spanned reads are owned", () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 300 }), { minLength: 1, maxLength: 20 }),
      fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 50 }),
      (payloads, pieces) => {
        const frames = payloads.map((p) => encodeFrame(Tag.Message, p));
        const stream = new Uint8Array([...BANNER, ...frames.flatMap((f) => [...f])]);
        const starts = new Set<number>(); // where each read begins
        const decoder = new FrameDecoder({ maxFrameBytes: 1024 });
        const got: { payload: Uint8Array; owned: boolean }[] = [];
        // A reused read buffer, as the TCP link has: whatever is not owned must be copied now.
        const readBuffer = new Uint8Array(64);
        for (let at = 0, i = 0; at < stream.length; i++) {
          const n = Math.min(pieces[i % pieces.length], stream.length - at);
          starts.add(at);
          readBuffer.set(stream.subarray(at, at + n));
          decoder.push(readBuffer.subarray(0, n), (_tag, _flags, payload, owned) => {
            got.push({ payload: owned ? payload : payload.slice(), owned });
          });
          at += n;
        }
        decoder.end();
        assert.equal(decoder.buffered, 0);
        assert.deepEqual(got.map((g) => g.payload), payloads);
        // A frame is owned exactly when a read boundary fell inside it.
        let offset = BANNER.length;
        for (const [i, f] of frames.entries()) {
          let spans = false;
          for (let b = offset + 1; b < offset + f.length; b++) if (starts.has(b)) spans = true;
          assert.equal(got[i].owned, spans, `frame ${i}`);
          if (spans) assert.equal(got[i].payload.buffer.byteLength, f.length, "sized to the frame");
          offset += f.length;
        }
      },
    ),
    { seed: 20261206, numRuns: 500 },
  );
});

Deno.test("sha256, HMAC and HKDF match the RFC vectors", () => {
  assert.equal(
    toHex(sha256("abc")),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assert.equal(
    toHex(sha256("")),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
  // RFC 4231, test cases 1 and 6 (a key longer than the block).
  assert.equal(
    toHex(hmacSha256(new Uint8Array(20).fill(0x0b), "Hi There")),
    "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
  );
  assert.equal(
    toHex(
      hmacSha256(
        new Uint8Array(131).fill(0xaa),
        "Test Using Larger Than Block-Size Key - Hash Key First",
      ),
    ),
    "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
  );
  // RFC 5869, test case 1.
  const hex = (s: string) => new Uint8Array(s.match(/../g)!.map((b) => parseInt(b, 16)));
  assert.equal(
    toHex(
      hkdfSha256(
        new Uint8Array(22).fill(0x0b),
        hex("000102030405060708090a0b0c"),
        hex("f0f1f2f3f4f5f6f7f8f9"),
        42,
      ),
    ),
    "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
  );
});

Deno.test("sha256, HMAC and HKDF agree with node:crypto on every length around the block", () => {
  let seed = 7;
  const bytes = (n: number) =>
    Uint8Array.from({ length: n }, () => (seed = (seed * 75 + 74) % 65537) & 0xff);
  for (let n = 0; n < 300; n++) {
    const data = bytes(n);
    const key = bytes(n % 150);
    assert.equal(toHex(sha256(data)), createHash("sha256").update(data).digest("hex"), `sha ${n}`);
    assert.equal(
      toHex(hmacSha256(key, data)),
      createHmac("sha256", key).update(data).digest("hex"),
      `hmac ${n}`,
    );
  }
  // Strings are UTF-8, as node:crypto takes them; an empty key and salt are allowed.
  assert.equal(
    toHex(hmacSha256("kéy", "dätä")),
    createHmac("sha256", "kéy").update("dätä").digest("hex"),
  );
  for (const [ikm, salt, length] of [["", "a:b", 32], ["key", "", 32], ["k", "s", 100]] as const) {
    assert.deepEqual(
      hkdfSha256(ikm, salt, "info", length),
      new Uint8Array(hkdfSync("sha256", ikm, salt, "info", length)),
    );
  }
  assert.equal(timingSafeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2])), true);
  assert.equal(timingSafeEqual(new Uint8Array([1, 2]), new Uint8Array([1, 3])), false);
  assert.equal(timingSafeEqual(new Uint8Array([1]), new Uint8Array([1, 2])), false);
});

Deno.test("encodeMessageChunks: the chunks joined are the packed encoding; large bodies are not copied", () => {
  const sizes = fc.integer({ min: 0, max: GATHER_MIN_BYTES * 2 });
  fc.assert(
    fc.property(
      fc.array(sizes, { minLength: 1, maxLength: 8 }),
      fc.boolean(),
      (lengths, unchecked) => {
        const messages = lengths.map((n, i) => ({
          type: i,
          priority: i % 3,
          seq: i + 1,
          payload: new Uint8Array(n).fill(i + 1),
        }));
        const total = messages.reduce((t, m) => t + messageFrameBytes(m.payload), 0);
        const flags = unchecked ? FLAG_UNCHECKED : 0;
        const packed = encodeMessages(messages, total, 42, flags);
        const chunks = encodeMessageChunks(messages, total, 42, flags);
        const joined = new Uint8Array(chunks.reduce((t, c) => t + c.length, 0));
        let at = 0;
        for (const c of chunks) {
          joined.set(c, at);
          at += c.length;
        }
        assert.deepEqual(joined, packed);
        for (const m of messages) {
          assert.equal(chunks.includes(m.payload), m.payload.length >= GATHER_MIN_BYTES);
        }
      },
    ),
    { seed: 7, numRuns: 200 },
  );
});

Deno.test("FrameDecoder: a preamble announcing a large frame holds memory in step with the bytes that came", () => {
  const size = 8 * 1024 * 1024;
  const frame = encodeFrame(Tag.Message, new Uint8Array(size).fill(3));
  const decoder = new FrameDecoder({ maxFrameBytes: 16 * 1024 * 1024, expectBanner: false });
  let got: Uint8Array | null = null;
  decoder.push(frame.subarray(0, 100), () => {});
  assert.ok(decoder.holding <= PREALLOC_MAX_BYTES, `holds ${decoder.holding} for 100 bytes`);
  for (let at = 100; at < frame.length; at += 65536) {
    decoder.push(frame.subarray(at, Math.min(frame.length, at + 65536)), (_t, _f, p, owned) => {
      assert.ok(owned);
      got = p;
    });
    if (got === null) assert.ok(decoder.holding <= 2 * decoder.buffered + PREALLOC_MAX_BYTES);
  }
  assert.equal(got!.length, size);
  assert.equal(got!.buffer.byteLength, frame.length, "the last buffer is the frame's own size");
  assert.equal(decoder.holding, 0);
});

Deno.test("CRC-32: the check value, and native and table results agree on any range", () => {
  assert.equal(crc32(0, new TextEncoder().encode("123456789")), 0xcbf43926);
  assert.ok(nativeCrc32, "Deno computes CRC-32 natively (node:zlib)");
  const table = slicingCrc(0xedb88320);
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 4096 }),
      fc.nat(),
      fc.nat(),
      fc.nat(),
      (bytes, a, b, seed) => {
        const start = Math.min(a, b) % (bytes.length + 1),
          end = Math.max(a, b) % (bytes.length + 1);
        const [s, e] = start <= end ? [start, end] : [end, start];
        const prior = seed >>> 0;
        assert.equal(crc32(prior, bytes, s, e), table(prior, bytes, s, e));
        assert.equal(crc32(crc32(0, bytes, 0, s), bytes, s), crc32(0, bytes));
      },
    ),
    { seed: 13, numRuns: 500 },
  );
});

Deno.test("a frame flagged CRC-32 is checked with CRC-32; a flipped byte fails it", () => {
  const payload = new Uint8Array(5000).map((_, i) => i * 31);
  const frame = encodeFrame(Tag.Message, payload, FLAG_CRC32);
  const decode = (bytes: Uint8Array) => {
    const got: Uint8Array[] = [];
    new FrameDecoder({ maxFrameBytes: 1 << 20, expectBanner: false })
      .push(bytes, (_t, flags, p) => {
        assert.equal(flags, FLAG_CRC32);
        got.push(p.slice());
      });
    return got;
  };
  assert.deepEqual(decode(frame), [payload]);
  // Not the CRC-32C of the same bytes: the flag decides which checksum the frame carries.
  assert.notEqual(
    new DataView(frame.buffer, frame.byteOffset).getUint32(8),
    new DataView(encodeFrame(Tag.Message, payload).buffer).getUint32(8),
  );
  const bad = frame.slice();
  bad[PREAMBLE_BYTES + 2500] ^= 1;
  assert.throws(() => decode(bad), (e) => e instanceof FrameError && e.reason === "checksum");
});

/** Every message in `frames` (Message and Messages frames), as the receiver reads them. */
function messagesIn(frames: { tag: number; payload: Uint8Array }[]) {
  const out: { seq: number; type: number; priority: number; body: Uint8Array; ack: number }[] = [];
  for (const { tag, payload } of frames) {
    if (tag === Tag.Message) {
      const h = decodeMessageHeader(payload);
      out.push({ ...h, body: payload.subarray(MESSAGE_HEADER_BYTES) });
      continue;
    }
    assert.equal(tag, Tag.Messages);
    const h = decodeMessagesHeader(payload);
    let at = MESSAGES_HEADER_BYTES;
    for (let i = 0; i < h.count; i++) {
      const length = recordLength(payload, at);
      const type = recordType(payload, at);
      const body = payload.subarray(at + RECORD_HEADER_BYTES, at + RECORD_HEADER_BYTES + length);
      out.push({ seq: h.seq + i, type, priority: payload[at], body, ack: h.ack });
      at += RECORD_HEADER_BYTES + length;
    }
  }
  return out;
}

Deno.test("encodeOutgoing: any mix of sizes and sequence gaps decodes to the same messages, split anywhere", () => {
  const size = fc.oneof(
    fc.integer({ min: 0, max: 300 }),
    fc.integer({ min: 300, max: GATHER_MIN_BYTES + 100 }),
  );
  fc.assert(
    fc.property(
      fc.array(fc.tuple(size, fc.boolean()), { minLength: 1, maxLength: 40 }),
      fc.constantFrom(0, 64, 1000, 4096, 65536),
      fc.constantFrom(0, FLAG_CRC32, FLAG_UNCHECKED),
      fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 8 }),
      (shape, batchLimit, flags, pieces) => {
        let seq = 10;
        const messages: OutgoingMessage[] = shape.map(([n, gap], i) => ({
          type: (i * 2654435761) >>> 0,
          priority: i % 3,
          seq: seq += gap ? 3 : 1,
          payload: new Uint8Array(n).fill(i & 0xff),
        }));
        const out = encodeOutgoing(messages, 77, flags, batchLimit);
        const wire = new Uint8Array(out.chunks.reduce((t, c) => t + c.length, 0));
        let at = 0;
        for (const c of out.chunks) wire.set(c, (at += c.length) - c.length);
        // Fed in pieces of the generated sizes, cycling: frames straddle reads anywhere.
        const frames: { tag: number; payload: Uint8Array }[] = [];
        const d = new FrameDecoder({ maxFrameBytes: 1 << 20, expectBanner: false });
        d.allowUnchecked = true;
        for (let from = 0, k = 0; from < wire.length; k++) {
          const to = Math.min(wire.length, from + pieces[k % pieces.length]);
          d.push(wire.slice(from, to), (tag, _f, payload) => {
            frames.push({ tag, payload: payload.slice() });
          });
          from = to;
        }
        assert.equal(d.buffered, 0);
        assert.equal(frames.length, out.single + out.batched);
        const got = messagesIn(frames);
        assert.deepEqual(got.map((m) => m.seq), messages.map((m) => m.seq));
        assert.deepEqual(got.map((m) => m.type), messages.map((m) => m.type));
        assert.deepEqual(got.map((m) => m.priority), messages.map((m) => m.priority));
        for (const [i, m] of got.entries()) assert.deepEqual(m.body, messages[i].payload);
        assert.ok(got.every((m) => m.ack === 77));
        for (const f of frames) {
          if (f.tag === Tag.Messages) assert.ok(f.payload.length <= batchLimit, "within the limit");
        }
        if (batchLimit === 0) assert.equal(out.batched, 0, "no Messages frame to a peer without");
      },
    ),
    { seed: 20261206, numRuns: 300 },
  );
});

Deno.test("encodeOutgoing: what it tells `keep` is every message in order, and a kept frame resealed decodes anew", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 0, max: GATHER_MIN_BYTES + 10 }), fc.boolean()), {
        minLength: 1,
        maxLength: 30,
      }),
      fc.constantFrom(0, 100, 4096, 65536),
      fc.constantFrom(0, FLAG_CRC32, FLAG_UNCHECKED),
      (shape, batchLimit, flags) => {
        let seq = 0;
        const messages: OutgoingMessage[] = shape.map(([n, gap], i) => ({
          type: i,
          priority: i % 3,
          seq: seq += gap ? 2 : 1,
          payload: new Uint8Array(n).fill(i & 0xff),
        }));
        const kept: OutgoingMessage[] = [];
        const frames: Uint8Array[] = [];
        const out = encodeOutgoing(messages, 5, flags, batchLimit, undefined, undefined, {
          frame: (frame, first, last) => {
            const back = decodeWrittenRun(frame.slice());
            assert.deepEqual([back[0].seq, back[back.length - 1].seq], [first, last]);
            kept.push(...back);
            frames.push(frame.slice());
          },
          message: (m) => void kept.push(m),
        });
        assert.equal(frames.length, out.batched);
        assert.deepEqual(
          kept.map((m) => [m.seq, m.type, m.priority]),
          messages.map((m) => [m.seq, m.type, m.priority]),
        );
        for (const [i, m] of kept.entries()) assert.deepEqual(m.payload, messages[i].payload);
        // Written again on a link with other checksum flags and a newer ack.
        const d = new FrameDecoder({ maxFrameBytes: 1 << 20, expectBanner: false });
        for (const frame of frames) {
          resealRun(frame, 99, FLAG_CRC32);
          let seen = 0;
          d.push(frame, (tag, f, payload) => {
            seen++;
            assert.deepEqual([tag, f, decodeMessagesHeader(payload).ack], [
              Tag.Messages,
              FLAG_CRC32,
              99,
            ]);
          });
          assert.equal(seen, 1);
        }
      },
    ),
    { seed: 61206, numRuns: 200 },
  );
});

Deno.test("decodeMessagesHeader: a malformed record fails the whole frame with a typed error", () => {
  const ms = [1, 2].map((seq) => ({ type: 3, priority: 1, payload: new Uint8Array(5), seq }));
  const good = encodeOutgoing(ms, 0, 0, 65536).chunks[0].subarray(PREAMBLE_BYTES);
  assert.equal(decodeMessagesHeader(good).count, 2);
  const cases: [string, (p: Uint8Array) => Uint8Array, RegExp][] = [
    ["too short", (p) => p.subarray(0, MESSAGES_HEADER_BYTES + 4), /too short/],
    ["a cut record header", (p) => p.subarray(0, p.length - 5 - 3), /inside a record header/],
    ["a cut body", (p) => p.subarray(0, p.length - 1), /past its frame/],
    ["a length past the end", (p) => (p[MESSAGES_HEADER_BYTES + 3] = 200, p), /past its frame/],
    ["an unknown priority", (p) => (p[MESSAGES_HEADER_BYTES + 13] = 3, p), /priority: 3/],
  ];
  for (const [what, mutate, message] of cases) {
    assert.throws(
      () => decodeMessagesHeader(mutate(good.slice())),
      (e) => e instanceof FrameError && e.reason === "malformed" && message.test(e.message),
      what,
    );
  }
});

Deno.test("Hello field batch: a byte count or absent; anything else is malformed", () => {
  assert.equal(decodeHello(encodeJson(rawHello({ batch: 65536 }))).batch, 65536);
  assert.equal(decodeHello(encodeJson(rawHello())).batch, undefined);
  for (const bad of [-1, 1.5, "64k", 2 ** 40, true]) {
    assert.throws(
      () => decodeHello(encodeJson({ ...rawHello(), batch: bad })),
      (e) => e instanceof FrameError && e.reason === "malformed",
      JSON.stringify(bad),
    );
  }
});

Deno.test("encodeOutgoing into a reused buffer writes every byte: nothing of its last user leaks out", () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: GATHER_MIN_BYTES + 10 }), { minLength: 1, maxLength: 12 }),
      fc.constantFrom(0, 100, 65536),
      (sizes, batchLimit) => {
        const messages = sizes.map((n, i) => ({
          type: i,
          priority: i % 3,
          seq: i + 1,
          payload: new Uint8Array(n).fill(i),
        }));
        const fresh = encodeOutgoing(messages, 9, FLAG_CRC32, batchLimit).chunks;
        const dirty = new Uint8Array(1 << 20).fill(0xff);
        let used = 0;
        const alloc = (n: number) => dirty.subarray(used, used += n);
        const reused = encodeOutgoing(messages, 9, FLAG_CRC32, batchLimit, alloc).chunks;
        assert.deepEqual(reused.map((c) => [...c]), fresh.map((c) => [...c]));
      },
    ),
    { seed: 11, numRuns: 100 },
  );
});

Deno.test("FrameDecoder: a Messages frame above what this node takes is refused at its preamble", () => {
  const d = new FrameDecoder({ maxFrameBytes: 16 << 20, expectBanner: false });
  const preamble = new Uint8Array(12);
  preamble[0] = Tag.Messages;
  new DataView(preamble.buffer).setUint32(4, MESSAGES_FRAME_BYTES + 1);
  assert.throws(
    () => d.push(preamble, () => {}),
    (e) => e instanceof FrameError && e.reason === "oversize" && /limit 65536/.test(e.message),
  );
  // A Message frame of that size is within maxFrameBytes: only the preamble arrived, no error.
  const ok = new FrameDecoder({ maxFrameBytes: 16 << 20, expectBanner: false });
  preamble[0] = Tag.Message;
  ok.push(preamble, () => {});
  assert.equal(ok.buffered, 12);
});

Deno.test("encodeBareHeartbeatFrame: the same bytes as a Heartbeat frame of no parts, encoded the general way", () => {
  for (
    const [stamp, echo, delay] of [[0, -1, 0], [123.456, 120.5, 2.25], [1e12, 1e12 - 5, 0.001]]
  ) {
    const general = encodeFrame(
      Tag.Heartbeat,
      encodeHeartbeat({ stamp, echo, echoDelay: delay, parts: [] }, new OpDictionary()),
    );
    assert.deepEqual(encodeBareHeartbeatFrame(stamp, echo, delay), general);
  }
});

Deno.test("heartbeatPartCount: what the payload says, 0 for a keepalive or one too short", () => {
  assert.equal(heartbeatPartCount(encodeBareHeartbeatFrame(1, -1, 0).subarray(PREAMBLE_BYTES)), 0);
  const parts = [{ op: "a", data: new Uint8Array(2) }, { op: "b", data: new Uint8Array(0) }];
  const payload = encodeHeartbeat({ stamp: 1, echo: -1, echoDelay: 0, parts }, new OpDictionary());
  assert.equal(heartbeatPartCount(payload), 2);
  assert.equal(heartbeatPartCount(payload.subarray(0, 25)), 0);
  assert.throws(() => decodeHeartbeat(payload.subarray(0, 25), new OpDictionary()), FrameError);
});
