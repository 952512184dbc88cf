/**
 * The replay buffer of a lossless session: messages written and not yet acknowledged, in
 * sequence order. An ack trims it; a new link rewinds it, so everything unacknowledged is
 * written again (the receiver drops what it already had by sequence number).
 *
 * @module
 */

import { messageFrameBytes, type OutgoingMessage } from "../protocol/message.ts";

/**
 * Written, unacknowledged messages, and how far the current link has written them.
 *
 * @example
 * ```ts
 * import { ReplayBuffer } from "./replay_buffer.ts";
 * const r = new ReplayBuffer();
 * for (let seq = 1; seq <= 3; seq++) {
 *   r.push({ type: 0, priority: 1, payload: new Uint8Array(1), seq });
 * }
 * r.ack(2);
 * r.rewind();
 * if (r.nextReplay()?.seq !== 3 || r.nextReplay() !== undefined) throw new Error("replay");
 * ```
 */
export class ReplayBuffer {
  #items: (OutgoingMessage | undefined)[] = [];
  #head = 0;
  #written = 0; // items before this index went out on the current link
  #bytes = 0;

  /** Unacknowledged messages. */
  get count(): number {
    return this.#items.length - this.#head;
  }

  /** Their bytes on the wire. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Whether messages wait to be written again on the current link. */
  get replayPending(): boolean {
    return this.#written < this.#items.length;
  }

  /** Records a message just written on the current link. */
  push(message: OutgoingMessage): void {
    this.#items.push(message);
    this.#written = this.#items.length;
    this.#bytes += messageFrameBytes(message.payload);
  }

  /** The peer has everything up to `seq`: drop it (the caller checked `seq` is not ahead). */
  ack(seq: number): void {
    let head = this.#head;
    while (head < this.#items.length && this.#items[head]!.seq <= seq) {
      this.#bytes -= messageFrameBytes(this.#items[head]!.payload);
      this.#items[head++] = undefined;
    }
    if (head === this.#items.length) {
      this.#items = [];
      this.#written = 0;
      head = 0;
    } else if (head > 4096 && head * 2 > this.#items.length) {
      this.#items = this.#items.slice(head);
      this.#written = Math.max(0, this.#written - head);
      head = 0;
    }
    this.#head = head;
    if (this.#written < head) this.#written = head;
  }

  /** A new link: everything unacknowledged is written again, oldest first. */
  rewind(): void {
    this.#written = this.#head;
  }

  /** The next message to write again on this link, if any. */
  nextReplay(): OutgoingMessage | undefined {
    if (this.#written >= this.#items.length) return undefined;
    return this.#items[this.#written++];
  }

  /** Empties the buffer and returns what it held, in sequence order. */
  takeAll(): OutgoingMessage[] {
    const rest = this.#items.slice(this.#head) as OutgoingMessage[];
    this.#items = [];
    this.#head = 0;
    this.#written = 0;
    this.#bytes = 0;
    return rest;
  }
}
