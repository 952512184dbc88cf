/**
 * Received messages on their way to the application: one queue that `messages()` iterators
 * take from, and, per connection, what it has delivered and the application has not taken yet.
 * A connection past its limits stops reading its own link (the sender feels TCP back-pressure)
 * while every other connection keeps reading, so its heartbeats keep arriving.
 *
 * @module
 */

import { AsyncQueue } from "../_async_queue.ts";
import type { Connection, Message } from "../connection.ts";

/** What one connection has delivered and the application not yet taken. */
interface Pending {
  bytes: number;
  messages: number;
  /** Set while the connection's reader waits for the application. */
  wake: (() => void) | null;
}

/**
 * A received message as queued: the fields of `Message`, and the record of the connection it
 * counts against, so that taking it needs no lookup.
 */
class Delivered implements Message {
  readonly #pending: Pending;
  /**
   * The body's length when it was delivered, as counted: a body whose buffer the application
   * transferred reads as empty, and taking it must still give back what was counted.
   */
  readonly #bytes: number;
  constructor(
    readonly type: number,
    readonly priority: Message["priority"],
    readonly payload: Uint8Array,
    readonly seq: number,
    readonly connection: Connection,
    pending: Pending,
  ) {
    this.#pending = pending;
    this.#bytes = payload.length;
  }

  /** Gives back what `message` counted against its connection's record. */
  static taken(message: Delivered): Pending {
    const p = message.#pending;
    p.bytes -= message.#bytes;
    p.messages--;
    return p;
  }
}

/** Limits per connection. */
export interface InboundLimits {
  /** Messages not yet taken, per connection, before its reads pause. */
  readonly maxInboundMessages: number;
  /** Bytes of bodies not yet taken, per connection, before its reads pause. */
  readonly maxInboundBytes: number;
}

/**
 * The inbound queue of a messenger.
 *
 * @example
 * ```ts ignore
 * const inbound = new InboundQueue({ maxInboundMessages: 10_000, maxInboundBytes: 8 << 20 });
 * inbound.deliver(conn, type, priority, payload, seq);
 * await inbound.backpressure(message.connection); // undefined while under the limits
 * ```
 */
export class InboundQueue {
  /** What `messages()` iterates. */
  readonly queue: AsyncQueue<Message>;
  readonly #pending = new Map<Connection, Pending>();
  readonly #limits: InboundLimits;
  // Messages come in runs from one connection: the last record, to skip the lookup.
  #lastConnection: Connection | null = null;
  #lastPending: Pending | undefined;

  /** An empty queue with per-connection `limits`. */
  constructor(limits: InboundLimits) {
    this.#limits = limits;
    this.queue = new AsyncQueue<Message>((m) => this.#taken(m as Delivered));
  }

  /** Queues a message for the application. */
  deliver(
    connection: Connection,
    type: number,
    priority: Message["priority"],
    payload: Uint8Array,
    seq: number,
  ): void {
    let p = connection === this.#lastConnection ? this.#lastPending : undefined;
    if (!p) {
      p = this.#pending.get(connection);
      if (!p) this.#pending.set(connection, p = { bytes: 0, messages: 0, wake: null });
      this.#lastConnection = connection;
      this.#lastPending = p;
    }
    p.bytes += payload.length;
    p.messages++;
    this.queue.push(new Delivered(type, priority, payload, seq, connection, p));
  }

  /**
   * A promise to await before `conn` reads more, when what it delivered piles up (resolved
   * once the application has taken it down to half of the limits); undefined otherwise.
   */
  backpressure(conn: Connection): Promise<void> | undefined {
    const p = this.#pending.get(conn);
    if (!p || !this.#over(p, 1)) return undefined;
    return new Promise<void>((resolve) => {
      const previous = p.wake;
      p.wake = () => {
        previous?.();
        resolve();
      };
    });
  }

  /** `conn` began to close: a reader waiting on it goes on (what it delivered stays counted). */
  release(conn: Connection): void {
    const p = this.#pending.get(conn);
    const wake = p?.wake;
    if (!p || !wake) return;
    p.wake = null;
    wake();
  }

  /** `conn` is gone: its reader must not wait any longer. */
  forget(conn: Connection): void {
    const p = this.#pending.get(conn);
    if (!p) return;
    this.#pending.delete(conn);
    if (this.#lastConnection === conn) this.#lastConnection = null;
    p.wake?.();
  }

  /** Ends the queue (the messenger closed); waiting readers go on. */
  close(): void {
    for (const p of this.#pending.values()) p.wake?.();
    this.#pending.clear();
    this.queue.close();
  }

  #over(p: Pending, fraction: number): boolean {
    return p.messages >= this.#limits.maxInboundMessages * fraction ||
      p.bytes >= this.#limits.maxInboundBytes * fraction;
  }

  // On the hot path: no lookup (the message carries its record).
  #taken(message: Delivered): void {
    const p = Delivered.taken(message);
    if (p.wake !== null && !this.#over(p, 0.5)) {
      const wake = p.wake;
      p.wake = null;
      wake();
    }
  }
}
