/**
 * The link a session is on, if any: the transport link and its reader, counted by an epoch
 * (per-link state such as OOB op dictionaries starts afresh with each). Reports only what its
 * current reader reads: a reader the session let go of, or handed to another session, is
 * never heard from again here.
 *
 * @module
 */

import type { TagValue } from "../protocol/frame.ts";
import type { Hello } from "../protocol/handshake.ts";
import { MESSAGES_FRAME_BYTES } from "../protocol/message.ts";
import type { Link } from "../../transports/types.ts";
import { LinkReader, type ReaderOwner } from "./link_reader.ts";

/** What a slot reports to its session, for the current link only. */
export interface LinkEvents {
  /** A chunk of `bytes` arrived (before its frames are decoded). */
  chunk(bytes: number): void;
  /** One frame (its payload is valid only during the call, unless `owned`). */
  frame(tag: TagValue, payload: Uint8Array, owned: boolean): void;
  /** The chunk's frames are handled; returns a promise to await before reading more. */
  chunkDone(): Promise<void> | undefined;
  /** Bytes arrived, a sign of life (told once the application had its turn to reply). */
  heard(): void;
  /** The stream ended in order. */
  ended(): void;
  /** Reading failed: a transport error or bad bytes. */
  failed(error: Error): void;
  /** A defect surfaced on the read path. */
  defect(error: unknown): void;
}

/**
 * Holds a session's current link and reader.
 *
 * @example
 * ```ts
 * import { LinkSlot } from "./link_slot.ts";
 * const events = {
 *   chunk() {}, frame() {}, chunkDone: () => undefined, heard() {}, ended() {}, failed() {},
 *   defect() {},
 * };
 * const slot = new LinkSlot(events, 1 << 20);
 * if (slot.link !== null || slot.epoch !== 0) throw new Error("empty at first");
 * ```
 */
export class LinkSlot implements ReaderOwner {
  readonly #events: LinkEvents;
  readonly #maxFrameBytes: number;
  #reader: LinkReader | null = null;
  #epoch = 0;

  /** An empty slot reporting to `events`, decoding frames up to `maxFrameBytes`. */
  constructor(events: LinkEvents, maxFrameBytes: number) {
    this.#events = events;
    this.#maxFrameBytes = maxFrameBytes;
  }

  /** The current link, or null. */
  get link(): Link | null {
    return this.#reader?.link ?? null;
  }

  /** The current link's handshake record (see `LinkReader.handshake`). */
  get handshake(): LinkReader["handshake"] {
    return this.#reader?.handshake ?? { challenge: null, hello: null, integrity: false };
  }

  /** The checksum flags of Message frames on the current link (see `LinkReader`). */
  get messageFlags(): number {
    return this.#reader?.messageFlags ?? 0;
  }

  /** Both ends of the current link agreed to skip checksums. */
  skipChecksums(): void {
    this.#reader?.skipChecksums();
  }

  /** Most payload bytes of a Messages frame the peer takes on the current link (0: none). */
  get batchLimit(): number {
    return this.#reader?.batchLimit ?? 0;
  }

  /** What the peer's Hello or Welcome on the current link said it accepts. */
  peerAccepts(hello: Hello): void {
    if (!this.#reader) return;
    this.#reader.crc32 = hello.crc32 === true;
    this.#reader.batchLimit = Math.min(hello.batch ?? 0, MESSAGES_FRAME_BYTES);
  }

  /** Which link this is: 1 for the first, +1 per new link. */
  get epoch(): number {
    return this.#epoch;
  }

  /**
   * Takes a fresh link; call {@linkcode LinkSlot.start} once the first frames are queued.
   * Until {@linkcode LinkSlot.opened}, frames above `handshakeFrameBytes` are refused as soon
   * as their preamble arrives, before any of their payload is buffered.
   */
  attach(link: Link, handshakeFrameBytes: number): void {
    this.detach();
    this.#reader = new LinkReader(link, this, Math.min(handshakeFrameBytes, this.#maxFrameBytes));
    this.#epoch++;
  }

  /** The handshake is done: frames up to the session's limit are accepted from now on. */
  opened(): void {
    if (this.#reader) this.#reader.decoder.maxFrameBytes = this.#maxFrameBytes;
  }

  /** Starts reading the current link (the read loop never rejects). */
  start(): void {
    this.#reader?.start();
  }

  /** Takes a link whose reader already runs (handed over by another session's slot). */
  adopt(reader: LinkReader): void {
    this.detach();
    reader.owner = this;
    this.#reader = reader;
    this.#epoch++;
    this.opened();
  }

  /** Lets go of the reader without closing its link, to hand both to another session. */
  release(): LinkReader {
    const reader = this.#reader!;
    this.#reader = null;
    return reader;
  }

  /** Stops reading and closes the current link, if any. */
  detach(): void {
    const reader = this.#reader;
    if (!reader) return;
    this.#reader = null;
    reader.stopped = true;
    reader.link.close();
  }

  /** @internal see {@linkcode ReaderOwner} */
  readChunk(reader: LinkReader, chunk: Uint8Array): Promise<void> | undefined {
    if (reader !== this.#reader) return undefined;
    this.#events.chunk(chunk.length);
    reader.decode(chunk);
    return this.#events.chunkDone();
  }

  /** @internal see {@linkcode ReaderOwner} */
  readHandled(reader: LinkReader): void {
    if (reader === this.#reader) this.#events.heard();
  }

  /** @internal see {@linkcode ReaderOwner} */
  readFrame(reader: LinkReader, tag: TagValue, payload: Uint8Array, owned: boolean): void {
    if (reader === this.#reader) this.#events.frame(tag, payload, owned);
  }

  /** @internal see {@linkcode ReaderOwner} */
  readEnded(reader: LinkReader): void {
    if (reader === this.#reader) this.#events.ended();
  }

  /** @internal see {@linkcode ReaderOwner} */
  readFailed(reader: LinkReader, error: Error): void {
    if (reader === this.#reader) this.#events.failed(error);
  }

  /** @internal see {@linkcode ReaderOwner} */
  defect(error: unknown): void {
    this.#events.defect(error);
  }
}
