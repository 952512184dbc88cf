// Fuzz properties of every decoder that reads a peer's bytes: the frame decoder (banner,
// preamble, checksum, reassembly), the handshake JSON (Hello, Welcome, Refuse), the heartbeat
// parts with their op dictionary, the message header and the small control payloads. Inputs
// are random bytes and mutations of valid frames (bit flips, truncation, insertion, splices).
// Each property holds when the decoder returns or throws one of the typed errors, nothing
// else, and what it keeps pending stays within its limit. Shared by tests/fuzz_test.ts (a few
// thousand inputs in CI) and `deno task fuzz` (a million).

import fc from "npm:fast-check@4";
import { FrameError, HandshakeRefusedError } from "../../src/errors.ts";
import { decodeAck, decodeClose, encodeAck, encodeClose } from "../../src/protocol/control.ts";
import {
  BANNER,
  encodeFrame,
  FrameDecoder,
  PREAMBLE_BYTES,
  Tag,
} from "../../src/protocol/frame.ts";
import { decodeHello, decodeRefusal, encodeJson } from "../../src/protocol/handshake.ts";
import { decodeHeartbeat, encodeHeartbeat, OpDictionary } from "../../src/protocol/heartbeat.ts";
import {
  decodeMessageHeader,
  decodeMessagesHeader,
  encodeMessages,
  encodeOutgoing,
  messageFrameBytes,
} from "../../src/protocol/message.ts";
import { rawHello } from "../_helpers.ts";

/** The only errors a decoder may throw on a peer's bytes. */
export function isTyped(error: unknown): boolean {
  return error instanceof FrameError || error instanceof HandshakeRefusedError;
}

/** Runs `fn`; rethrows anything that is not a typed decoding error. */
function typedOnly(fn: () => void): void {
  try {
    fn();
  } catch (error) {
    if (!isTyped(error)) throw error;
  }
}

/** A mutation of valid bytes: flip, truncate, insert, overwrite a run, or splice two inputs. */
function mutated(valid: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc.tuple(valid, fc.array(fc.nat(), { minLength: 1, maxLength: 8 }), fc.nat(3)).map(
    ([bytes, picks, kind]) => {
      const b = Array.from(bytes);
      for (const p of picks) {
        const at = b.length ? p % b.length : 0;
        if (kind === 0 && b.length) b[at] ^= 1 << (p % 8);
        else if (kind === 1) b.length = at;
        else if (kind === 2) b.splice(at, 0, p & 0xff);
        else if (b.length) b[at] = p & 0xff;
      }
      return Uint8Array.from(b);
    },
  );
}

const tags = fc.constantFrom(...Object.values(Tag));

/** Valid frames (any tag, small payloads), optionally behind the banner. */
const validStream = fc.tuple(
  fc.boolean(),
  fc.array(fc.tuple(tags, fc.uint8Array({ maxLength: 300 })), { maxLength: 6 }),
).map(([banner, frames]) => {
  const parts = [banner ? BANNER : new Uint8Array(0), ...frames.map(([t, p]) => encodeFrame(t, p))];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
});

/** Frame decoder: random and mutated streams, split at random points. */
export const frameDecoderProperty = fc.property(
  fc.oneof(validStream, mutated(validStream), fc.uint8Array({ maxLength: 2000 })),
  fc.array(fc.integer({ min: 1, max: 512 }), { minLength: 1, maxLength: 16 }),
  fc.boolean(),
  (bytes, cuts, expectBanner) => {
    const max = 1024;
    const decoder = new FrameDecoder({ maxFrameBytes: max, expectBanner });
    typedOnly(() => {
      let at = 0;
      for (let i = 0; at < bytes.length; i++) {
        const n = cuts[i % cuts.length];
        decoder.push(bytes.subarray(at, at + n), (_tag, _flags, payload) => {
          if (payload.length > max) throw new Error(`frame of ${payload.length} over the limit`);
        });
        at += n;
      }
      decoder.end();
    });
  },
);

/** Valid Hello bodies with random extra and missing fields. */
const helloLike = fc.tuple(
  fc.dictionary(fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
  fc.subarray(["version", "name", "nonce", "policy", "cluster", "heartbeat"]),
).map(([extra, drop]) => {
  const hello: Record<string, unknown> = { ...rawHello({ inSeq: 3, session: "ab" }), ...extra };
  for (const key of drop) delete hello[key];
  return encodeJson(hello);
});

/** Handshake decoders: random JSON, mutated Hellos, random bytes. */
export const handshakeProperty = fc.property(
  fc.oneof(
    helloLike,
    mutated(helloLike),
    fc.jsonValue().map((v) => encodeJson(v)),
    fc.uint8Array({ maxLength: 400 }),
  ),
  (payload) => {
    typedOnly(() => {
      const hello = decodeHello(payload);
      if (typeof hello.name !== "string" || typeof hello.heartbeat.intervalMs !== "number") {
        throw new Error("decodeHello returned a Hello of the wrong shape");
      }
    });
    typedOnly(() => void decodeRefusal(payload));
  },
);

const parts = fc.array(
  fc.record({
    op: fc.oneof(
      fc.constantFrom("OSDPing", "LingerPing", "WatchPing"),
      fc.string({ minLength: 1, maxLength: 20 }),
    ),
    data: fc.uint8Array({ maxLength: 40 }),
  }),
  { maxLength: 6 },
);

/** Valid heartbeat payloads, each from a fresh dictionary (so they define their ops). */
const heartbeatLike = parts.map((p) =>
  encodeHeartbeat({ stamp: 1, echo: -1, echoDelay: 0, parts: p }, new OpDictionary())
);

/** Heartbeat decoder: mutated and random payloads against one dictionary per link. */
export const heartbeatProperty = fc.property(
  fc.array(fc.oneof(heartbeatLike, mutated(heartbeatLike), fc.uint8Array({ maxLength: 200 })), {
    minLength: 1,
    maxLength: 5,
  }),
  (payloads) => {
    const dict = new OpDictionary();
    for (const payload of payloads) typedOnly(() => void decodeHeartbeat(payload, dict));
  },
);

const messageLike = fc.tuple(fc.nat(), fc.nat(2), fc.uint8Array({ maxLength: 64 })).map(
  ([type, priority, body]) => {
    const m = { type, priority, payload: body, seq: 1 };
    return encodeMessages([m], messageFrameBytes(body), 0).subarray(PREAMBLE_BYTES);
  },
);

const messagesLike = fc.array(fc.tuple(fc.nat(), fc.nat(2), fc.uint8Array({ maxLength: 40 })), {
  minLength: 1,
  maxLength: 6,
}).map((records) => {
  const ms = records.map(([type, priority, payload], i) => ({
    type,
    priority,
    payload,
    seq: i + 1,
  }));
  return encodeOutgoing(ms, 0, 0, 65536).chunks[0].subarray(PREAMBLE_BYTES);
});

/** Message and Messages headers, and control payloads. */
export const controlProperty = fc.property(
  fc.oneof(
    messageLike,
    mutated(messageLike),
    messagesLike,
    mutated(messagesLike),
    fc.constant(encodeAck(7)),
    mutated(fc.constant(encodeAck(7))),
    fc.constant(encodeClose("bye")),
    fc.uint8Array({ maxLength: 64 }),
  ),
  (payload) => {
    typedOnly(() => void decodeMessageHeader(payload));
    typedOnly(() => void decodeMessagesHeader(payload));
    typedOnly(() => void decodeAck(payload));
    typedOnly(() => void decodeClose(payload));
  },
);

/** How many inputs to try, and the seed that makes them reproducible. */
export interface FuzzRun {
  numRuns: number;
  seed: number;
}

/** Every property, by name, as a function that checks it (throws on a counterexample). */
export const PROPERTIES: Readonly<Record<string, (run: FuzzRun) => void>> = {
  frame: (run) => fc.assert(frameDecoderProperty, run),
  handshake: (run) => fc.assert(handshakeProperty, run),
  heartbeat: (run) => fc.assert(heartbeatProperty, run),
  control: (run) => fc.assert(controlProperty, run),
};
