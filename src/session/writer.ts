/**
 * The writing side of a session: one write loop per session that gathers control frames,
 * replayed messages and queued messages (strict priority) into batches.
 *
 * @module
 */

import type { Counters } from "../counters.ts";
import { UnwritableMessageError } from "../errors.ts";
import { writeBuffers } from "../_buffer_pool.ts";
import type { Limits } from "../options.ts";
import { BANNER, FLAG_CRC32, FLAG_UNCHECKED, PREAMBLE_BYTES, Tag } from "../protocol/frame.ts";
import {
  type Alloc,
  decodeWrittenRun,
  encodedBytes,
  type EncodedMessages,
  encodeOutgoing,
  type KeepWritten,
  messageFrameBytes,
  type OutgoingMessage,
  resealRun,
} from "../protocol/message.ts";
import { type Written, writtenBytes, writtenRecords, WrittenRun } from "./replay_buffer.ts";
import type { Link } from "../../transports/types.ts";
import type { SessionSequence } from "./sequence.ts";
import type { Close } from "./close.ts";
import type { QueuedMessage, SendQueue } from "./send_queue.ts";

/** One turn of the event loop later, where the runtime has it (Deno and Node; not browsers). */
const nextTurn: ((fn: () => void) => unknown) | undefined =
  (globalThis as { setImmediate?: (fn: () => void) => unknown }).setImmediate;

/**
 * What a batch writes again: kept items, and the records of a kept frame larger than the
 * peer now takes, decoded to be encoded again.
 */
type Again = Written | OutgoingMessage;

/** No replayed items (most batches): shared, never written to. */
const NOTHING_AGAIN: Again[] = [];

/** Most bytes of data frames gathered into one write. */
export const BATCH_BYTES = 256 * 1024;

/**
 * Longest a write should take. A control frame (a heartbeat, an ack) queued during a write
 * goes in the next one, so on a slow or saturated link a 256 KiB write would hold heartbeats
 * back for as long as the link takes to carry it (seconds at a few hundred kB/s): the writer
 * sizes its batches to what the link carried in this long, as Linux's byte queue limits do.
 * A single message larger than the batch still goes whole: on a slow link a heartbeat waits
 * behind it for as long as the link takes to carry it (a 1 MiB body at 50 kB/s: 20 s).
 */
export const WRITE_TARGET_MS = 10;

/**
 * A write that took at least this long waited for the link: the kernel took its bytes only as
 * earlier ones left, which needs the peer's kernel to acknowledge them and open its window.
 * Its completion is reported as `delivered`, proof that the way to the peer works even while
 * the peer's heartbeats, and so its echoes, wait behind its own data.
 */
export const DELIVERY_WAIT_MS = 20;

/** Fewest bytes a batch is sized down to (a write of this size is cheap anywhere). */
export const MIN_BATCH_BYTES = 4 * 1024;

/** The session as its writer sees it. */
export interface WriterSession {
  /** The link to write to (null while there is none). */
  readonly link: Link | null;
  /** Whether messages may be written now (open or closing). */
  readonly writable: boolean;
  /** Lossy policies keep no replay buffer. */
  readonly policy: { readonly lossy: boolean };
  /** A write pass ended on `link`. */
  written(link: Link): void;
  /** Writing to `link` failed. */
  writeFailed(link: Link, error: Error): void;
  /** A write that had waited for the link completed (see DELIVERY_WAIT_MS). */
  delivered(link: Link): void;
  /** A defect surfaced while settling a write pass: reported, and the session ends. */
  defect(error: unknown): void;
}

/** What a writer works with. */
export interface WriterParts {
  /** The send queue. */
  queue: SendQueue;
  /** Sequence numbers, acks and the replay buffer. */
  seq: SessionSequence;
  /**
   * The orderly close in progress, if any: its Close frame goes once the queue is written and
   * nothing waits to be written again on this link.
   */
  closing: () => Close | null;
  /** Per-session counters. */
  stats: { messagesSent: number; bytesSent: number; framesSent: number; replayed: number };
  /** Messenger-wide counters. */
  counters: Counters;
  /** Limits. */
  limits: Limits;
  /** The session. */
  session: WriterSession;
  /**
   * Checksum flags of Message frames on the link: `FLAG_UNCHECKED` (both ends agreed in the
   * handshake to skip them), `FLAG_CRC32` (the peer accepts CRC-32) or 0 (CRC-32C).
   */
  messageFlags: () => number;
  /** Most payload bytes of a Messages frame the peer takes on the link (0 or absent: none). */
  batchLimit?: () => number;
  /** Clock for timing writes, ms (default `performance.now`; tests inject their own). */
  now?: () => number;
}

/** The write loop of one session. */
export class Writer {
  #p: WriterParts;
  #writing = false;
  #scheduled = false;
  #batchBytes = MIN_BATCH_BYTES;
  #windowBytes = 0;
  #windowMs = 0;
  /** Bytes of messages in the batch being built, and of those taken from the queue. */
  #total = 0;
  #fresh = 0;
  /**
   * Whether the batch being built has room for another message (and, for lossless policies,
   * the replay buffer too, which takes the batch's fresh messages once they are encoded).
   */
  #room(): boolean {
    const { session, seq, limits } = this.#p;
    return this.#total < this.#batchBytes &&
      (session.policy.lossy || seq.replay.bytes + this.#fresh < limits.maxUnackedBytes);
  }
  /** The batch's messages taken from the queue (one array, emptied after each batch). */
  #taken: QueuedMessage[] = [];
  /**
   * A lossless session keeps what it writes, as it is encoded, for replay. Made with the first
   * batch of messages, as are the other handlers of encoding (`#alloc`, `#takes`): a
   * connection that only ever carries heartbeats never needs them (ten thousand idle
   * connections, a few hundred kilobytes of heap).
   */
  #keep: KeepWritten<QueuedMessage> | null = null;
  #keeper(): KeepWritten<QueuedMessage> {
    return this.#keep ??= {
      frame: (frame, first, last) => this.#p.seq.replay.pushRun(frame, first, last),
      message: (m) => this.#p.seq.replay.push(m),
    };
  }
  /** The link the batch size was measured on. */
  #sizedFor: Link | null = null;
  /**
   * Where batches are encoded while a write pass lasts: a link is done with a batch's bytes
   * once its write resolves, so the next batch reuses them instead of allocating (and leaving
   * the garbage collector) a buffer per write. Taken from the process's pool of write buffers
   * for a pass and given back when it ends, so an idle session holds none.
   */
  #scratch: Uint8Array | null = null;
  #scratchUsed = 0;
  #alloc: Alloc | null = null;
  /** Pieces of the pass's scratch buffer, one after another (the handler, made when needed). */
  #allocator(): Alloc {
    return this.#alloc ??= (bytes) => {
      const scratch = this.#scratch!;
      const piece = scratch.subarray(this.#scratchUsed, this.#scratchUsed + bytes);
      this.#scratchUsed += bytes;
      return piece;
    };
  }
  #now: () => number;

  /** A writer over `parts`. */
  constructor(parts: WriterParts) {
    this.#p = parts;
    this.#now = parts.now ?? (() => performance.now());
  }

  /** Bytes of data the next batch may gather (see WRITE_TARGET_MS). */
  get batchBytes(): number {
    return this.#batchBytes;
  }

  /** Whether a write is in progress. */
  get busy(): boolean {
    return this.#writing;
  }

  /** Runs the write loop soon (once per microtask, however often it is asked). */
  schedule(): void {
    if (this.#scheduled || this.#writing || !this.#p.session.link) return;
    this.#scheduled = true;
    queueMicrotask(this.#run);
  }

  // A write pass is a chain of handlers made once per writer, not an async function per pass:
  // writes are the hot path, and a lone message (a ping, a reply) is a pass of its own.
  #run = (): void => {
    this.#scheduled = false;
    const link = this.#p.session.link;
    if (this.#writing || !link) return;
    if (link !== this.#sizedFor) {
      // A new link has said nothing of its speed yet: start small again.
      this.#sizedFor = link;
      this.#batchBytes = MIN_BATCH_BYTES;
      this.#windowBytes = 0;
      this.#windowMs = 0;
    }
    this.#writing = true;
    this.#passLink = link;
    this.#next();
  };
  #defect(error: unknown): void {
    try {
      this.#p.session.defect(error);
    } catch {
      // Reporting the defect threw too (a throwing logger): nothing is left to tell, and the
      // writer's handlers must not reject unhandled or throw from a microtask.
    }
  }

  /** The link of the pass in progress. */
  #passLink: Link | null = null;
  /** Bytes and start time of the write in progress. */
  #passBytes = 0;
  #passStarted = 0;

  #hasOutgoing(): boolean {
    const { queue, session, limits } = this.#p;
    const replay = this.#p.seq.replay;
    if (queue.hasControl) return true;
    if (!session.writable) return false;
    if (replay.replayPending) return true;
    if (queue.bytes > 0 && replay.bytes < limits.maxUnackedBytes) return true;
    return this.#p.closing()?.due(queue.bytes) ?? false;
  }

  /** Writes the next batch of the pass, or ends it (nothing left, or the link changed). */
  #next(): void {
    const link = this.#passLink!;
    let failure: Error | null = null;
    try {
      if (this.#unwritable === null && link === this.#p.session.link && this.#hasOutgoing()) {
        const batch = this.#buildBatch();
        // Nothing to write (an unwritable message at the head): the pass ends, never an
        // empty write per turn of the event loop.
        if (batch.length === 0) return this.#endPass(link, this.#unwritable);
        let bytes = 0;
        for (const chunk of batch) bytes += chunk.length;
        this.#passBytes = bytes;
        // With callbacks where the link has them: no promise per write.
        if (link.writeThen) link.writeThen(batch, this.#wrote, this.#writeRejected);
        else link.write(batch).then(this.#wrote, this.#writeRejected);
        // Timed from after the call: its clock read is not in the way of the bytes, and what
        // it leaves out (the call's own part of the write) is microseconds against the
        // milliseconds a write is sized by. The write is under way: a clock that throws is a
        // defect to report, not a failure of this pass, which the write's outcome ends.
        try {
          this.#passStarted = this.#now();
        } catch (error) {
          this.#passStarted = NaN; // this write is not timed
          this.#defect(error);
        }
        return;
      }
    } catch (error) {
      failure = error as Error;
    }
    // What came before an unwritable message is written: now the pass fails with it.
    this.#endPass(link, failure ?? this.#unwritable); // outside the try: a pass ends once
  }

  #wrote = (): void => {
    const link = this.#passLink!;
    let failure: Error | null = null;
    try {
      const bytes = this.#passBytes, ms = this.#now() - this.#passStarted;
      if (!Number.isNaN(ms)) {
        this.#fit(bytes, ms);
        if (ms >= DELIVERY_WAIT_MS) this.#delivered(link);
      }
      this.#p.stats.bytesSent += bytes;
      this.#p.counters.bytesSent += bytes;
    } catch (error) {
      failure = error as Error;
    }
    if (failure) this.#endPass(link, failure);
    else if (this.#gathers()) nextTurn!(this.#resume ??= () => this.#next());
    else this.#next();
  };

  /** Goes on with the pass after a turn of the event loop (see `#gathers`); made when needed. */
  #resume: (() => void) | null = null;

  /**
   * Whether the pass waits for the event loop to turn before its next batch: a write that
   * completed at once while only a little is queued means the messages come from a producer
   * running in microtasks, which would otherwise get a write syscall for every few messages
   * (each write's completion lets it queue about three). Waiting one turn (a `setImmediate`,
   * about 1.5 us) lets it fill a batch. Control frames never wait; a runtime without
   * `setImmediate` (a browser) writes at once.
   */
  #gathers(): boolean {
    const queue = this.#p.queue;
    return nextTurn !== undefined && !queue.hasControl && queue.bytes > 0 &&
      queue.bytes < this.#batchBytes >> 2;
  }

  #writeRejected = (error: unknown): void => this.#endPass(this.#passLink!, error as Error);

  /**
   * Ends the pass: a failed write (or a fault while building a batch) is reported first,
   * then the pass's buffer goes back to the pool and the session hears that writing stopped.
   * Never throws: what the session's handlers throw is a defect.
   */
  #endPass(link: Link, error: Error | null): void {
    this.#unwritable = null; // found again by the next pass, if the session goes on
    let defect: { error: unknown } | null = null;
    if (error) {
      try {
        this.#p.session.writeFailed(link, error);
      } catch (thrown) {
        defect = { error: thrown };
      }
    }
    this.#writing = false;
    this.#passLink = null;
    if (this.#scratch !== null) writeBuffers.give(this.#scratch);
    this.#scratch = null;
    if (!defect) {
      try {
        this.#p.session.written(link);
      } catch (thrown) {
        defect = { error: thrown };
      }
    }
    if (defect) this.#defect(defect.error);
  }

  /** Reports a write that waited for the link; a throwing observer is a defect, not a fault. */
  #delivered(link: Link): void {
    try {
      this.#p.session.delivered(link);
    } catch (error) {
      this.#defect(error);
    }
  }

  /**
   * Sizes the next batches to what the link carried in WRITE_TARGET_MS. One write says little:
   * a socket with room takes a batch at once, the next one then waits for the link, so the
   * rate is taken over a window of writes (until it holds BATCH_BYTES or 2 x the target).
   * Batches start small and at most double per window, as TCP's slow start does: a link that
   * carried only heartbeats has said nothing of its speed, and a first 256 KiB write on a
   * saturated one would hold the next heartbeat for seconds.
   */
  #fit(bytes: number, ms: number): void {
    this.#windowBytes += bytes;
    this.#windowMs += ms;
    if (this.#windowBytes < BATCH_BYTES && this.#windowMs < 2 * WRITE_TARGET_MS) return;
    const fits = this.#windowMs > 0
      ? (this.#windowBytes / this.#windowMs) * WRITE_TARGET_MS
      : BATCH_BYTES;
    const next = Math.min(fits, 2 * this.#batchBytes, BATCH_BYTES);
    this.#batchBytes = Math.max(MIN_BATCH_BYTES, Math.floor(next));
    this.#windowBytes = 0;
    this.#windowMs = 0;
  }

  /**
   * Control frames first; then, in an open or closing session, replayed messages, then queued
   * messages by strict priority, up to `batchBytes` (and, for lossless policies, only while the
   * replay buffer has room: a full buffer holds messages in the queue, so send() waits); then
   * the Close frame once the queue is written.
   */
  #buildBatch(): Uint8Array[] {
    const { queue, seq, session, stats, counters, limits } = this.#p;
    const replay = seq.replay;
    const control = queue.takeControl();
    stats.framesSent += control.length;
    for (const frame of control) if (frame !== BANNER) counters.framesSent[frame[0]]++;
    if (!session.writable) return control;
    const limit = this.#batchBytes;
    this.#total = 0;
    this.#fresh = 0;
    const again: Again[] = replay.replayPending ? [] : NOTHING_AGAIN;
    let replayed = 0;
    while (this.#total < limit) {
      const w = replay.peekReplay(); // (none unless a replay is pending)
      if (!w) break;
      // A message kept as it was sent whose body changed cannot go, nor anything after it.
      if (!(w instanceof WrittenRun) && this.#changed(w)) break;
      replay.nextReplay();
      if (w instanceof WrittenRun && w.frame.length - PREAMBLE_BYTES > this.#batchLimit()) {
        // The peer now takes smaller Messages frames than this one (or none): its records
        // are encoded again for what it takes.
        for (const m of decodeWrittenRun(w.frame)) again.push(m);
      } else {
        again.push(w);
      }
      this.#total += writtenBytes(w);
      replayed += writtenRecords(w);
    }
    const taken = this.#taken;
    taken.length = 0; // every batch starts with none
    // (Not at all with nothing queued: a pass of heartbeats makes no handler for messages.)
    while (this.#unwritable === null && queue.bytes > 0 && this.#room()) {
      const m = queue.shift(this.#takes ??= (next) => !this.#changed(next) && this.#room());
      if (!m) break;
      m.seq = seq.nextSeq();
      const size = m.bytes;
      this.#total += size;
      this.#fresh += size;
      taken.push(m);
    }
    let batch = control;
    if (again.length + taken.length > 0) {
      try {
        batch = this.#encode(control, again, taken);
      } catch (error) {
        this.#encodingFailed(taken);
        throw new UnwritableMessageError(
          `A batch could not be encoded: ${(error as Error).message}`,
          { cause: error },
        );
      }
      stats.messagesSent += taken.length;
      stats.replayed += replayed;
      counters.replayed += replayed;
      for (const m of taken) counters.messagesSent[m.priority]++;
      queue.taken(this.#fresh, limits.maxQueueBytes);
      taken.length = 0;
    }
    // The Close goes last: after every queued message and every one written again (a replay
    // that spans batches), and never after an unwritable message, which ends the session.
    const close = this.#unwritable === null && !replay.replayPending
      ? this.#p.closing()?.take(queue.bytes)
      : undefined;
    if (close) {
      // (An empty batch may be the queue's shared empty array: never added to.)
      if (batch.length === 0) batch = [close];
      else batch.push(close);
      stats.framesSent++;
      counters.framesSent[Tag.Close]++;
    }
    return batch;
  }

  /**
   * Whether `m`'s body is no longer what send() was given, `m.bytes` on the wire: it was
   * detached (its buffer transferred, so it reads as empty), or a view of a resizable buffer
   * that shrank or grew. It cannot be written as counted, and nothing after it may go before
   * it. The pass writes what came before it, then fails with an UnwritableMessageError, which
   * ends the session (a new link would fail the same way); the message stays where it is (in
   * the queue, or unacknowledged in the replay buffer), so the session's end hands it back.
   * One comparison per message.
   */
  #changed(m: QueuedMessage): boolean {
    const now = messageFrameBytes(m.payload);
    if (now === m.bytes) return false;
    const detached = m.payload.length === 0 &&
      (m.payload.buffer as { detached?: boolean }).detached === true;
    const what = detached ? "was detached" : `changed length by ${now - m.bytes} bytes`;
    const when = m.seq > 0 ? "before it was written again" : "before it was written";
    this.#unwritable = new UnwritableMessageError(
      `Message ${m.seq > 0 ? `seq ${m.seq} ` : ""}(type ${m.type}): its body ${what} after ` +
        `send(), ${when}`,
    );
    return true;
  }

  /**
   * Set when a message cannot be written: the pass fails with it once what came before the
   * message is written.
   */
  #unwritable: UnwritableMessageError | null = null;

  /** Whether the writer takes `m` from the queue into the batch being built (made when needed). */
  #takes: ((m: QueuedMessage) => boolean) | null = null;

  /**
   * Encoding a batch threw (a failed allocation, or a defect): its messages left the queue and
   * have their sequence numbers, so a lossless session keeps those the encoder did not get to
   * keep, as they are, to hand them back when it ends (a lossy one loses them, as it loses a
   * failed write). The pass then fails with an UnwritableMessageError, which ends the session.
   */
  #encodingFailed(taken: QueuedMessage[]): void {
    const { queue, seq, session, limits } = this.#p;
    if (!session.policy.lossy) {
      const kept = seq.replay.lastSeq;
      for (const m of taken) if (m.seq > kept) seq.replay.push(m);
    }
    queue.taken(this.#fresh, limits.maxQueueBytes);
    taken.length = 0;
  }

  /** Most payload bytes of a Messages frame the peer takes on the link (0: none). */
  #batchLimit(): number {
    return this.#p.batchLimit?.() ?? 0;
  }

  /**
   * Encodes `control` frames, then what is written `again` (replayed), then `taken` messages
   * into the scratch buffer: pieces that follow each other there go as one chunk, so a batch
   * is usually one write however many frames it holds (a body written in place is a chunk of
   * its own). A lossless session keeps the taken messages for replay as they are encoded.
   */
  #encode(control: Uint8Array[], again: Again[], taken: QueuedMessage[]): Uint8Array[] {
    const { seq, stats, counters, session } = this.#p;
    let need = 0;
    for (const frame of control) need += frame.length;
    for (const w of again) need += w instanceof WrittenRun ? w.frame.length : encodedBytes(w);
    for (const m of taken) need += encodedBytes(m);
    if (this.#scratch === null) this.#scratch = writeBuffers.take(need);
    else if (this.#scratch.length < need) {
      // A pass that goes on: a buffer it can reuse for full batches.
      writeBuffers.give(this.#scratch);
      this.#scratch = writeBuffers.take(Math.max(need, this.#batchBytes));
    }
    this.#scratchUsed = 0;
    const chunks: Uint8Array[] = [];
    const alloc = this.#allocator();
    for (const frame of control) {
      const piece = alloc(frame.length);
      piece.set(frame);
      chunks.push(piece);
    }
    const ack = seq.inSeq;
    const flags = this.#p.messageFlags();
    const batchLimit = this.#batchLimit();
    const out: EncodedMessages = { chunks, single: 0, batched: 0 };
    if (again.length > 0) this.#encodeAgain(again, ack, flags, batchLimit, out);
    const keep = session.policy.lossy ? undefined : this.#keeper();
    encodeOutgoing(taken, ack, flags, batchLimit, alloc, out, keep);
    seq.acked(ack);
    const frames = out.single + out.batched;
    if (flags & FLAG_UNCHECKED) counters.uncheckedFrames += frames;
    if (flags & FLAG_CRC32) counters.crc32Frames += frames;
    stats.framesSent += frames;
    counters.framesSent[Tag.Message] += out.single;
    counters.framesSent[Tag.Messages] += out.batched;
    return joinAdjacent(chunks);
  }

  /**
   * Encodes replayed items onto `out.chunks`: a kept Messages frame is copied and sealed anew
   * with this write's ack and checksum flags, messages kept alone are encoded again.
   */
  #encodeAgain(
    again: Again[],
    ack: number,
    flags: number,
    batchLimit: number,
    out: EncodedMessages,
  ): void {
    let from = 0; // first of the messages not yet encoded
    const messagesUpTo = (to: number) => {
      if (to === from) return;
      const run = again.slice(from, to) as OutgoingMessage[];
      encodeOutgoing(run, ack, flags, batchLimit, this.#allocator(), out);
    };
    for (let i = 0; i < again.length; i++) {
      const w = again[i];
      if (!(w instanceof WrittenRun)) continue;
      messagesUpTo(i);
      from = i + 1;
      const piece = this.#allocator()(w.frame.length);
      piece.set(w.frame);
      resealRun(piece, ack, flags);
      out.chunks.push(piece);
      out.batched++;
    }
    messagesUpTo(again.length);
  }
}

/** Merges chunks that are adjacent views of one buffer into single views, in place. */
function joinAdjacent(chunks: Uint8Array[]): Uint8Array[] {
  let n = 0;
  for (const c of chunks) {
    const last = n > 0 ? chunks[n - 1] : undefined;
    if (last && last.buffer === c.buffer && last.byteOffset + last.length === c.byteOffset) {
      chunks[n - 1] = new Uint8Array(last.buffer, last.byteOffset, last.length + c.length);
    } else {
      chunks[n++] = c;
    }
  }
  chunks.length = n;
  return chunks;
}
