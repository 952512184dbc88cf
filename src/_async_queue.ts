// Internal: an unbounded-by-default FIFO that async iterators consume. Used for inbound
// messages (competing consumers), per-subscriber event streams and node events.

import { Ring } from "./_ring.ts";

/** A FIFO with async consumption; `close()` ends every iterator after the queued items. */
export class AsyncQueue<T> implements AsyncIterable<T> {
  #items = new Ring<T>();
  #waiters: ((r: IteratorResult<T>) => void)[] = [];
  #drainWaiters: { below: number; resolve: () => void }[] = [];
  #drainBelow = -1; // shift() checks drain waiters only when size drops below this
  #closed = false;
  readonly #onTake: ((item: T) => void) | undefined;

  /** A queue; `onTake` is told of each item as a consumer takes it. */
  constructor(onTake?: (item: T) => void) {
    this.#onTake = onTake;
  }

  /** Items waiting to be taken. */
  get size(): number {
    return this.#items.length;
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Appends an item, or hands it straight to a waiting consumer. False once closed. */
  push(item: T): boolean {
    if (this.#closed) return false;
    const waiter = this.#waiters.shift();
    if (waiter) {
      this.#onTake?.(item);
      waiter({ value: item, done: false });
      return true;
    }
    this.#items.push(item);
    return true;
  }

  /** Takes the oldest item, if any, without waiting. */
  shift(): T | undefined {
    if (this.size === 0) return undefined;
    const item = this.#items.shift() as T;
    if (this.size < this.#drainBelow) this.#checkDrain();
    this.#onTake?.(item);
    return item;
  }

  /** Resolves when fewer than `below` items wait (at once if that is already so). */
  waitBelow(below: number): Promise<void> {
    if (this.size < below || this.#closed) return Promise.resolve();
    this.#drainBelow = Math.max(this.#drainBelow, below);
    return new Promise((resolve) => this.#drainWaiters.push({ below, resolve }));
  }

  /** Takes the next item, waiting for one; `done` once closed and empty. */
  next(): Promise<IteratorResult<T>> {
    if (this.size > 0) return Promise.resolve({ value: this.shift()!, done: false });
    if (this.#closed) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /**
   * Takes every item waiting (at most `max`), waiting for the first one; `done` once closed
   * and empty. Items pushed by one read arrive before the waiting consumer resumes, so a
   * consumer gets a read's worth of items for one await.
   */
  async nextBatch(max: number): Promise<IteratorResult<T[]>> {
    const first = await this.next();
    if (first.done) return { value: undefined, done: true };
    const batch = [first.value];
    while (batch.length < max && this.size > 0) batch.push(this.shift()!);
    return { value: batch, done: false };
  }

  /** Ends the queue: consumers get the remaining items, then `done`. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of this.#waiters.splice(0)) w({ value: undefined, done: true });
    for (const d of this.#drainWaiters.splice(0)) d.resolve();
    this.#drainBelow = -1;
  }

  #checkDrain(): void {
    const size = this.size;
    this.#drainWaiters = this.#drainWaiters.filter((d) => {
      if (size < d.below) {
        d.resolve();
        return false;
      }
      return true;
    });
    // The highest threshold still waited on: shift() checks again only below it.
    this.#drainBelow = this.#drainWaiters.length === 0
      ? -1
      : Math.max(...this.#drainWaiters.map((d) => d.below));
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => this.next(),
      return: () => Promise.resolve({ value: undefined, done: true }),
    };
  }
}

/**
 * A broadcast: each subscriber gets its own bounded queue of everything published after it
 * subscribed. A subscriber that falls more than `limit` items behind loses the oldest ones
 * (counted in `dropped`) rather than holding memory without bound.
 */
export class Broadcast<T> {
  #subscribers = new Set<{ queue: AsyncQueue<T> }>();
  #limit: number;
  /** Items dropped because a subscriber fell behind. */
  dropped = 0;

  /** Creates a broadcast whose subscribers hold at most `limit` items each. */
  constructor(limit = 10_000) {
    this.#limit = limit;
  }

  /** Number of live subscribers. */
  get subscribers(): number {
    return this.#subscribers.size;
  }

  /** Sends `item` to every subscriber. */
  publish(item: T): void {
    for (const sub of this.#subscribers) {
      if (sub.queue.size >= this.#limit) {
        sub.queue.shift();
        this.dropped++;
      }
      sub.queue.push(item);
    }
  }

  /**
   * A new subscription, which first yields `initial`; it ends when the consumer breaks out or
   * the broadcast closes.
   */
  subscribe(signal?: AbortSignal, initial: T[] = []): AsyncIterable<T> {
    const sub = { queue: new AsyncQueue<T>() };
    for (const item of initial) sub.queue.push(item);
    this.#subscribers.add(sub);
    const end = () => {
      this.#subscribers.delete(sub);
      sub.queue.close();
    };
    signal?.addEventListener("abort", end, { once: true });
    return {
      [Symbol.asyncIterator]: () => ({
        next: () => sub.queue.next(),
        return: () => {
          end();
          signal?.removeEventListener("abort", end);
          return Promise.resolve({ value: undefined, done: true });
        },
      }),
    };
  }

  /** Ends every subscription. */
  close(): void {
    for (const sub of this.#subscribers) sub.queue.close();
    this.#subscribers.clear();
  }
}
