/**
 * The receive path of a session: counting what arrives, checking each Message frame against
 * the sequence, copying its body out of the transport's buffer, delivering it, and only then
 * committing its sequence number.
 *
 * @module
 */

import type { Counters } from "../counters.ts";
import {
  decodeMessagesHeader,
  MESSAGE_HEADER_BYTES,
  MESSAGES_HEADER_BYTES,
  PRIORITIES,
  RECORD_HEADER_BYTES,
  recordLength,
  recordType,
} from "../protocol/message.ts";
import { Arena } from "../_buffer_pool.ts";
import type { InboundPort } from "./ports.ts";
import type { SessionSequence } from "./sequence.ts";
import type { SessionStats } from "./types.ts";

/** What a receiver works with. */
export interface ReceiverParts<H> {
  /** What the node knows the session by. */
  handle: H;
  /** The session's sequence. */
  seq: SessionSequence;
  /** Per-session counters. */
  stats: SessionStats;
  /** Messenger-wide counters. */
  counters: Counters;
  /** Where messages go. */
  inbound: InboundPort<H>;
  /** A piggybacked ack arrived (lossless policies). */
  ack(seq: number): void;
  /** Whether the session's policy is lossy (no acks, duplicates are errors). */
  lossy(): boolean;
}

/**
 * Receives for one session.
 *
 * @example
 * ```ts
 * import { Receiver } from "./receiver.ts";
 * import { SessionSequence } from "./sequence.ts";
 * import { newSessionStats } from "./types.ts";
 * import { newCounters } from "../counters.ts";
 * import { encodeMessages, messageFrameBytes } from "../protocol/message.ts";
 * const got: number[] = [];
 * const r = new Receiver({
 *   handle: "conn", seq: new SessionSequence(() => false), stats: newSessionStats(),
 *   counters: newCounters(), ack() {}, lossy: () => false,
 *   inbound: { deliver: (_h, type) => void got.push(type), backpressure: () => undefined },
 * });
 * const m = { type: 7, priority: 1, payload: new Uint8Array(3), seq: 1 };
 * r.chunk(100);
 * r.message(encodeMessages([m], messageFrameBytes(m.payload), 0).subarray(12));
 * if (got[0] !== 7) throw new Error("delivered");
 * ```
 */
export class Receiver<H> {
  readonly #p: ReceiverParts<H>;
  readonly #bodies = new BodyArena();
  /** Whether the read being decoded delivered a message. */
  #delivered = false;

  /** A receiver over `parts`. */
  constructor(parts: ReceiverParts<H>) {
    this.#p = parts;
  }

  /** A read of `bytes` arrived (before its frames are decoded). */
  chunk(bytes: number): void {
    this.#p.stats.bytesReceived += bytes;
    this.#p.counters.bytesReceived += bytes;
    this.#delivered = false;
  }

  /**
   * The read's frames are handled: if it brought no message (heartbeats, acks), the connection
   * is quiet and the bodies' buffer goes, so an idle connection holds none.
   */
  chunkDone(): void {
    if (!this.#delivered) this.#bodies.release();
  }

  /** The link went: the bodies' buffer goes with it (a standby session holds none). */
  release(): void {
    this.#bodies.release();
  }

  /**
   * One Message frame's payload. Throws `FrameError` for a gap or a malformed header. With
   * `owned`, the payload is a buffer of its own (a frame assembled across reads), and the body
   * is handed on as a view of it, without a copy.
   */
  message(payload: Uint8Array, owned = false): void {
    const p = this.#p;
    const h = p.seq.accept(payload);
    if (h === null) {
      p.stats.duplicatesDropped++; // a replay of something already delivered
      return;
    }
    if (h.ack > 0 && !p.lossy()) p.ack(h.ack);
    const body = owned
      ? payload.subarray(MESSAGE_HEADER_BYTES)
      : this.#bodies.copy(payload, MESSAGE_HEADER_BYTES);
    this.#delivered = true;
    p.inbound.deliver(p.handle, h.type, PRIORITIES[h.priority], body, h.seq);
    p.seq.received(h.seq); // only once delivered (see SessionSequence.received)
    p.stats.messagesReceived++;
    p.counters.messagesReceived[h.priority]++;
  }

  /**
   * One Messages frame's payload: every record is checked first (a malformed frame delivers
   * nothing), replayed duplicates are dropped, and each body is a view of one copy of the
   * frame's records (none with `owned`), in the session's arena if they are small. Each message's
   * sequence number is committed as it is delivered.
   */
  messages(payload: Uint8Array, owned = false): void {
    const p = this.#p;
    const h = decodeMessagesHeader(payload);
    const skip = p.seq.acceptRun(h.seq, h.count);
    if (skip > 0) p.stats.duplicatesDropped += skip;
    if (skip === h.count) return;
    if (h.ack > 0 && !p.lossy()) p.ack(h.ack);
    let at = MESSAGES_HEADER_BYTES;
    for (let i = 0; i < skip; i++) {
      at += RECORD_HEADER_BYTES + recordLength(payload, at);
    }
    // One copy of what is delivered, its bodies views of it: the frame lies in the transport's
    // read buffer, which the next read reuses.
    const buf = owned ? payload : this.#bodies.copy(payload, at);
    this.#delivered = true;
    if (!owned) at = 0;
    const { inbound, handle, seq, stats, counters } = p;
    for (let s = h.seq + skip; at < buf.length; s++) {
      const priority = buf[at];
      const length = recordLength(buf, at);
      const type = recordType(buf, at);
      const start = at + RECORD_HEADER_BYTES;
      at = start + length;
      // (An empty body gets a buffer of its own, as a lone one does: see BodyArena.copy.)
      const body = length > 0 ? buf.subarray(start, at) : new Uint8Array(0);
      inbound.deliver(handle, type, PRIORITIES[priority], body, s);
      seq.received(s); // only once delivered (see SessionSequence.received)
      stats.messagesReceived++;
      counters.messagesReceived[priority]++;
    }
  }
}

/** Copies up to this size are packed into arenas; larger ones get a buffer of their own. */
const ARENA_MAX_BODY = 4096;

/**
 * Copies received bodies out of the transport's buffers, one per session. Small copies are
 * packed into arenas (see {@linkcode Arena}: a new ArrayBuffer per body would be the largest
 * cost of a small message). Its buffers start at 256 bytes and double with each new one up to
 * 8 KiB, so a busy connection packs a hundred 64 B replies into one and an occasional message
 * gets a small one. A session lets go of its buffer at the end of a read that brought no
 * message, and when its link goes, so an idle connection holds none. Bodies share buffers only
 * with bodies of the same connection: one connection's bytes never reach the application
 * through another's body.
 *
 * @example
 * ```ts
 * import { BodyArena } from "./receiver.ts";
 * const arena = new BodyArena();
 * const a = arena.copy(new Uint8Array(24 + 64).fill(7), 24);
 * const b = arena.copy(new Uint8Array(24 + 64).fill(8), 24);
 * if (a.buffer !== b.buffer || a[63] !== 7 || b[0] !== 8) throw new Error("packed copies");
 * ```
 */
export class BodyArena {
  #arena = new Arena(256, 8 * 1024);

  /** A copy of `payload` from `offset` on. */
  copy(payload: Uint8Array, offset: number): Uint8Array {
    const size = payload.length - offset;
    if (size > ARENA_MAX_BODY) return payload.slice(offset);
    // Never a piece of a shared buffer when empty: an application may transfer its buffer.
    if (size === 0) return new Uint8Array(0);
    const body = this.#arena.take(size);
    body.set(payload.subarray(offset));
    return body;
  }

  /** Lets go of the current buffer (the bodies in it keep it alive). */
  release(): void {
    this.#arena.release();
  }
}
