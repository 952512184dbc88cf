/**
 * The Heartbeat frame payload of protocol v1: the sender's stamp, the echo of the peer's last
 * stamp, and the coalesced out-of-band parts, each naming its op through a per-link op
 * dictionary. Pure functions on bytes.
 *
 * @module
 */

import { frameArena } from "../_buffer_pool.ts";
import { FrameError } from "../errors.ts";
import { PREAMBLE_BYTES, readFloat64, sealFrame, Tag, writeFloat64 } from "./frame.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** One out-of-band part of a heartbeat frame. */
export interface OobPart {
  /** Names the handler on the receiving side (`"OSDPing"`, `"LingerPing"`, ...). */
  op: string;
  /** The bytes the producer returned. */
  data: Uint8Array;
}

/** A decoded heartbeat frame. */
export interface HeartbeatPayload {
  /** Sender's clock when the frame was built, in ms. */
  stamp: number;
  /** The last stamp the sender received from us, or -1 if none. */
  echo: number;
  /** How long the sender held `echo` before sending it back, in ms. */
  echoDelay: number;
  /** The coalesced OOB parts. */
  parts: OobPart[];
}

const HEARTBEAT_FIXED_BYTES = 26;

/**
 * A whole Heartbeat frame without parts (what an idle connection sends each interval): one
 * buffer, preamble included, where {@linkcode encodeHeartbeat} and `encodeFrame` make two.
 *
 * @example
 * ```ts
 * import { decodeHeartbeat, encodeBareHeartbeatFrame, OpDictionary } from "./heartbeat.ts";
 * const frame = encodeBareHeartbeatFrame(1000, 990, 3);
 * const hb = decodeHeartbeat(frame.subarray(12), new OpDictionary());
 * if (hb.stamp !== 1000 || hb.echo !== 990 || hb.parts.length !== 0) throw new Error("heartbeat");
 * ```
 */
export function encodeBareHeartbeatFrame(
  stamp: number,
  echo: number,
  echoDelay: number,
): Uint8Array {
  const frame = frameArena.take(PREAMBLE_BYTES + HEARTBEAT_FIXED_BYTES);
  writeFloat64(frame, PREAMBLE_BYTES, stamp);
  writeFloat64(frame, PREAMBLE_BYTES + 8, echo);
  writeFloat64(frame, PREAMBLE_BYTES + 16, echoDelay);
  frame[PREAMBLE_BYTES + 24] = 0; // no parts (u16)
  frame[PREAMBLE_BYTES + 25] = 0;
  sealFrame(frame, 0, Tag.Heartbeat, 0, HEARTBEAT_FIXED_BYTES);
  return frame;
}

// Op names repeat in every heartbeat: encode each once (bounded, so odd callers cannot grow it).
const opBytesCache = new Map<string, Uint8Array>();

function opBytes(op: string): Uint8Array {
  let bytes = opBytesCache.get(op);
  if (!bytes) {
    bytes = encoder.encode(op);
    if (opBytesCache.size < 4096) opBytesCache.set(op, bytes);
  }
  return bytes;
}

/** Decodes an op name: ASCII without a decoder call (the common case), UTF-8 otherwise. */
function decodeOp(bytes: Uint8Array): string {
  let ascii = true;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return String.fromCharCode(...bytes);
  try {
    return decoder.decode(bytes);
  } catch (cause) {
    throw new FrameError("malformed", "Heartbeat op name is not UTF-8", { cause });
  }
}

/** Largest OOB part: its length travels as a u16. */
export const MAX_OOB_PART_BYTES = 0xffff;
/** Op ids a link can define (14 bits). */
const MAX_OP_IDS = 0x3fff;
/**
 * Parts of at most this many bytes are remembered, per op and link direction, by both ends:
 * a later part with the same bytes travels as a 2-byte reference ("same as before"). The
 * bound keeps what a peer can make a link remember at 1,024 ops x 64 B.
 */
export const MAX_REMEMBERED_PART_BYTES = 64;
/**
 * Ops a receiver accepts per link and direction by default: each defined op costs memory for
 * as long as the link lives, so a peer cannot make a link hold 16,383 of them.
 */
export const MAX_OPS_PER_LINK = 1024;
const DEFINES = 0x8000;
/** Op reference bit: the part repeats this op's last remembered bytes; nothing follows. */
const SAME = 0x4000;
const ID_BITS = 0x3fff;

/**
 * The op dictionary of one direction of one link. Each op name travels once per link: the
 * first part of an op defines its id inline, later parts carry only the 2-byte id. Both ends
 * start empty with each new link (a resumed session starts a new dictionary too).
 */
export class OpDictionary {
  #ids = new Map<string, number>();
  #ops: string[] = [];
  /** The last part of each op id, if it was small enough to remember. */
  #last: (Uint8Array | undefined)[] = [];
  readonly #maxOps: number;

  /** An empty dictionary accepting at most `maxOps` definitions from the peer. */
  constructor(maxOps = MAX_OPS_PER_LINK) {
    this.#maxOps = maxOps;
  }

  /** Sender side: the id of `op`, and whether this part must define it. */
  idFor(op: string): { id: number; define: boolean } {
    const known = this.#ids.get(op);
    if (known !== undefined) return { id: known, define: false };
    if (this.#ops.length >= MAX_OP_IDS) {
      throw new RangeError(`Too many OOB ops on one link: ${MAX_OP_IDS}`);
    }
    const id = this.#ops.length;
    this.#ids.set(op, id);
    this.#ops.push(op);
    return { id, define: true };
  }

  /** Receiver side: records a definition. */
  define(id: number, op: string): void {
    if (this.#ops.length >= this.#maxOps) {
      throw new FrameError("oversize", `Too many OOB ops on one link: over ${this.#maxOps}`);
    }
    if (id !== this.#ops.length) {
      throw new FrameError("malformed", `Heartbeat op id ${id} defined out of order`);
    }
    this.#ops.push(op);
  }

  /** Receiver side: the op of an id defined earlier on this link. */
  opOf(id: number): string {
    const op = this.#ops[id];
    if (op === undefined) throw new FrameError("malformed", `Heartbeat op id ${id} is unknown`);
    return op;
  }

  /** Sender side: whether `data` repeats the last part of `id` (so it may go as a reference). */
  repeats(id: number, data: Uint8Array): boolean {
    const last = this.#last[id];
    if (last === undefined || last.length !== data.length) return false;
    for (let i = 0; i < data.length; i++) if (last[i] !== data[i]) return false;
    return true;
  }

  /** Both sides: `data` travelled whole as the part of `id` (remembered if small; a copy). */
  travelled(id: number, data: Uint8Array): void {
    this.#last[id] = data.length <= MAX_REMEMBERED_PART_BYTES ? data.slice() : undefined;
  }

  /** Receiver side: the bytes a "same as before" part of `id` stands for (a fresh copy). */
  remembered(id: number): Uint8Array {
    const last = this.#last[id];
    if (last === undefined) {
      throw new FrameError(
        "malformed",
        `Heartbeat part repeats op id ${id}, but none is remembered`,
      );
    }
    return last.slice();
  }
}

/**
 * Encodes a heartbeat frame payload. Each part is a u16 op reference, then:
 * - with the high bit set, an inline definition (op length u8 and UTF-8 name), a u16 data
 *   length and the data;
 * - with bit 14 set, nothing: the part repeats the last bytes of that op on this link (only
 *   for parts of at most {@linkcode MAX_REMEMBERED_PART_BYTES});
 * - otherwise a u16 data length and the data.
 * Op names are at most 255 UTF-8 bytes; part data at most {@linkcode MAX_OOB_PART_BYTES}.
 */
export function encodeHeartbeat(hb: HeartbeatPayload, dict: OpDictionary): Uint8Array {
  return encodeHeartbeatCounted(hb, dict).payload;
}

/** {@linkcode encodeHeartbeat}, also saying how many parts went as "same as before". */
export function encodeHeartbeatCounted(
  hb: HeartbeatPayload,
  dict: OpDictionary,
): { payload: Uint8Array; same: number } {
  if (hb.parts.length > 0xffff) throw new RangeError("Too many OOB parts in one heartbeat");
  const refs: { id: number; define: boolean; same: boolean; name: Uint8Array }[] = [];
  let size = HEARTBEAT_FIXED_BYTES, same = 0;
  for (const part of hb.parts) {
    const name = opBytes(part.op);
    if (name.length > 255) throw new RangeError(`OOB op name too long: ${part.op}`);
    if (part.data.length > MAX_OOB_PART_BYTES) {
      throw new RangeError(`OOB part too large: ${part.data.length} bytes for ${part.op}`);
    }
    const { id, define } = dict.idFor(part.op);
    const repeat = !define && dict.repeats(id, part.data);
    if (repeat) same++;
    else dict.travelled(id, part.data);
    refs.push({ id, define, same: repeat, name });
    size += 2 + (repeat ? 0 : (define ? 1 + name.length : 0) + 2 + part.data.length);
  }
  const buf = new Uint8Array(size);
  const view = new DataView(buf.buffer);
  view.setFloat64(0, hb.stamp);
  view.setFloat64(8, hb.echo);
  view.setFloat64(16, hb.echoDelay);
  view.setUint16(24, hb.parts.length);
  let pos = HEARTBEAT_FIXED_BYTES;
  for (let i = 0; i < refs.length; i++) {
    const { id, define, same, name } = refs[i];
    view.setUint16(pos, define ? id | DEFINES : same ? id | SAME : id);
    pos += 2;
    if (same) continue;
    if (define) {
      buf[pos++] = name.length;
      buf.set(name, pos);
      pos += name.length;
    }
    const data = hb.parts[i].data;
    view.setUint16(pos, data.length);
    pos += 2;
    buf.set(data, pos);
    pos += data.length;
  }
  return { payload: buf, same };
}

/**
 * How many parts a heartbeat payload says it carries (0 for one too short to say: the
 * decoder refuses it). A payload without parts decodes without the link's dictionary.
 */
export function heartbeatPartCount(payload: Uint8Array): number {
  return payload.length < HEARTBEAT_FIXED_BYTES ? 0 : payload[24] << 8 | payload[25];
}

/** The parts of a heartbeat that has none (shared and frozen: never added to). */
const NO_PARTS = Object.freeze([]) as unknown as OobPart[];

/**
 * Decodes a heartbeat payload against the link's dictionary; part data are copies. A
 * heartbeat without parts shares one empty `parts` array: read it, never add to it.
 */
export function decodeHeartbeat(payload: Uint8Array, dict: OpDictionary): HeartbeatPayload {
  if (payload.length < HEARTBEAT_FIXED_BYTES) {
    throw new FrameError("malformed", `Heartbeat too short: ${payload.length} bytes`);
  }
  const count = heartbeatPartCount(payload);
  const stamp = readFloat64(payload, 0);
  const echo = readFloat64(payload, 8);
  const echoDelay = readFloat64(payload, 16);
  // A keepalive, every second on every idle connection: no view, no parts array.
  if (count === 0 && payload.length === HEARTBEAT_FIXED_BYTES) {
    return { stamp, echo, echoDelay, parts: NO_PARTS };
  }
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const parts: OobPart[] = [];
  let pos = HEARTBEAT_FIXED_BYTES;
  for (let i = 0; i < count; i++) {
    if (pos + 2 > payload.length) break;
    const ref = view.getUint16(pos);
    pos += 2;
    const id = ref & ID_BITS;
    let op: string;
    if (ref & DEFINES) {
      if (ref & SAME) throw new FrameError("malformed", "Heartbeat part both defines and repeats");
      if (pos + 1 > payload.length) break;
      const opLen = payload[pos++];
      if (pos + opLen > payload.length) break;
      op = decodeOp(payload.subarray(pos, pos + opLen));
      pos += opLen;
      dict.define(id, op);
    } else {
      op = dict.opOf(id);
      if (ref & SAME) {
        parts.push({ op, data: dict.remembered(id) });
        continue;
      }
    }
    if (pos + 2 > payload.length) break;
    const dataLen = view.getUint16(pos);
    pos += 2;
    if (pos + dataLen > payload.length) break;
    const data = payload.slice(pos, pos + dataLen);
    dict.travelled(id, data);
    parts.push({ op, data });
    pos += dataLen;
  }
  if (parts.length !== count || pos !== payload.length) {
    throw new FrameError("malformed", "Heartbeat parts do not match the frame length");
  }
  return { stamp, echo, echoDelay, parts };
}
