/**
 * The writing side of a session: one write loop per session that gathers control frames,
 * replayed messages and queued messages (strict priority) into batches, and the arena that
 * received bodies are copied into.
 *
 * @module
 */

import type { Counters } from "../counters.ts";
import type { Limits } from "../options.ts";
import { BANNER, Tag } from "../protocol/frame.ts";
import { encodeMessages, messageFrameBytes, type OutgoingMessage } from "../protocol/message.ts";
import type { Link } from "../../transports/types.ts";
import type { ReplayBuffer } from "./replay_buffer.ts";
import type { SendQueue } from "./send_queue.ts";

/** Bytes of data frames gathered into one write. */
export const BATCH_BYTES = 256 * 1024;

/** The session as its writer sees it. */
export interface WriterSession {
  /** The link to write to (null while there is none). */
  readonly link: Link | null;
  /** Whether messages may be written now (open or closing). */
  readonly writable: boolean;
  /** Whether a Close frame is due (closing, queue written). */
  readonly closePending: boolean;
  /** The ack every written message carries. */
  readonly ackToSend: number;
  /** Lossy policies keep no replay buffer. */
  readonly policy: { readonly lossy: boolean };
  /** The Close frame, once, when it is due. */
  takeCloseFrame(): Uint8Array | undefined;
  /** The next sequence number. */
  nextSeq(): number;
  /** Messages carrying `seq` as their ack were written. */
  acked(seq: number): void;
  /** A write pass ended on `link`. */
  written(link: Link): void;
  /** Writing to `link` failed. */
  writeFailed(link: Link, error: Error): void;
}

/** What a writer works with. */
export interface WriterParts {
  /** The send queue. */
  queue: SendQueue;
  /** The replay buffer. */
  replay: ReplayBuffer;
  /** Per-session counters. */
  stats: { messagesSent: number; bytesSent: number; framesSent: number; replayed: number };
  /** Messenger-wide counters. */
  counters: Counters;
  /** Limits. */
  limits: Limits;
  /** The session. */
  session: WriterSession;
}

/** The write loop of one session. */
export class Writer {
  #p: WriterParts;
  #writing = false;
  #scheduled = false;

  /** A writer over `parts`. */
  constructor(parts: WriterParts) {
    this.#p = parts;
  }

  /** Whether a write is in progress. */
  get busy(): boolean {
    return this.#writing;
  }

  /** Runs the write loop soon (once per microtask, however often it is asked). */
  schedule(): void {
    if (this.#scheduled || this.#writing || !this.#p.session.link) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      this.#flush();
    });
  }

  #hasOutgoing(): boolean {
    const { queue, replay, session, limits } = this.#p;
    if (queue.hasControl) return true;
    if (!session.writable) return false;
    if (replay.replayPending) return true;
    if (queue.bytes > 0 && replay.bytes < limits.maxUnackedBytes) return true;
    return session.closePending;
  }

  async #flush(): Promise<void> {
    const session = this.#p.session;
    const link = session.link;
    if (this.#writing || !link) return;
    this.#writing = true;
    try {
      while (link === session.link && this.#hasOutgoing()) {
        const batch = this.#buildBatch();
        let bytes = 0;
        for (const chunk of batch) bytes += chunk.length;
        await link.write(batch);
        this.#p.stats.bytesSent += bytes;
        this.#p.counters.bytesSent += bytes;
      }
    } catch (error) {
      session.writeFailed(link, error as Error);
    } finally {
      this.#writing = false;
    }
    session.written(link);
  }

  /**
   * Control frames first; then, in an open or closing session, replayed messages, then queued
   * messages by strict priority, up to BATCH_BYTES (and, for lossless policies, only while the
   * replay buffer has room: a full buffer holds messages in the queue, so send() waits); then
   * the Close frame once the queue is written.
   */
  #buildBatch(): Uint8Array[] {
    const { queue, replay, session, stats, counters, limits } = this.#p;
    const batch = queue.takeControl();
    stats.framesSent += batch.length;
    for (const frame of batch) if (frame !== BANNER) counters.framesSent[frame[0]]++;
    if (!session.writable) return batch;
    const taken: OutgoingMessage[] = [];
    let total = 0;
    while (total < BATCH_BYTES) {
      const m = replay.nextReplay();
      if (!m) break;
      taken.push(m);
      total += messageFrameBytes(m.payload);
    }
    const replayed = taken.length;
    const lossless = !session.policy.lossy;
    let fresh = 0;
    const room = () => total < BATCH_BYTES && (!lossless || replay.bytes < limits.maxUnackedBytes);
    while (room()) {
      const m = queue.shift(room);
      if (!m) break;
      m.seq = session.nextSeq();
      const size = messageFrameBytes(m.payload);
      total += size;
      fresh += size;
      taken.push(m);
      if (lossless) replay.push(m);
    }
    if (taken.length > 0) {
      const ack = session.ackToSend;
      batch.push(encodeMessages(taken, total, ack));
      session.acked(ack);
      stats.messagesSent += taken.length - replayed;
      stats.framesSent += taken.length;
      stats.replayed += replayed;
      counters.framesSent[Tag.Message] += taken.length;
      counters.replayed += replayed;
      for (let i = replayed; i < taken.length; i++) counters.messagesSent[taken[i].priority]++;
      queue.taken(fresh, limits.maxQueueBytes);
    }
    const close = session.takeCloseFrame();
    if (close) {
      batch.push(close);
      stats.framesSent++;
      counters.framesSent[Tag.Close]++;
    }
    return batch;
  }
}

/** Bodies up to this size are packed into a shared per-read arena. */
const ARENA_MAX_BODY = 4096;
const ARENA_MIN_BYTES = 256;

/**
 * Copies received bodies out of the transport's buffers. Small bodies are packed into one
 * arena per read instead of one allocation each (the hot path of small messages), so a body
 * may share its ArrayBuffer with its neighbours from the same read.
 *
 * @example
 * ```ts
 * import { BodyArena } from "./writer.ts";
 * const arena = new BodyArena();
 * arena.readLength = 10; // a read shorter than the body that it completed
 * const body = arena.copy(new Uint8Array(1024).fill(7), 24);
 * if (body.length !== 1000 || body[999] !== 7) throw new Error("whole body");
 * ```
 */
export class BodyArena {
  /** Length of the read being decoded: sizes the next arena. */
  readLength = 0;
  #arena = new Uint8Array(0);
  #pos = 0;

  /** A copy of `payload` from `offset` on. */
  copy(payload: Uint8Array, offset: number): Uint8Array {
    const size = payload.length - offset;
    if (size > ARENA_MAX_BODY) return payload.slice(offset);
    if (this.#arena.length - this.#pos < size) {
      // A body completed by a read shorter than itself is larger than that read: size the
      // arena by both.
      this.#arena = new Uint8Array(Math.max(this.readLength, size, ARENA_MIN_BYTES));
      this.#pos = 0;
    }
    const body = this.#arena.subarray(this.#pos, this.#pos + size);
    body.set(payload.subarray(offset));
    this.#pos += size;
    return body;
  }
}
