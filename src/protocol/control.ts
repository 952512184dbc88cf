/**
 * Small control payloads of protocol v1: Ack (the highest sequence received) and Close (a
 * reason). Pure functions on bytes.
 *
 * @module
 */

import { FrameError } from "../errors.ts";
import { frameArena } from "../_buffer_pool.ts";
import { PREAMBLE_BYTES, readUint64, sealFrame, Tag, writeUint64 } from "./frame.ts";

/** Longest Close reason carried, in UTF-16 code units (longer ones are cut). */
export const MAX_CLOSE_REASON = 1024;

/** Encodes an Ack payload: the highest sequence number received. */
export function encodeAck(seq: number): Uint8Array {
  const buf = new Uint8Array(8);
  writeUint64(buf, 0, seq);
  return buf;
}

/**
 * An Ack frame for `seq`, encoded in place: a piece of a shared buffer (see
 * {@linkcode frameArena}), as a lossless session sends one per read that brought messages.
 *
 * @example
 * ```ts
 * import { decodeAck, encodeAckFrame } from "./control.ts";
 * const frame = encodeAckFrame(2 ** 40 + 7);
 * if (frame.length !== 20 || decodeAck(frame.subarray(12)) !== 2 ** 40 + 7) throw new Error("ack");
 * ```
 */
export function encodeAckFrame(seq: number): Uint8Array {
  const frame = frameArena.take(PREAMBLE_BYTES + 8);
  writeUint64(frame, PREAMBLE_BYTES, seq);
  sealFrame(frame, 0, Tag.Ack, 0, 8);
  return frame;
}

/** Decodes an Ack payload. */
export function decodeAck(payload: Uint8Array): number {
  if (payload.length !== 8) {
    throw new FrameError("malformed", `Ack payload must be 8 bytes, got ${payload.length}`);
  }
  return readUint64(payload, 0);
}

/** Encodes a Close reason (truncated to 1 KiB). */
export function encodeClose(reason: string): Uint8Array {
  return new TextEncoder().encode(reason.slice(0, MAX_CLOSE_REASON));
}

/** Decodes a Close reason; undecodable bytes become U+FFFD rather than an error. */
export function decodeClose(payload: Uint8Array): string {
  return new TextDecoder().decode(payload);
}
