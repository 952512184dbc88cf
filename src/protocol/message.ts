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
import { PREAMBLE_BYTES, sealFrame, setUint64, Tag } from "./frame.ts";

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
): Uint8Array {
  const buf = new Uint8Array(totalBytes);
  const view = new DataView(buf.buffer);
  let at = 0;
  for (const m of messages) {
    const h = at + PREAMBLE_BYTES;
    writeHeader(buf, view, h, m, ack);
    buf.set(m.payload, h + MESSAGE_HEADER_BYTES);
    sealFrame(buf, view, at, Tag.Message, flags, MESSAGE_HEADER_BYTES + m.payload.length);
    at = h + MESSAGE_HEADER_BYTES + m.payload.length;
  }
  return buf;
}

/**
 * Bodies at least this large travel as chunks of their own (a gather write): their frame's
 * preamble and header go in a small buffer and the body is written from where it lies, never
 * copied into a batch buffer.
 */
export const GATHER_MIN_BYTES = 16 * 1024;

/**
 * Encodes `messages` as consecutive Message frames, as chunks to write in order: small
 * messages packed together as {@linkcode encodeMessages} does, and each body of at least
 * {@linkcode GATHER_MIN_BYTES} as a chunk of its own after a 36-byte preamble and header (its
 * checksum computed over header and body where they lie, so the body is read once, not copied).
 *
 * @example
 * ```ts
 * import { encodeMessageChunks } from "./message.ts";
 * const big = { type: 1, priority: 1, payload: new Uint8Array(65536), seq: 1 };
 * const small = { type: 2, priority: 1, payload: new Uint8Array(8), seq: 2 };
 * const chunks = encodeMessageChunks([small, big], 44 + 65572, 0);
 * if (chunks.length !== 3 || chunks[2] !== big.payload) throw new Error("body written in place");
 * ```
 */
export function encodeMessageChunks(
  messages: readonly OutgoingMessage[],
  totalBytes: number,
  ack: number,
  flags = 0,
): Uint8Array[] {
  let large = false;
  for (const m of messages) if (m.payload.length >= GATHER_MIN_BYTES) large = true;
  // The common case, every body small: one buffer, as encodeMessages makes it.
  if (!large) return [encodeMessages(messages, totalBytes, ack, flags)];
  const chunks: Uint8Array[] = [];
  let run: OutgoingMessage[] = [];
  let runBytes = 0;
  for (const m of messages) {
    if (m.payload.length < GATHER_MIN_BYTES) {
      run.push(m);
      runBytes += messageFrameBytes(m.payload);
      continue;
    }
    if (run.length > 0) chunks.push(encodeMessages(run, runBytes, ack, flags));
    run = [];
    runBytes = 0;
    const head = new Uint8Array(PREAMBLE_BYTES + MESSAGE_HEADER_BYTES);
    const view = new DataView(head.buffer);
    writeHeader(head, view, PREAMBLE_BYTES, m, ack);
    sealFrame(
      head,
      view,
      0,
      Tag.Message,
      flags,
      MESSAGE_HEADER_BYTES + m.payload.length,
      m.payload,
    );
    chunks.push(head, m.payload);
  }
  if (run.length > 0) chunks.push(encodeMessages(run, runBytes, ack, flags));
  return chunks;
}

function writeHeader(
  buf: Uint8Array,
  view: DataView,
  at: number,
  m: OutgoingMessage,
  ack: number,
): void {
  view.setUint32(at, m.type);
  buf[at + 4] = m.priority;
  setUint64(view, at + 8, m.seq);
  setUint64(view, at + 16, ack);
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

function u64(p: Uint8Array, at: number): number {
  // Byte by byte: no DataView per message on the hot path.
  return ((p[at] << 24 | p[at + 1] << 16 | p[at + 2] << 8 | p[at + 3]) >>> 0) * 0x1_0000_0000 +
    ((p[at + 4] << 24 | p[at + 5] << 16 | p[at + 6] << 8 | p[at + 7]) >>> 0);
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
    type: (p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]) >>> 0,
    priority,
    seq: u64(p, 8),
    ack: u64(p, 16),
  };
}
