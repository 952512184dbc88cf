/**
 * The replay buffer of a lossless session: messages written and not yet acknowledged, in
 * sequence order. An ack trims it; a new link rewinds it, so everything unacknowledged is
 * written again (the receiver drops what it already had by sequence number).
 *
 * @module
 */

import { messageFrameBytes, type OutgoingMessage } from "../protocol/message.ts";
import { Ring } from "../_ring.ts";

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
  #items = new Ring<OutgoingMessage>();
  /** How many of the oldest items went out on the current link. */
  #written = 0;
  #bytes = 0;

  /** Unacknowledged messages. */
  get count(): number {
    return this.#items.length;
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
    const items = this.#items;
    for (let m = items.peek(); m !== undefined && m.seq <= seq; m = items.peek()) {
      this.#bytes -= messageFrameBytes(m.payload);
      items.shift();
      if (this.#written > 0) this.#written--;
    }
  }

  /** A new link: everything unacknowledged is written again, oldest first. */
  rewind(): void {
    this.#written = 0;
  }

  /** The next message to write again on this link, if any. */
  nextReplay(): OutgoingMessage | undefined {
    if (this.#written >= this.#items.length) return undefined;
    return this.#items.at(this.#written++);
  }

  /** Empties the buffer and returns what it held, in sequence order. */
  takeAll(): OutgoingMessage[] {
    this.#written = 0;
    this.#bytes = 0;
    return this.#items.drain();
  }
}
