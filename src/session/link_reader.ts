/**
 * Reads one link and feeds its frames to an owner that may change while it runs: the
 * accepting side reads a Hello on a handshake-only session, then hands the link to the session
 * it resumes, without a second reader on the link and without losing bytes already read.
 *
 * @module
 */

import {
  FLAG_CRC32,
  FLAG_UNCHECKED,
  FrameDecoder,
  MESSAGES_FRAME_BYTES,
  Tag,
  type TagValue,
} from "../protocol/frame.ts";
import type { Hello } from "../protocol/handshake.ts";
import type { Link } from "../../transports/types.ts";
import { Deferred } from "../_deferred.ts";

/** What a reader reports to the session that owns it. */
export interface ReaderOwner {
  /**
   * One chunk arrived: the owner counts it and feeds it to `reader.decode()`, which reports its
   * frames. Returns a promise to await before reading more (back-pressure).
   */
  readChunk(reader: LinkReader, chunk: Uint8Array): Promise<void> | undefined;
  /**
   * The last chunk is handled and the application had its turn to reply: what a read means
   * beyond its frames (a sign of life) is taken now, so that no reply waits for it.
   */
  readHandled(reader: LinkReader): void;
  /**
   * One complete frame: its payload is valid only during the call, unless `owned` (then it is
   * a buffer of its own that may be kept without copying).
   */
  readFrame(reader: LinkReader, tag: TagValue, payload: Uint8Array, owned: boolean): void;
  /** The stream ended in order. */
  readEnded(reader: LinkReader): void;
  /** Reading failed: a transport error or bad bytes. */
  readFailed(reader: LinkReader, error: Error): void;
  /** A defect surfaced while handling a failure: reported, never thrown further. */
  defect(error: unknown): void;
}

/**
 * The read loop of one link. `run()` never rejects: every error goes to the owner.
 *
 * @example
 * ```ts
 * import { LinkReader } from "./link_reader.ts";
 * import { MemoryTransport } from "../../transports/memory.ts";
 * import { BANNER, encodeFrame, Tag } from "../protocol/frame.ts";
 * const net = new MemoryTransport();
 * const listener = await net.listen("mem://r");
 * const link = await net.connect("mem://r");
 * const tags: number[] = [];
 * const owner = {
 *   readChunk: (r: LinkReader, chunk: Uint8Array) => void r.decode(chunk),
 *   readHandled: () => {},
 *   readFrame: (_r: LinkReader, tag: number) => void tags.push(tag),
 *   readEnded: () => {},
 *   readFailed: () => {},
 *   defect: () => {},
 * };
 * for await (const accepted of listener) {
 *   await link.write([BANNER, encodeFrame(Tag.Close, new Uint8Array(0))]);
 *   link.close();
 *   await new LinkReader(accepted, owner, 1024).run();
 *   break;
 * }
 * if (tags[0] !== Tag.Close) throw new Error("frame not read");
 * listener.close();
 * ```
 */
export class LinkReader {
  /** Set when the owner let go of this link: nothing more is reported. */
  stopped = false;
  /**
   * This link's handshake: the accepting side's challenge and the dialing side's Hello, which
   * both proofs are computed over (it travels with the link when a session adopts it).
   */
  readonly handshake: {
    challenge: string | null;
    hello: Hello | null;
    /** This end of the link protects integrity and may skip checksums (it says so in its Hello). */
    integrity: boolean;
  } = { challenge: null, hello: null, integrity: false };
  /** The frame decoder, kept with the link (it holds a partial frame between reads). */
  readonly decoder: FrameDecoder;
  /** Whether the chunk being handled carried messages (an application may reply to them). */
  #carriedMessages = false;
  #dispatch = (tag: TagValue, _flags: number, payload: Uint8Array, owned: boolean): void => {
    if (payload.length > MESSAGES_FRAME_BYTES) this.link.largeFrames?.();
    if (tag === Tag.Messages || tag === Tag.Message) this.#carriedMessages = true;
    if (!this.stopped) this.owner.readFrame(this, tag, payload, owned);
  };

  /** A reader of `link` reporting to `owner`. */
  constructor(readonly link: Link, public owner: ReaderOwner, maxFrameBytes: number) {
    this.decoder = new FrameDecoder({ maxFrameBytes });
    this.handshake.integrity = link.integrity === true;
  }

  /** Whether the peer accepts CRC-32 Message frames on this link (said in its handshake). */
  crc32 = false;
  /**
   * Most payload bytes of a Messages frame the peer takes on this link (said in its
   * handshake, capped at what this node sends); 0: it takes none, every message goes alone.
   */
  batchLimit = 0;

  /**
   * The checksum flags of Message frames written on this link: none (both ends said in the
   * handshake that their end protects integrity; the decoder accepts such frames from then
   * on), else CRC-32 where the peer accepts it, else CRC-32C.
   */
  get messageFlags(): number {
    if (this.decoder.allowUnchecked) return FLAG_UNCHECKED;
    return this.crc32 ? FLAG_CRC32 : 0;
  }

  /** Both ends agreed: frames on this link skip their checksums from now on. */
  skipChecksums(): void {
    this.decoder.allowUnchecked = true;
  }

  /** Feeds one chunk to the decoder, which calls back per frame. */
  decode(chunk: Uint8Array): void {
    this.decoder.push(chunk, this.#dispatch);
  }

  /**
   * Reads until the link ends, fails or the reader is stopped; settles then, and never
   * rejects: every error goes to the owner.
   */
  run(): Promise<void> {
    this.start();
    return this.#done.promise;
  }

  /** Starts reading (as {@linkcode run}, without a promise of the end); once only. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#next();
  }

  // The loop is a chain of handlers made once per reader, not an async function: a suspended
  // async function holds its frame, registers and promises for as long as a read waits (all
  // the life of an idle link, about 500 bytes of heap each).

  #started = false;
  /** Settles when the loop ends. */
  #done = new Deferred<void>();
  /** Microtask turns left before the chunk's bookkeeping and the next read. */
  #turnsLeft = 0;

  /** Posts the next read. */
  #next = (): void => {
    if (this.stopped) return this.#done.resolve();
    let reading: Promise<Uint8Array | null>;
    try {
      // A link with callbacks: no promise per read (see Link.readThen).
      if (this.link.readThen) return this.link.readThen(this.#read, this.#failed);
      reading = this.link.read();
    } catch (error) {
      return this.#failed(error);
    }
    reading.then(this.#read, this.#failed);
  };

  #read = (chunk: Uint8Array | null): void => {
    if (this.stopped) return this.#done.resolve();
    let wait: Promise<void> | undefined;
    try {
      if (chunk === null) {
        this.decoder.end();
        this.owner.readEnded(this);
        return this.#done.resolve();
      }
      this.#carriedMessages = false;
      wait = this.owner.readChunk(this, chunk);
      if (this.stopped) return this.#done.resolve(); // a frame of the chunk let go of the link
      if (!wait && this.#carriedMessages) {
        // Two microtask turns first: an application awaiting messages resumes in the first
        // and the writer it wakes runs in the second, so a reply is written before this
        // read's bookkeeping and before the next read is posted (a syscall of about half a
        // microsecond): about 2 us less per round trip. (Not for a chunk of heartbeats or
        // acks, which nothing replies to at once: an idle link allocates less per read.)
        this.#turnsLeft = 2;
        return queueMicrotask(this.#turn);
      }
      this.owner.readHandled(this);
    } catch (error) {
      return this.#failed(error);
    }
    if (wait) wait.then(this.#next, this.#failed);
    else this.#next();
  };

  #turn = (): void => {
    if (--this.#turnsLeft > 0) return queueMicrotask(this.#turn);
    if (this.stopped) return this.#done.resolve();
    try {
      this.owner.readHandled(this);
    } catch (error) {
      return this.#failed(error);
    }
    this.#next();
  };

  #failed = (error: unknown): void => {
    this.#done.resolve();
    if (this.stopped) return;
    try {
      this.owner.readFailed(this, error as Error);
    } catch (defect) {
      this.owner.defect(defect);
    }
  };
}
