/**
 * Small control payloads of protocol v1: Ack (the highest sequence received) and Close (a
 * reason). Pure functions on bytes.
 *
 * @module
 */

import { FrameError } from "../errors.ts";
import { getUint64, setUint64 } from "./frame.ts";

/** Longest Close reason carried, in UTF-16 code units (longer ones are cut). */
export const MAX_CLOSE_REASON = 1024;

/** Encodes an Ack payload: the highest sequence number received. */
export function encodeAck(seq: number): Uint8Array {
  const buf = new Uint8Array(8);
  setUint64(new DataView(buf.buffer), 0, seq);
  return buf;
}

/** Decodes an Ack payload. */
export function decodeAck(payload: Uint8Array): number {
  if (payload.length !== 8) {
    throw new FrameError("malformed", `Ack payload must be 8 bytes, got ${payload.length}`);
  }
  return getUint64(new DataView(payload.buffer, payload.byteOffset, 8), 0);
}

/** Encodes a Close reason (truncated to 1 KiB). */
export function encodeClose(reason: string): Uint8Array {
  return new TextEncoder().encode(reason.slice(0, MAX_CLOSE_REASON));
}

/** Decodes a Close reason; undecodable bytes become U+FFFD rather than an error. */
export function decodeClose(payload: Uint8Array): string {
  return new TextDecoder().decode(payload);
}
