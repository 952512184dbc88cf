/**
 * The replay buffer of a lossless session: what was written and not yet acknowledged, in
 * sequence order. An ack trims it; a new link rewinds it, so everything unacknowledged is
 * written again (the receiver drops what it already had by sequence number).
 *
 * Small messages are kept as the Messages frames they went out in, not as message objects: a
 * fast sender keeps up to `maxUnackedBytes` of messages alive for a round trip, and tens of
 * thousands of small objects that outlive the young generation cost the collector far more
 * than a few buffers it never traces. The frames are copied one after another into chunks
 * sized to what the buffer holds, in powers of two: a lone small frame gets a 4 KiB chunk, a
 * backlog chunks of up to 256 KiB. They come from a process-wide pool (at most 32 free chunks
 * of each size, about 16 MiB in all) and go back to it once all of their frames are
 * acknowledged, so a steady stream reuses the same few; a buffer holds none once everything in it is
 * acknowledged, and at least 4 KiB while anything is not. Messages written as Message frames
 * of their own (bodies of 128 KiB or more, records larger than the peer takes in a Messages
 * frame, or every message to a peer that takes none) are kept as they are: their bodies are
 * not copied, and they count the bytes counted when they were sent, whatever the application
 * does to their bodies later.
 *
 * @module
 */

import { decodeWrittenRun, type OutgoingMessage } from "../protocol/message.ts";
import type { QueuedMessage } from "./send_queue.ts";
import { emptyRing, Ring } from "../_ring.ts";
import { replayChunks } from "../_buffer_pool.ts";

/** Most bytes of a chunk that written frames are copied into (its pool's largest size). */
export const REPLAY_CHUNK_BYTES = 256 * 1024;

/** A chunk of copied frames, and how many of them are still unacknowledged. */
export class ReplayChunk {
  /** Bytes of `buf` in use. */
  used = 0;
  /** Frames in it not yet acknowledged. */
  live = 0;
  /** A chunk over `buf`. */
  constructor(readonly buf: Uint8Array) {}
}

/**
 * A Messages frame as it was written: its bytes (a copy this buffer owns) and the sequence
 * numbers of its first and last record. `seq` is the last one, as for a message, so an ack
 * drops the frame once it covers all of its records.
 */
export class WrittenRun {
  /** A written frame of records `first..seq`, kept in `chunk`. */
  constructor(
    readonly frame: Uint8Array,
    readonly first: number,
    readonly seq: number,
    /** Where `frame` lies. */
    readonly chunk: ReplayChunk,
  ) {}

  /** Records in the frame. */
  get count(): number {
    return this.seq - this.first + 1;
  }
}

/** What the replay buffer holds: a message written alone, or a Messages frame. */
export type Written = QueuedMessage | WrittenRun;

/** How many messages `w` holds. */
export function writtenRecords(w: Written): number {
  return w instanceof WrittenRun ? w.count : 1;
}

/** Its bytes on the wire (a message's as counted when it was sent). */
export function writtenBytes(w: Written): number {
  return w instanceof WrittenRun ? w.frame.length : w.bytes;
}

/**
 * Written, unacknowledged messages, and how far the current link has written them.
 *
 * @example
 * ```ts
 * import { ReplayBuffer } from "./replay_buffer.ts";
 * const r = new ReplayBuffer();
 * for (let seq = 1; seq <= 3; seq++) {
 *   r.push({ type: 0, priority: 1, payload: new Uint8Array(1), seq, bytes: 37 });
 * }
 * r.ack(2);
 * r.rewind();
 * if (r.nextReplay()?.seq !== 3 || r.nextReplay() !== undefined) throw new Error("replay");
 * ```
 */
export class ReplayBuffer {
  #items: Ring<Written> = emptyRing(); // its own ring from the first item (see emptyRing)
  /** How many of the oldest items went out on the current link. */
  #written = 0;
  #bytes = 0;
  /** Messages in the items, and how many at the head of the oldest frame are acknowledged. */
  #records = 0;
  #headAcked = 0;
  /** The chunk new frames are copied into. */
  #tail: ReplayChunk | null = null;

  /** Unacknowledged messages. */
  get count(): number {
    return this.#records - this.#headAcked;
  }

  /** Their bytes on the wire (a frame counts whole until all of it is acknowledged). */
  get bytes(): number {
    return this.#bytes;
  }

  /** Sequence number of the newest message held (0 when empty). */
  get lastSeq(): number {
    return this.#items.at(this.#items.length - 1)?.seq ?? 0;
  }

  /** Whether messages wait to be written again on the current link. */
  get replayPending(): boolean {
    return this.#written < this.#items.length;
  }

  /** Records a message just written on the current link as a Message frame of its own. */
  push(message: QueuedMessage): void {
    this.#add(message);
  }

  /**
   * Records a Messages frame just written on the current link, records `first..last`: keeps
   * a copy of `frame` (the caller may reuse its buffer).
   */
  pushRun(frame: Uint8Array, first: number, last: number): void {
    let tail = this.#tail;
    if (tail === null || tail.used + frame.length > tail.buf.length) {
      // Room for twice what is held: a lone frame gets a small chunk, a backlog large ones.
      const want = Math.max(frame.length, Math.min(REPLAY_CHUNK_BYTES, 2 * this.#bytes));
      tail = this.#tail = new ReplayChunk(replayChunks.take(want));
    }
    const copy = tail.buf.subarray(tail.used, tail.used + frame.length);
    copy.set(frame);
    tail.used += frame.length;
    tail.live++;
    this.#add(new WrittenRun(copy, first, last, tail));
  }

  /** `w` left the buffer: its chunk goes back to the pool once nothing in it is left. */
  #release(w: Written): void {
    if (!(w instanceof WrittenRun) || --w.chunk.live > 0) return;
    if (w.chunk === this.#tail) this.#tail = null;
    replayChunks.give(w.chunk.buf);
  }

  #add(w: Written): void {
    if (this.#items === emptyRing()) this.#items = new Ring();
    this.#items.push(w);
    this.#written = this.#items.length;
    this.#bytes += writtenBytes(w);
    this.#records += writtenRecords(w);
  }

  /** The peer has everything up to `seq`: drop it (the caller checked `seq` is not ahead). */
  ack(seq: number): void {
    const items = this.#items;
    let w = items.peek();
    for (; w !== undefined && w.seq <= seq; w = items.peek()) {
      this.#bytes -= writtenBytes(w);
      this.#records -= writtenRecords(w);
      items.shift();
      this.#release(w);
      if (this.#written > 0) this.#written--;
    }
    // A frame acknowledged in part stays whole; its head no longer counts as unacknowledged.
    this.#headAcked = w instanceof WrittenRun && w.first <= seq ? seq - w.first + 1 : 0;
  }

  /** A new link: everything unacknowledged is written again, oldest first. */
  rewind(): void {
    this.#written = 0;
  }

  /**
   * The next item to write again on this link, if any. A frame is written whole: the
   * receiver drops the records it already has.
   */
  nextReplay(): Written | undefined {
    if (this.#written >= this.#items.length) return undefined;
    return this.#items.at(this.#written++);
  }

  /** The item `nextReplay()` would return, left in place. */
  peekReplay(): Written | undefined {
    return this.#items.at(this.#written);
  }

  /**
   * Empties the buffer and returns the unacknowledged messages it held, in sequence order
   * (those of a frame with bodies of their own).
   */
  takeAll(): OutgoingMessage[] {
    const out: OutgoingMessage[] = [];
    const skip = this.#headAcked;
    let first = true;
    for (const w of this.#items.drain()) {
      if (w instanceof WrittenRun) {
        const messages = decodeWrittenRun(w.frame);
        for (let i = first ? skip : 0; i < messages.length; i++) out.push(messages[i]);
        this.#release(w);
      } else {
        out.push(w);
      }
      first = false;
    }
    this.#written = 0;
    this.#bytes = 0;
    this.#records = 0;
    this.#headAcked = 0;
    return out;
  }
}
