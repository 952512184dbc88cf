/**
 * The send queue of one session: control frames (heartbeats, acks, handshake frames) ahead of
 * everything, then messages in three strict priorities, FIFO within each; its size in bytes;
 * and the senders waiting for room.
 *
 * @module
 */

import { QueueFullError } from "../errors.ts";
import type { OutgoingMessage } from "../protocol/message.ts";
import { emptyRing, Ring } from "../_ring.ts";

/** What takeControl() returns when there is no control frame (shared, never added to). */
const NO_CONTROL = Object.freeze([]) as unknown as Uint8Array[];

/** One settled promise for every send that needs no wait. */
const RESOLVED: Promise<void> = Promise.resolve();

/** A message as queued: what `send()` was given, and its size as counted then. */
export interface QueuedMessage extends OutgoingMessage {
  /**
   * Its bytes on the wire when it was queued: what it counts in the queue and, once written,
   * in the replay buffer, whatever the application does to its body afterwards.
   */
  readonly bytes: number;
}

interface Waiter {
  resolve: () => void;
  reject: (reason: unknown) => void;
}

/**
 * Control frames, then messages by priority.
 *
 * @example
 * ```ts
 * import { SendQueue } from "./send_queue.ts";
 * const q = new SendQueue();
 * q.push({ type: 1, priority: 2, payload: new Uint8Array(1), seq: 0, bytes: 37 });
 * q.push({ type: 2, priority: 0, payload: new Uint8Array(1), seq: 0, bytes: 37 });
 * if (q.shift(() => true)?.type !== 2) throw new Error("high first");
 * ```
 */
export class SendQueue {
  // A level's ring is made with its first message (see emptyRing).
  #levels: Ring<QueuedMessage>[] = [emptyRing(), emptyRing(), emptyRing()];
  #control: Uint8Array[] = [];
  #bytes = 0;
  #waiters: Waiter[] = [];

  /** Bytes of queued messages (frames included). */
  get bytes(): number {
    return this.#bytes;
  }

  /** Queued messages. */
  get messages(): number {
    return this.#levels[0].length + this.#levels[1].length + this.#levels[2].length;
  }

  /** Whether control frames wait. */
  get hasControl(): boolean {
    return this.#control.length > 0;
  }

  /**
   * The error for a message of `size` bytes that would take the queue past its hard cap
   * (twice `limit`, the size at which `send()` starts to wait), or undefined if it fits. An
   * empty queue takes a message of any size (the frame limit bounds it), so a limit smaller
   * than the largest message never makes that message unsendable.
   */
  overCap(size: number, limit: number): QueueFullError | undefined {
    const cap = 2 * limit;
    if (this.#bytes + size <= cap || this.#bytes === 0) return undefined;
    return new QueueFullError(`Send queue full: ${this.#bytes} bytes queued, hard cap ${cap}`, cap);
  }

  /** Queues a message of `message.bytes` bytes on the wire. */
  push(message: QueuedMessage): void {
    let level = this.#levels[message.priority];
    if (level === emptyRing()) level = this.#levels[message.priority] = new Ring();
    level.push(message);
    this.#bytes += message.bytes;
  }

  /** Queues a control frame ahead of every message. */
  pushControl(frame: Uint8Array): void {
    this.#control.push(frame);
  }

  /**
   * Takes every control frame. With none, a shared empty array that must not be added to: a
   * write pass of messages only (nearly every pass of a busy link) then allocates no array.
   */
  takeControl(): Uint8Array[] {
    if (this.#control.length === 0) return NO_CONTROL;
    const frames = this.#control;
    this.#control = [];
    return frames;
  }

  /** Drops the control frames (they belonged to a link that is gone). */
  dropControl(): void {
    this.#control = [];
  }

  /**
   * Takes the first message by priority if `accept(message)` agrees (the writer says no when
   * its batch or the replay buffer is full); the caller reports its bytes with `taken()`.
   */
  shift(accept: (message: QueuedMessage) => boolean): QueuedMessage | undefined {
    for (const level of this.#levels) {
      if (level.length === 0) continue;
      // Levels are strict: only the head of the highest non-empty level may go.
      return accept(level.peek()!) ? level.shift() : undefined;
    }
    return undefined;
  }

  /** Marks `size` bytes as written: they leave the queue's count, and waiters may go. */
  taken(size: number, limit: number): void {
    this.#bytes -= size;
    if (this.#waiters.length > 0 && this.#bytes <= limit) {
      for (const w of this.#waiters.splice(0)) w.resolve();
    }
  }

  /**
   * Resolves once the queue is at or under `limit` bytes; rejects with `signal.reason` if the
   * signal aborts first, or with the error given to {@linkcode SendQueue.failWaiters}.
   */
  waitForRoom(limit: number, signal?: AbortSignal): Promise<void> {
    if (this.#bytes <= limit) return RESOLVED; // the common case: no allocation per message
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    const waiter: Waiter = { resolve, reject };
    this.#waiters.push(waiter);
    if (signal) {
      const onAbort = () => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      promise.then(
        () => signal.removeEventListener("abort", onAbort),
        () => signal.removeEventListener("abort", onAbort),
      );
    }
    return promise;
  }

  /**
   * Resolves every waiter: their messages are queued and will be written (an orderly close
   * writes the queue before its Close frame), so their senders need not wait for room.
   */
  releaseWaiters(): void {
    for (const w of this.#waiters.splice(0)) w.resolve();
  }

  /** Rejects every waiter with `error()` (the session ended: its messages will not go). */
  failWaiters(error: () => Error): void {
    for (const w of this.#waiters.splice(0)) w.reject(error());
  }

  /** Takes every queued message, in priority order (the session ended). */
  drain(): QueuedMessage[] {
    const all = this.#levels.flatMap((level) => level.drain());
    this.#bytes = 0;
    return all;
  }
}
