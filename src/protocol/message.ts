/**
 * The Message frame of protocol v1: a 24-byte header in front of the body.
 *
 * ```
 * 0       4         5         8     16    24
 * | type  | priority| reserved| seq | ack | body ...
 * ```
 *
 * `type` is the application's u32; `seq` numbers messages per direction and session from 1;
 * `ack` is the highest sequence the sender has received (a piggybacked acknowledgement; 0 when
 * none). Pure functions on bytes.
 *
 * @module
 */

import { FrameError } from "../errors.ts";
import {
  PREAMBLE_BYTES,
  readUint32,
  readUint64,
  sealFrame,
  Tag,
  writeUint32,
  writeUint64,
} from "./frame.ts";

/** Length of the header in front of a message body. */
export const MESSAGE_HEADER_BYTES = 24;

/** Priority levels, highest first. Strict between levels, FIFO within one. */
export const PRIORITIES = ["high", "normal", "low"] as const;
/** A message priority. */
export type Priority = typeof PRIORITIES[number];

const PRIORITY_INDEX: Readonly<Record<string, number>> = { high: 0, normal: 1, low: 2 };

/**
 * Numeric priority on the wire: 0 is highest.
 *
 * @example
 * ```ts
 * import { priorityIndex } from "./message.ts";
 * if (priorityIndex("high") !== 0) throw new Error("high is 0");
 * ```
 */
export function priorityIndex(priority: Priority): number {
  const index = PRIORITY_INDEX[priority];
  if (index === undefined) throw new TypeError(`Unknown priority: ${priority}`);
  return index;
}

/** A message as the writer encodes it. */
export interface OutgoingMessage {
  /** Application-defined type (u32). */
  readonly type: number;
  /** Wire priority (0 highest). */
  readonly priority: number;
  /** The body. */
  readonly payload: Uint8Array;
  /** Its sequence number in the session. */
  seq: number;
}

/** Bytes one message takes on the wire, preamble included. */
export function messageFrameBytes(payload: Uint8Array): number {
  return PREAMBLE_BYTES + MESSAGE_HEADER_BYTES + payload.length;
}

/**
 * Encodes `messages` as consecutive Message frames in one buffer of `totalBytes`, each
 * carrying `ack` (one copy of each body, one checksum pass per frame; none with
 * `FLAG_UNCHECKED` in `flags`).
 *
 * @example
 * ```ts
 * import { encodeMessages, messageFrameBytes } from "./message.ts";
 * const m = { type: 7, priority: 1, payload: new Uint8Array([1, 2]), seq: 1 };
 * const buf = encodeMessages([m], messageFrameBytes(m.payload), 0);
 * if (buf.length !== 38) throw new Error("12 + 24 + 2 bytes");
 * ```
 */
export function encodeMessages(
  messages: readonly OutgoingMessage[],
  totalBytes: number,
  ack: number,
  flags = 0,
  alloc: Alloc = newBytes,
): Uint8Array {
  const buf = alloc(totalBytes);
  let at = 0;
  for (const m of messages) {
    const h = at + PREAMBLE_BYTES;
    writeHeader(buf, h, m, ack);
    // (An empty body is not copied: one whose buffer was detached would throw, and it is
    // written as it was counted, empty.)
    if (m.payload.length > 0) buf.set(m.payload, h + MESSAGE_HEADER_BYTES);
    sealFrame(buf, at, Tag.Message, flags, MESSAGE_HEADER_BYTES + m.payload.length);
    at = h + MESSAGE_HEADER_BYTES + m.payload.length;
  }
  return buf;
}

/**
 * Where encoders put their bytes: a fresh buffer per call by default; a writer passes one that
 * hands out pieces of a buffer it reuses once the previous write completed.
 */
export type Alloc = (bytes: number) => Uint8Array;

const newBytes: Alloc = (bytes) => new Uint8Array(bytes);

/**
 * Bodies at least this large travel as chunks of their own (a gather write): their frame's
 * preamble and header go in a small buffer and the body is written from where it lies, never
 * copied into a batch buffer. Smaller bodies are copied: Deno has no writev, so a gather write
 * costs a second write call, and the peer a read of the 36-byte head alone, which cost more
 * than copying 64 KiB. With larger reads on links that carry large frames (transports/
 * _stream.ts), a 64 KiB stream between processes went from 41-56 k to 57-65 k msg/s and 16 KiB
 * from 126-130 k to 188-214 k; neither change helped alone (docs/benchmarks.md).
 */
export const GATHER_MIN_BYTES = 128 * 1024;

/**
 * Encodes `messages` as consecutive Message frames, as chunks to write in order: small
 * messages packed together as {@linkcode encodeMessages} does, and each body of at least
 * {@linkcode GATHER_MIN_BYTES} as a chunk of its own after a 36-byte preamble and header (its
 * checksum computed over header and body where they lie, so the body is read once, not copied).
 *
 * @example
 * ```ts
 * import { encodeMessageChunks } from "./message.ts";
 * const big = { type: 1, priority: 1, payload: new Uint8Array(131072), seq: 1 };
 * const small = { type: 2, priority: 1, payload: new Uint8Array(8), seq: 2 };
 * const chunks = encodeMessageChunks([small, big], 44 + 131108, 0);
 * if (chunks.length !== 3 || chunks[2] !== big.payload) throw new Error("body written in place");
 * ```
 */
export function encodeMessageChunks(
  messages: readonly OutgoingMessage[],
  totalBytes: number,
  ack: number,
  flags = 0,
  alloc: Alloc = newBytes,
): Uint8Array[] {
  let large = false;
  for (const m of messages) if (m.payload.length >= GATHER_MIN_BYTES) large = true;
  // The common case, every body small: one buffer, as encodeMessages makes it.
  if (!large) return [encodeMessages(messages, totalBytes, ack, flags, alloc)];
  const chunks: Uint8Array[] = [];
  let run: OutgoingMessage[] = [];
  let runBytes = 0;
  for (const m of messages) {
    if (m.payload.length < GATHER_MIN_BYTES) {
      run.push(m);
      runBytes += messageFrameBytes(m.payload);
      continue;
    }
    if (run.length > 0) chunks.push(encodeMessages(run, runBytes, ack, flags, alloc));
    run = [];
    runBytes = 0;
    const head = alloc(PREAMBLE_BYTES + MESSAGE_HEADER_BYTES);
    writeHeader(head, PREAMBLE_BYTES, m, ack);
    sealFrame(
      head,
      0,
      Tag.Message,
      flags,
      MESSAGE_HEADER_BYTES + m.payload.length,
      m.payload,
    );
    chunks.push(head, m.payload);
  }
  if (run.length > 0) chunks.push(encodeMessages(run, runBytes, ack, flags, alloc));
  return chunks;
}

/** Bytes in front of the records of a Messages frame: the first record's seq, then the ack. */
export const MESSAGES_HEADER_BYTES = 16;

/** Bytes in front of each body in a Messages frame: priority (u8), length (u24), type (u32). */
export const RECORD_HEADER_BYTES = 8;

export { MESSAGES_FRAME_BYTES } from "./frame.ts";

/**
 * Most bytes the encoders take from their `alloc` for `message`: its whole Message frame, or
 * for a body written in place (at least {@linkcode GATHER_MIN_BYTES}) its preamble and header.
 * A message in a Messages frame takes less (see {@linkcode encodeOutgoing}).
 */
export function encodedBytes(message: OutgoingMessage): number {
  return message.payload.length >= GATHER_MIN_BYTES
    ? PREAMBLE_BYTES + MESSAGE_HEADER_BYTES
    : messageFrameBytes(message.payload);
}

/** Message frames and Messages frames ready to write, in order. */
export interface EncodedMessages {
  /** Chunks to write in order (bodies of at least GATHER_MIN_BYTES are chunks of their own). */
  chunks: Uint8Array[];
  /** Message frames among them. */
  single: number;
  /** Messages frames among them. */
  batched: number;
}

/**
 * Told of what {@linkcode encodeOutgoing} encodes, in sequence order: a lossless writer keeps
 * it for replay. `frame` is a view of the encoder's buffer, valid only during the call.
 */
export interface KeepWritten<M extends OutgoingMessage = OutgoingMessage> {
  /** A Messages frame of records `first..last`, preamble included. */
  frame(frame: Uint8Array, first: number, last: number): void;
  /** A message that went as a Message frame of its own. */
  message(message: M): void;
}

/**
 * Encodes `messages` for the wire: bodies under {@linkcode GATHER_MIN_BYTES} with consecutive
 * sequence numbers as Messages frames of at most `batchLimit` payload bytes (one preamble and
 * one checksum for all of them, 8 bytes of header each), every other message as a Message
 * frame (a large body written in place). `batchLimit` 0: the peer takes no Messages frames,
 * so every message goes as a Message frame. The frames take at most the sum of the messages'
 * {@linkcode encodedBytes} from `alloc` (a Messages frame's 28 bytes of preamble and header
 * are paid for by its first record, which is 28 bytes shorter than a Message frame). The
 * chunks and counts are added to `out` (a new one by default); with `keep`, it is told of each
 * frame as it is encoded.
 *
 * @example
 * ```ts
 * import { encodeOutgoing } from "./message.ts";
 * const ms = [1, 2, 3].map((seq) => ({ type: 7, priority: 1, payload: new Uint8Array(8), seq }));
 * const out = encodeOutgoing(ms, 0, 0, 65536);
 * if (out.batched !== 1 || out.single !== 0) throw new Error("one Messages frame");
 * if (out.chunks[0].length !== 12 + 16 + 3 * (8 + 8)) throw new Error("size");
 * ```
 */
export function encodeOutgoing<M extends OutgoingMessage>(
  messages: readonly M[],
  ack: number,
  flags: number,
  batchLimit: number,
  alloc: Alloc = newBytes,
  out: EncodedMessages = { chunks: [], single: 0, batched: 0 },
  keep?: KeepWritten<M>,
): EncodedMessages {
  let i = 0;
  while (i < messages.length) {
    // A run of messages that go in Messages frames, written into one buffer.
    let j = i;
    let bytes = 0;
    let frameBytes = 0;
    while (j < messages.length && batchable(messages[j], batchLimit)) {
      const record = RECORD_HEADER_BYTES + messages[j].payload.length;
      if (j === i || opensFrame(messages, j, frameBytes, record, batchLimit)) {
        bytes += PREAMBLE_BYTES + MESSAGES_HEADER_BYTES;
        frameBytes = MESSAGES_HEADER_BYTES;
      }
      bytes += record;
      frameBytes += record;
      j++;
    }
    if (j > i) {
      out.chunks.push(
        encodeRecordRun(messages, i, j, alloc(bytes), ack, flags, batchLimit, out, keep),
      );
      i = j;
      continue;
    }
    // Messages that go as Message frames, up to the next that would go in a Messages frame.
    while (j < messages.length && !batchable(messages[j], batchLimit)) j++;
    const run = messages.slice(i, j);
    let total = 0;
    for (const m of run) total += messageFrameBytes(m.payload);
    for (const c of encodeMessageChunks(run, total, ack, flags, alloc)) out.chunks.push(c);
    out.single += run.length;
    if (keep) { for (const m of run) keep.message(m); }
    i = j;
  }
  return out;
}

/** Whether `m` may go in a Messages frame of at most `batchLimit` payload bytes. */
function batchable(m: OutgoingMessage, batchLimit: number): boolean {
  return m.payload.length < GATHER_MIN_BYTES &&
    MESSAGES_HEADER_BYTES + RECORD_HEADER_BYTES + m.payload.length <= batchLimit;
}

/**
 * Whether messages[k], a record of `record` bytes, starts a new Messages frame after one of
 * `frameBytes` payload bytes: its seq does not follow the one before, or it does not fit.
 */
function opensFrame(
  messages: readonly OutgoingMessage[],
  k: number,
  frameBytes: number,
  record: number,
  batchLimit: number,
): boolean {
  return messages[k].seq !== messages[k - 1].seq + 1 || frameBytes + record > batchLimit;
}

/** Writes messages[from..to) as consecutive Messages frames into `buf`, which they fill. */
function encodeRecordRun(
  messages: readonly OutgoingMessage[],
  from: number,
  to: number,
  buf: Uint8Array,
  ack: number,
  flags: number,
  batchLimit: number,
  out: EncodedMessages,
  keep: Pick<KeepWritten, "frame"> | undefined,
): Uint8Array {
  let frame = -1; // offset of the open frame's preamble
  let opened = 0; // its first record's seq
  let at = 0;
  for (let k = from; k < to; k++) {
    const m = messages[k];
    const record = RECORD_HEADER_BYTES + m.payload.length;
    if (frame < 0 || opensFrame(messages, k, at - frame - PREAMBLE_BYTES, record, batchLimit)) {
      if (frame >= 0) sealRun(buf, frame, at, flags, keep, opened, messages[k - 1].seq);
      frame = at;
      opened = m.seq;
      writeUint64(buf, at + PREAMBLE_BYTES, m.seq);
      writeUint64(buf, at + PREAMBLE_BYTES + 8, ack);
      at += PREAMBLE_BYTES + MESSAGES_HEADER_BYTES;
      out.batched++;
    }
    const length = m.payload.length;
    buf[at] = m.priority;
    buf[at + 1] = length >>> 16;
    buf[at + 2] = length >>> 8;
    buf[at + 3] = length;
    writeUint32(buf, at + 4, m.type);
    if (length > 0) buf.set(m.payload, at + RECORD_HEADER_BYTES); // (see encodeMessages)
    at += record;
  }
  sealRun(buf, frame, at, flags, keep, opened, messages[to - 1].seq);
  return buf;
}

/** Seals the Messages frame at `frame..end` of `buf`, records `first..last`, and tells `keep`. */
function sealRun(
  buf: Uint8Array,
  frame: number,
  end: number,
  flags: number,
  keep: Pick<KeepWritten, "frame"> | undefined,
  first: number,
  last: number,
): void {
  sealFrame(buf, frame, Tag.Messages, flags, end - frame - PREAMBLE_BYTES);
  keep?.frame(buf.subarray(frame, end), first, last);
}

/**
 * Prepares a Messages frame written before (preamble included) to be written again: its ack
 * and checksum flags become those of the new write, and it is sealed anew.
 */
export function resealRun(frame: Uint8Array, ack: number, flags: number): void {
  writeUint64(frame, PREAMBLE_BYTES + 8, ack);
  sealFrame(frame, 0, Tag.Messages, flags, frame.length - PREAMBLE_BYTES);
}

/**
 * The messages of a Messages frame written before (preamble included), each body a copy of
 * its own.
 *
 * @example
 * ```ts
 * import { decodeWrittenRun, encodeOutgoing } from "./message.ts";
 * const ms = [4, 5].map((seq) => ({ type: seq, priority: 2, payload: new Uint8Array([seq]), seq }));
 * const back = decodeWrittenRun(encodeOutgoing(ms, 0, 0, 65536).chunks[0]);
 * if (back[1].seq !== 5 || back[1].type !== 5 || back[1].payload[0] !== 5) throw new Error("run");
 * ```
 */
export function decodeWrittenRun(frame: Uint8Array): OutgoingMessage[] {
  const p = frame.subarray(PREAMBLE_BYTES);
  const out: OutgoingMessage[] = [];
  let seq = readUint64(p, 0);
  for (let at = MESSAGES_HEADER_BYTES; at < p.length;) {
    const body = at + RECORD_HEADER_BYTES, end = body + recordLength(p, at);
    out.push({ type: recordType(p, at), priority: p[at], payload: p.slice(body, end), seq: seq++ });
    at = end;
  }
  return out;
}

function writeHeader(buf: Uint8Array, at: number, m: OutgoingMessage, ack: number): void {
  writeUint32(buf, at, m.type);
  buf[at + 4] = m.priority;
  // Reserved: written as zero, as the buffer may hold a previous batch (a pooled buffer).
  buf[at + 5] = 0;
  buf[at + 6] = 0;
  buf[at + 7] = 0;
  writeUint64(buf, at + 8, m.seq);
  writeUint64(buf, at + 16, ack);
}

/** The header of a received Message frame. */
export interface MessageHeader {
  /** Application-defined type. */
  type: number;
  /** Wire priority (0 highest). */
  priority: number;
  /** Sequence number. */
  seq: number;
  /** Piggybacked acknowledgement (0: none). */
  ack: number;
}

/**
 * Reads and checks the header of a Message payload; the body is `payload` from
 * {@linkcode MESSAGE_HEADER_BYTES} on.
 *
 * @example
 * ```ts
 * import { decodeMessageHeader, encodeMessages, messageFrameBytes } from "./message.ts";
 * const m = { type: 9, priority: 2, payload: new Uint8Array(3), seq: 5 };
 * const frame = encodeMessages([m], messageFrameBytes(m.payload), 4);
 * const h = decodeMessageHeader(frame.subarray(12));
 * if (h.type !== 9 || h.priority !== 2 || h.seq !== 5 || h.ack !== 4) throw new Error("header");
 * ```
 */
export function decodeMessageHeader(p: Uint8Array): MessageHeader {
  if (p.length < MESSAGE_HEADER_BYTES) {
    throw new FrameError("malformed", `Message frame too short: ${p.length} bytes`);
  }
  const priority = p[4];
  if (priority >= PRIORITIES.length) {
    throw new FrameError("malformed", `Unknown message priority: ${priority}`);
  }
  return {
    type: readUint32(p, 0),
    priority,
    seq: readUint64(p, 8),
    ack: readUint64(p, 16),
  };
}

/** The body length of the Messages record whose header starts at `at` (a u24). */
export function recordLength(p: Uint8Array, at: number): number {
  return p[at + 1] << 16 | p[at + 2] << 8 | p[at + 3];
}

/** The type of the Messages record whose header starts at `at` (a u32). */
export function recordType(p: Uint8Array, at: number): number {
  return readUint32(p, at + 4);
}

/** The header of a received Messages frame, whose records were checked. */
export interface MessagesHeader {
  /** Sequence number of the first record (the others follow it, one apart). */
  seq: number;
  /** Piggybacked acknowledgement (0: none). */
  ack: number;
  /** Records in the frame (at least one). */
  count: number;
}

/**
 * Reads the header of a Messages payload and checks every record in it (its priority, and
 * that it ends inside the frame) before any is delivered, so a malformed frame delivers none.
 * Records follow from {@linkcode MESSAGES_HEADER_BYTES} on: priority (u8), body length (u24),
 * type (u32), body.
 *
 * @example
 * ```ts
 * import { decodeMessagesHeader, encodeOutgoing } from "./message.ts";
 * const ms = [5, 6].map((seq) => ({ type: 1, priority: 0, payload: new Uint8Array(4), seq }));
 * const frame = encodeOutgoing(ms, 3, 0, 65536).chunks[0];
 * const h = decodeMessagesHeader(frame.subarray(12));
 * if (h.seq !== 5 || h.ack !== 3 || h.count !== 2) throw new Error("header");
 * ```
 */
export function decodeMessagesHeader(p: Uint8Array): MessagesHeader {
  if (p.length < MESSAGES_HEADER_BYTES + RECORD_HEADER_BYTES) {
    throw new FrameError("malformed", `Messages frame too short: ${p.length} bytes`);
  }
  let count = 0;
  for (let at = MESSAGES_HEADER_BYTES; at < p.length; count++) {
    if (p.length - at < RECORD_HEADER_BYTES) {
      throw new FrameError("malformed", "Messages frame ends inside a record header");
    }
    if (p[at] >= PRIORITIES.length) {
      throw new FrameError("malformed", `Unknown message priority: ${p[at]}`);
    }
    at += RECORD_HEADER_BYTES + recordLength(p, at);
    if (at > p.length) throw new FrameError("malformed", "Messages record runs past its frame");
  }
  return { seq: readUint64(p, 0), ack: readUint64(p, 8), count };
}
