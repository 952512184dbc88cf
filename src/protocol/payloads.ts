/**
 * Payload codecs for the control frames of protocol v1: hello/welcome/refuse (JSON), heartbeat
 * (stamps and OOB parts), ack and close. Pure functions on bytes.
 *
 * @module
 */

import { FrameError } from "../errors.ts";
import { getUint64, setUint64 } from "./frame.ts";
import type { DetectorSettings } from "../health/detector.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Largest handshake payload accepted, whatever the frame limit. */
export const MAX_HANDSHAKE_BYTES = 16 * 1024;

/**
 * Heartbeat settings that every node of a cluster must agree on: the handshake carries them
 * and refuses a peer whose values differ, naming the field.
 */
export interface HeartbeatSettings extends DetectorSettings {
  /** `global`: one heartbeat per peer shared by all subscribers; `local`: one per subscriber. */
  mode: "global" | "local";
}

/** The fields of {@linkcode HeartbeatSettings}, in the order the handshake checks them. */
export const HEARTBEAT_FIELDS = [
  "mode",
  "intervalMs",
  "detector",
  "phiThreshold",
  "acceptablePauseMs",
  "minStdDevMs",
  "graceMs",
] as const;

/** The JSON body of a Hello or Welcome frame. */
export interface Hello {
  /** Protocol version. */
  version: number;
  /** Node name of the sender. */
  name: string;
  /** Random per-process instance nonce: a new value means the peer restarted. */
  nonce: string;
  /** Connection policy the sender uses for this connection. */
  policy: string;
  /** Cluster id; peers of different clusters refuse each other. */
  cluster: string;
  /** Heartbeat settings. */
  heartbeat: HeartbeatSettings;
  /** Lossless policies: the highest sequence the sender has received in the session. */
  inSeq?: number;
  /** Lossless client: the nonce of the server incarnation it has a session with, or null. */
  resumeNonce?: string | null;
  /** Welcome to a lossless client: whether its session was resumed. */
  resumed?: boolean;
  /** Addresses the sender listens on (lets a peer tell which of its dials go to the sender). */
  listening?: string[];
}

/** The JSON body of a Refuse frame. */
export interface Refusal {
  /** The setting that differs. */
  field: string;
  /** Human-readable explanation, from the refusing side's point of view. */
  message: string;
  /** The refusing side's value, when the refusal is about differing values. */
  local?: unknown;
  /** The refused side's value, as the refusing side received it. */
  peer?: unknown;
}

/** Encodes a JSON control payload (hello, welcome, refuse). */
export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

function parseJson(payload: Uint8Array, what: string): Record<string, unknown> {
  if (payload.length > MAX_HANDSHAKE_BYTES) {
    throw new FrameError("oversize", `${what} too large: ${payload.length} bytes`);
  }
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(payload));
  } catch (cause) {
    throw new FrameError("malformed", `${what} is not valid JSON`, { cause });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new FrameError("malformed", `${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function str(obj: Record<string, unknown>, key: string, what: string): string {
  const value = obj[key];
  if (typeof value !== "string") {
    throw new FrameError("malformed", `${what} field ${key} is not a string`);
  }
  return value;
}

function num(obj: Record<string, unknown>, key: string, what: string): number {
  const value = obj[key];
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new FrameError("malformed", `${what} field ${key} is not a number`);
  }
  return value;
}

/** Decodes and validates a Hello/Welcome payload. */
export function decodeHello(payload: Uint8Array): Hello {
  const obj = parseJson(payload, "Hello");
  const hb = obj.heartbeat;
  if (typeof hb !== "object" || hb === null) {
    throw new FrameError("malformed", "Hello field heartbeat is not an object");
  }
  const heartbeat = hb as Record<string, unknown>;
  const mode = str(heartbeat, "mode", "Hello heartbeat");
  if (mode !== "global" && mode !== "local") {
    throw new FrameError("malformed", `Hello heartbeat mode is unknown: ${mode}`);
  }
  const detector = str(heartbeat, "detector", "Hello heartbeat");
  if (detector !== "phi" && detector !== "grace") {
    throw new FrameError("malformed", `Hello heartbeat detector is unknown: ${detector}`);
  }
  const what = "Hello heartbeat";
  const hello: Hello = {
    version: num(obj, "version", "Hello"),
    name: str(obj, "name", "Hello"),
    nonce: str(obj, "nonce", "Hello"),
    policy: str(obj, "policy", "Hello"),
    cluster: str(obj, "cluster", "Hello"),
    heartbeat: {
      mode,
      detector,
      intervalMs: num(heartbeat, "intervalMs", what),
      phiThreshold: num(heartbeat, "phiThreshold", what),
      acceptablePauseMs: num(heartbeat, "acceptablePauseMs", what),
      minStdDevMs: num(heartbeat, "minStdDevMs", what),
      graceMs: num(heartbeat, "graceMs", what),
    },
  };
  if (obj.inSeq !== undefined) hello.inSeq = num(obj, "inSeq", "Hello");
  if (obj.resumeNonce !== undefined && obj.resumeNonce !== null) {
    hello.resumeNonce = str(obj, "resumeNonce", "Hello");
  }
  if (obj.listening !== undefined) {
    if (!Array.isArray(obj.listening) || obj.listening.some((a) => typeof a !== "string")) {
      throw new FrameError("malformed", "Hello field listening is not a list of strings");
    }
    hello.listening = (obj.listening as string[]).slice(0, 16);
  }
  if (obj.resumed !== undefined) {
    if (typeof obj.resumed !== "boolean") {
      throw new FrameError("malformed", "Hello field resumed is not a boolean");
    }
    hello.resumed = obj.resumed;
  }
  return hello;
}

/** Decodes a Refuse payload. */
export function decodeRefusal(payload: Uint8Array): Refusal {
  const obj = parseJson(payload, "Refusal");
  const refusal: Refusal = {
    field: str(obj, "field", "Refusal"),
    message: str(obj, "message", "Refusal"),
  };
  if ("local" in obj && "peer" in obj) {
    refusal.local = obj.local;
    refusal.peer = obj.peer;
  }
  return refusal;
}

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
/** Op ids a link can define (15 bits). */
const MAX_OP_IDS = 0x7fff;
const DEFINES = 0x8000;

/**
 * The op dictionary of one direction of one link. Each op name travels once per link: the
 * first part of an op defines its id inline, later parts carry only the 2-byte id. Both ends
 * start empty with each new link (a resumed session starts a new dictionary too).
 */
export class OpDictionary {
  #ids = new Map<string, number>();
  #ops: string[] = [];

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
}

/**
 * Encodes a heartbeat frame payload. Each part is a u16 op reference (high bit set: an inline
 * definition, op length u8 and UTF-8 name, follows), a u16 data length and the data. Op names
 * are at most 255 UTF-8 bytes; part data at most {@linkcode MAX_OOB_PART_BYTES}.
 */
export function encodeHeartbeat(hb: HeartbeatPayload, dict: OpDictionary): Uint8Array {
  if (hb.parts.length > 0xffff) throw new RangeError("Too many OOB parts in one heartbeat");
  const refs: { id: number; define: boolean; name: Uint8Array }[] = [];
  let size = HEARTBEAT_FIXED_BYTES;
  for (const part of hb.parts) {
    const name = opBytes(part.op);
    if (name.length > 255) throw new RangeError(`OOB op name too long: ${part.op}`);
    if (part.data.length > MAX_OOB_PART_BYTES) {
      throw new RangeError(`OOB part too large: ${part.data.length} bytes for ${part.op}`);
    }
    const ref = { ...dict.idFor(part.op), name };
    refs.push(ref);
    size += 2 + (ref.define ? 1 + name.length : 0) + 2 + part.data.length;
  }
  const buf = new Uint8Array(size);
  const view = new DataView(buf.buffer);
  view.setFloat64(0, hb.stamp);
  view.setFloat64(8, hb.echo);
  view.setFloat64(16, hb.echoDelay);
  view.setUint16(24, hb.parts.length);
  let pos = HEARTBEAT_FIXED_BYTES;
  for (let i = 0; i < refs.length; i++) {
    const { id, define, name } = refs[i];
    view.setUint16(pos, define ? id | DEFINES : id);
    pos += 2;
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
  return buf;
}

/** Decodes a heartbeat payload against the link's dictionary; part data are copies. */
export function decodeHeartbeat(payload: Uint8Array, dict: OpDictionary): HeartbeatPayload {
  if (payload.length < HEARTBEAT_FIXED_BYTES) {
    throw new FrameError("malformed", `Heartbeat too short: ${payload.length} bytes`);
  }
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const count = view.getUint16(24);
  const parts: OobPart[] = [];
  let pos = HEARTBEAT_FIXED_BYTES;
  for (let i = 0; i < count; i++) {
    if (pos + 2 > payload.length) break;
    const ref = view.getUint16(pos);
    pos += 2;
    let op: string;
    if (ref & DEFINES) {
      if (pos + 1 > payload.length) break;
      const opLen = payload[pos++];
      if (pos + opLen > payload.length) break;
      op = decodeOp(payload.subarray(pos, pos + opLen));
      pos += opLen;
      dict.define(ref & ~DEFINES, op);
    } else {
      op = dict.opOf(ref);
    }
    if (pos + 2 > payload.length) break;
    const dataLen = view.getUint16(pos);
    pos += 2;
    if (pos + dataLen > payload.length) break;
    parts.push({ op, data: payload.slice(pos, pos + dataLen) });
    pos += dataLen;
  }
  if (parts.length !== count || pos !== payload.length) {
    throw new FrameError("malformed", "Heartbeat parts do not match the frame length");
  }
  return {
    stamp: view.getFloat64(0),
    echo: view.getFloat64(8),
    echoDelay: view.getFloat64(16),
    parts,
  };
}

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
  return encoder.encode(reason.slice(0, 1024));
}

/** Decodes a Close reason; undecodable bytes become U+FFFD rather than an error. */
export function decodeClose(payload: Uint8Array): string {
  return new TextDecoder().decode(payload);
}
