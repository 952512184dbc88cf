/**
 * The frame codec of wire protocol v1 (docs/protocol.md): pure functions on bytes, no sockets.
 *
 * Every frame is a 12-byte preamble followed by `length` payload bytes:
 *
 * ```
 * 0      1       2          4          8          12
 * | tag  | flags | reserved | length   | checksum | payload ...
 * ```
 *
 * The checksum covers preamble bytes 0..7 and the payload: CRC-32C, or CRC-32 (zlib's, native
 * in Deno and Node) for a frame flagged {@linkcode FLAG_CRC32}, which is sent only to a peer
 * that said in its handshake that it accepts it. A frame whose flags carry
 * {@linkcode FLAG_UNCHECKED} has a zero checksum that is not computed or checked: only on a
 * link whose two ends agreed in the handshake that it protects integrity (TLS, QUIC), as
 * msgr2's secure mode drops its crc.
 *
 * @module
 */

import { frameArena } from "../_buffer_pool.ts";
import { crc32c } from "./crc32c.ts";
import { crc32 } from "./crc32.ts";
import { FrameError, HandshakeRefusedError } from "../errors.ts";

/** Protocol version carried in the banner and the hello. */
export const PROTOCOL_VERSION = 1;

/** Bytes every peer sends first: ASCII `HEARTLN` then the protocol version byte. */
export const BANNER: Uint8Array = new Uint8Array([
  0x48,
  0x45,
  0x41,
  0x52,
  0x54,
  0x4c,
  0x4e,
  PROTOCOL_VERSION,
]);

/** Length of the frame preamble in bytes. */
export const PREAMBLE_BYTES = 12;

/** Frame flag: the checksum is zero and not checked (links that protect integrity). */
export const FLAG_UNCHECKED = 0x01;

/** Frame flag: the checksum is CRC-32 (IEEE, zlib's) instead of CRC-32C. */
export const FLAG_CRC32 = 0x02;

/** Frame tags of protocol v1. Values are stable on the wire. */
export const Tag = {
  /** Client's opening handshake: JSON with name, nonce, policy and settings. */
  Hello: 1,
  /** Server's answer to a hello that it accepts: JSON, same shape. */
  Welcome: 2,
  /** Refusal of a handshake: JSON `{ field, message }`. */
  Refuse: 3,
  /** A data message: 24-byte header, then the body. */
  Message: 4,
  /** A standalone acknowledgement: the highest sequence received, u64. */
  Ack: 5,
  /** Heartbeat with its stamps and coalesced out-of-band parts. */
  Heartbeat: 6,
  /** Orderly close: UTF-8 reason. */
  Close: 7,
  /** Reserved for session resume (lossless policies). */
  Reconnect: 8,
  /** Reserved: session reset (peer restarted, or session expired). */
  Reset: 9,
  /** The accepting side's fresh challenge, right after its banner (see docs/protocol.md). */
  Challenge: 10,
  /**
   * Small data messages with consecutive sequence numbers under one preamble and checksum:
   * the first seq and the ack, then per message priority, length, type and body.
   */
  Messages: 11,
} as const;

/**
 * Most payload bytes of a Messages frame this node takes (it says so in its handshake as
 * `batch`) and sends: a receiver holds a whole frame before it checks it, so this bounds both
 * what it buffers and how many messages one frame delivers (at 8 bytes a record, 8,190).
 */
export const MESSAGES_FRAME_BYTES = 64 * 1024;

/** A frame tag value. */
export type TagValue = typeof Tag[keyof typeof Tag];

const KNOWN_TAGS = new Set<number>(Object.values(Tag));

/**
 * The big-endian u32 at `at` of `buf`, read byte by byte: the hot paths make no DataView per
 * read or per batch.
 */
export function readUint32(buf: Uint8Array, at: number): number {
  return ((buf[at] << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3]) >>> 0;
}

/** Writes `value` as a big-endian u32 at `at` of `buf`, byte by byte (see readUint32). */
export function writeUint32(buf: Uint8Array, at: number, value: number): void {
  buf[at] = value >>> 24;
  buf[at + 1] = value >>> 16;
  buf[at + 2] = value >>> 8;
  buf[at + 3] = value;
}

/** The big-endian u64 at `at` of `buf` (exact up to 2^53), byte by byte. */
export function readUint64(buf: Uint8Array, at: number): number {
  return readUint32(buf, at) * 0x1_0000_0000 + readUint32(buf, at + 4);
}

/** Writes `value` (safe up to 2^53) as a big-endian u64 at `at` of `buf`, byte by byte. */
export function writeUint64(buf: Uint8Array, at: number, value: number): void {
  writeUint32(buf, at, Math.floor(value / 0x1_0000_0000));
  writeUint32(buf, at + 4, value >>> 0);
}

// Float64s go through these eight bytes: a DataView per field would be an allocation per
// heartbeat on every idle connection.
const FLOAT_BYTES = new Uint8Array(8);
const FLOAT_VIEW = new DataView(FLOAT_BYTES.buffer);

/** The big-endian float64 at `at` of `buf`, without a DataView of its own. */
export function readFloat64(buf: Uint8Array, at: number): number {
  for (let i = 0; i < 8; i++) FLOAT_BYTES[i] = buf[at + i];
  return FLOAT_VIEW.getFloat64(0);
}

/** Writes `value` as a big-endian float64 at `at` of `buf`, without a DataView of its own. */
export function writeFloat64(buf: Uint8Array, at: number, value: number): void {
  FLOAT_VIEW.setFloat64(0, value);
  for (let i = 0; i < 8; i++) buf[at + i] = FLOAT_BYTES[i];
}

/**
 * Writes the preamble and checksum of a frame whose payload is already at `offset + 12`; with
 * `tail`, the payload's last `tail.length` bytes lie there instead (a body written in place).
 */
export function sealFrame(
  buf: Uint8Array,
  offset: number,
  tag: number,
  flags: number,
  payloadLength: number,
  tail?: Uint8Array,
): void {
  buf[offset] = tag;
  buf[offset + 1] = flags;
  buf[offset + 2] = 0;
  buf[offset + 3] = 0;
  writeUint32(buf, offset + 4, payloadLength);
  if (flags & FLAG_UNCHECKED) {
    writeUint32(buf, offset + 8, 0);
    return;
  }
  const here = payloadLength - (tail?.length ?? 0);
  const sum = flags & FLAG_CRC32 ? crc32 : crc32c;
  let crc = sum(0, buf, offset, offset + 8);
  crc = sum(crc, buf, offset + PREAMBLE_BYTES, offset + PREAMBLE_BYTES + here);
  if (tail) crc = sum(crc, tail);
  writeUint32(buf, offset + 8, crc);
}

/** Frames up to this size are encoded into {@linkcode frameArena}'s shared buffers. */
const SMALL_FRAME_BYTES = 1024;

/**
 * Encodes one frame with the given payload into a buffer of its own, or, if small, a piece of
 * a shared one that nothing else writes to.
 *
 * @example
 * ```ts
 * import { encodeFrame, Tag } from "./frame.ts";
 * const bytes = encodeFrame(Tag.Close, new TextEncoder().encode("bye"));
 * if (bytes.length !== 15) throw new Error("wrong length");
 * ```
 */
export function encodeFrame(tag: number, payload: Uint8Array, flags = 0): Uint8Array {
  const bytes = PREAMBLE_BYTES + payload.length;
  const buf = bytes <= SMALL_FRAME_BYTES ? frameArena.take(bytes) : new Uint8Array(bytes);
  buf.set(payload, PREAMBLE_BYTES);
  sealFrame(buf, 0, tag, flags, payload.length);
  return buf;
}

/**
 * A partial frame's buffer is allocated at its final size up to this many bytes; a larger one
 * grows as its bytes arrive.
 */
export const PREALLOC_MAX_BYTES = 256 * 1024;

/**
 * Called for each complete frame. `payload` is a view valid only during the call, unless
 * `owned` is true: then it lies in a buffer of its own that the decoder never touches again
 * (a frame that arrived across reads), and the handler may keep it without copying.
 */
export type FrameHandler = (
  tag: TagValue,
  flags: number,
  payload: Uint8Array,
  owned: boolean,
) => void;

/** Options of {@linkcode FrameDecoder}. */
export interface FrameDecoderOptions {
  /** Largest payload accepted; a larger length is rejected as soon as its preamble arrives. */
  maxFrameBytes: number;
  /** Whether the stream starts with the banner (true for links, false for tests). */
  expectBanner?: boolean;
}

/**
 * Incremental decoder: feed it chunks as they arrive, it calls back once per complete frame
 * and throws {@linkcode FrameError} on the first malformed byte. It copies whatever it keeps
 * between calls, so the caller may reuse a chunk's buffer once `push()` returns. Memory held is bounded by one
 * partial frame, which is itself bounded by `maxFrameBytes`.
 *
 * @example
 * ```ts
 * import { encodeFrame, FrameDecoder, Tag } from "./frame.ts";
 * const decoder = new FrameDecoder({ maxFrameBytes: 1024, expectBanner: false });
 * const bytes = encodeFrame(Tag.Close, new Uint8Array([1, 2]));
 * let seen = 0;
 * decoder.push(bytes.subarray(0, 5), () => seen++);
 * decoder.push(bytes.subarray(5), () => seen++);
 * if (seen !== 1) throw new Error("expected one frame");
 * ```
 */
export class FrameDecoder {
  #max: number;
  #needBanner: boolean;
  #allowUnchecked = false;
  // An incomplete frame (or banner, or preamble) is kept in a buffer of the size it needs and
  // completed from the next reads, copying only its own bytes: the rest of a read is decoded
  // where it lies. A frame is copied at most once, into a buffer of its final size.
  #partial: Uint8Array | null = null;
  #have = 0;
  /** Bytes the held banner, preamble or frame needs in all. */
  #need = 0;
  /** Protocol version announced by the peer's banner, once read. */
  peerVersion = 0;

  /** Creates a decoder. */
  constructor(options: FrameDecoderOptions) {
    this.#max = options.maxFrameBytes;
    this.#needBanner = options.expectBanner ?? true;
  }

  /** Bytes held for an incomplete frame. */
  get buffered(): number {
    return this.#have;
  }

  /** Bytes of memory held for an incomplete frame (its buffer, which may exceed `buffered`). */
  get holding(): number {
    return this.#partial?.length ?? 0;
  }

  /**
   * The largest frame payload accepted from now on, checked as each preamble arrives (a
   * session lowers it while it handshakes: handshake frames are small).
   */
  get maxFrameBytes(): number {
    return this.#max;
  }
  set maxFrameBytes(bytes: number) {
    this.#max = bytes;
  }

  /**
   * Whether frames flagged {@linkcode FLAG_UNCHECKED} are accepted (set once both ends of a
   * link that protects integrity agreed to skip checksums); until then they are malformed.
   */
  get allowUnchecked(): boolean {
    return this.#allowUnchecked;
  }
  set allowUnchecked(allow: boolean) {
    this.#allowUnchecked = allow;
  }

  /** Throws if the stream ended in the middle of a banner or frame. */
  end(): void {
    if (this.#have > 0) {
      throw new FrameError(
        "truncated",
        `Stream ended inside a frame: ${this.#have} bytes left over`,
      );
    }
  }

  /** Feeds one chunk; calls `onFrame` for each frame completed by it. */
  push(chunk: Uint8Array, onFrame: FrameHandler): void {
    let pos = 0;
    if (this.#partial !== null) {
      pos = this.#complete(chunk, onFrame);
      if (pos < 0) return;
    }
    if (this.#needBanner) {
      if (chunk.length - pos < BANNER.length) {
        this.#bannerPrefix(chunk, pos, chunk.length - pos); // wrong bytes fail at once
        this.#hold(chunk.subarray(pos), BANNER.length);
        return;
      }
      this.#banner(chunk, pos);
      pos += BANNER.length;
    }
    while (chunk.length - pos >= PREAMBLE_BYTES) {
      const length = this.#preamble(chunk, pos);
      const end = pos + PREAMBLE_BYTES + length;
      if (end > chunk.length) {
        this.#hold(chunk.subarray(pos), PREAMBLE_BYTES + length);
        return;
      }
      this.#check(chunk, pos, end);
      onFrame(
        chunk[pos] as TagValue,
        chunk[pos + 1],
        chunk.subarray(pos + PREAMBLE_BYTES, end),
        false,
      );
      pos = end;
    }
    if (pos < chunk.length) this.#hold(chunk.subarray(pos), PREAMBLE_BYTES);
  }

  /**
   * Checks the preamble at `pos` (tag, reserved bytes, length against the limit) and returns
   * the payload length.
   */
  #preamble(buf: Uint8Array, pos: number): number {
    const tag = buf[pos];
    if (!KNOWN_TAGS.has(tag)) {
      throw new FrameError("unknown-tag", `Unknown frame tag: ${tag}`);
    }
    if (buf[pos + 2] !== 0 || buf[pos + 3] !== 0) {
      throw new FrameError("malformed", "Reserved preamble bytes are not zero");
    }
    const length = readUint32(buf, pos + 4);
    // A Messages frame may not exceed what this node said it takes (see MESSAGES_FRAME_BYTES).
    const max = tag === Tag.Messages ? Math.min(this.#max, MESSAGES_FRAME_BYTES) : this.#max;
    if (length > max) {
      throw new FrameError("oversize", `Frame too large: ${length} bytes, limit ${max}`);
    }
    return length;
  }

  /** Keeps `rest` (a copy: the caller may reuse its buffer) in a buffer of `need` bytes. */
  #hold(rest: Uint8Array, need: number): void {
    this.#partial = this.#buffer(need, rest.length);
    this.#partial.set(rest);
    this.#have = rest.length;
    this.#need = need;
  }

  /**
   * A buffer for a partial frame of `need` bytes, `have` of them known: of its final size up
   * to {@linkcode PREALLOC_MAX_BYTES}; above that it starts there and grows as bytes arrive,
   * so a peer cannot make this node hold a large buffer with a 12-byte preamble.
   */
  #buffer(need: number, have: number): Uint8Array {
    return new Uint8Array(need <= PREALLOC_MAX_BYTES ? need : Math.max(PREALLOC_MAX_BYTES, have));
  }

  /**
   * Completes the held banner, preamble or frame from the start of `chunk`: returns where the
   * rest of the chunk starts, or -1 when the chunk was all used and more is needed.
   */
  #complete(chunk: Uint8Array, onFrame: FrameHandler): number {
    let pos = 0;
    for (;;) {
      const take = Math.min(this.#need - this.#have, chunk.length - pos);
      let partial = this.#partial!;
      if (this.#have + take > partial.length) {
        // Grow by doubling, never past the frame: the last size is the frame's own.
        const grown = new Uint8Array(
          Math.min(this.#need, Math.max(partial.length * 2, this.#have + take)),
        );
        grown.set(partial.subarray(0, this.#have));
        partial = this.#partial = grown;
      }
      partial.set(chunk.subarray(pos, pos + take), this.#have);
      this.#have += take;
      if (this.#needBanner) this.#bannerPrefix(partial, 0, Math.min(this.#have, BANNER.length - 1));
      pos += take;
      if (this.#have < this.#need) return -1;
      if (this.#needBanner) {
        this.#banner(partial, 0);
        this.#partial = null;
        this.#have = 0;
        return pos;
      }
      const length = this.#preamble(partial, 0);
      if (this.#need === PREAMBLE_BYTES && length > 0) {
        // The preamble is whole: now the frame's own buffer.
        this.#need = PREAMBLE_BYTES + length;
        this.#partial = this.#buffer(this.#need, PREAMBLE_BYTES);
        this.#partial.set(partial.subarray(0, PREAMBLE_BYTES));
        continue;
      }
      this.#partial = null;
      this.#have = 0;
      this.#check(partial, 0, partial.length);
      onFrame(partial[0] as TagValue, partial[1], partial.subarray(PREAMBLE_BYTES), true);
      return pos;
    }
  }

  /** Checks the checksum of the frame at `pos..end`, unless it is allowed to go without. */
  #check(buf: Uint8Array, pos: number, end: number): void {
    if (buf[pos + 1] & FLAG_UNCHECKED) {
      // Only Message frames may go unchecked, and only once both ends agreed.
      if (this.#allowUnchecked && (buf[pos] === Tag.Message || buf[pos] === Tag.Messages)) {
        return;
      }
      throw new FrameError(
        "malformed",
        "Frame without checksum on a link whose ends did not agree to skip it (or not a Message)",
      );
    }
    const sum = buf[pos + 1] & FLAG_CRC32 ? crc32 : crc32c;
    let crc = sum(0, buf, pos, pos + 8);
    crc = sum(crc, buf, pos + PREAMBLE_BYTES, end);
    const expected = readUint32(buf, pos + 8);
    if (crc !== expected) {
      throw new FrameError(
        "checksum",
        `Frame checksum mismatch: expected ${expected}, computed ${crc}`,
      );
    }
  }

  /** Checks the first `n` bytes at `pos` against the banner (its version byte excluded). */
  #bannerPrefix(buf: Uint8Array, pos: number, n: number): void {
    for (let i = 0; i < Math.min(n, BANNER.length - 1); i++) {
      if (buf[pos + i] !== BANNER[i]) {
        throw new FrameError("banner", "Wrong banner: the peer does not speak heartline");
      }
    }
  }

  /** Checks the whole banner at `pos` of `buf`, and the protocol version it announces. */
  #banner(buf: Uint8Array, pos: number): void {
    this.#bannerPrefix(buf, pos, BANNER.length - 1);
    const version = buf[pos + BANNER.length - 1];
    if (version !== PROTOCOL_VERSION) {
      throw new HandshakeRefusedError(
        "version",
        `Protocol version differs: local ${PROTOCOL_VERSION}, peer ${version}`,
      );
    }
    this.peerVersion = version;
    this.#needBanner = false;
  }
}
