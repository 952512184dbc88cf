// Internal: a FIFO over a ring of slots, the queue under the send queue and the inbound queue.
//
// A plain array with a moving head grows without bound while the queue never empties (a
// sender kept at its queue limit pushes and shifts millions of messages through a queue that
// is never empty), and compacting it copies. A ring reuses its slots: memory follows the
// longest the queue has been recently, not how much has passed through it.

/** Slots a ring takes at its first push, and never shrinks below. */
const MIN_SLOTS = 16;
/** Emptyings in a row with few items held before a ring halves its slots. */
const SHRINK_AFTER_LOW_EMPTIES = 8;

/**
 * A FIFO with O(1) push and shift that reuses its slots.
 *
 * @example
 * ```ts
 * import { Ring } from "./_ring.ts";
 * const r = new Ring<number>();
 * for (let i = 0; i < 100; i++) r.push(i);
 * if (r.shift() !== 0 || r.length !== 99 || r.peek() !== 1) throw new Error("fifo");
 * ```
 */
export class Ring<T> {
  // No slots until the first push: an idle connection's queues hold nothing.
  #slots: (T | undefined)[] = [];
  #head = 0;
  #length = 0;
  /** Most items held since the ring was last empty. */
  #peak = 0;
  /** Times in a row the ring emptied having held under a quarter of its slots. */
  #lowEmpties = 0;

  /** Items in the ring. */
  get length(): number {
    return this.#length;
  }

  /** Appends `item`. */
  push(item: T): void {
    if ((this as Ring<unknown>) === EMPTY_RING) {
      throw new TypeError("The shared empty ring takes no items");
    }
    const slots = this.#slots;
    if (this.#length === slots.length) {
      this.#grow();
      return this.push(item);
    }
    // The slot count is a power of two: a mask wraps the index.
    slots[(this.#head + this.#length) & (slots.length - 1)] = item;
    if (++this.#length > this.#peak) this.#peak = this.#length;
  }

  /** The oldest item (undefined when empty). */
  peek(): T | undefined {
    return this.#length === 0 ? undefined : this.#slots[this.#head];
  }

  /** The item `i` places after the oldest (undefined past the end). */
  at(i: number): T | undefined {
    return i >= 0 && i < this.#length
      ? this.#slots[(this.#head + i) & (this.#slots.length - 1)]
      : undefined;
  }

  /** Takes the oldest item (undefined when empty). */
  shift(): T | undefined {
    if (this.#length === 0) return undefined;
    const slots = this.#slots;
    const item = slots[this.#head];
    slots[this.#head] = undefined; // let it be collected
    this.#head = (this.#head + 1) & (slots.length - 1);
    if (--this.#length === 0) {
      this.#head = 0;
      // A queue that empties often keeps its slots (growing them again would cost as much as
      // they save); one that held under a quarter of them every time it emptied, several
      // times in a row, halves them.
      const low = slots.length > MIN_SLOTS && this.#peak * 4 <= slots.length;
      this.#lowEmpties = low ? this.#lowEmpties + 1 : 0;
      if (this.#lowEmpties >= SHRINK_AFTER_LOW_EMPTIES) {
        this.#slots = new Array(slots.length / 2);
        this.#lowEmpties = 0;
      }
      this.#peak = 0;
    }
    return item;
  }

  /** Takes every item, oldest first. */
  drain(): T[] {
    const out: T[] = new Array(this.#length);
    for (let i = 0; i < out.length; i++) out[i] = this.shift() as T;
    return out;
  }

  #grow(): void {
    const old = this.#slots;
    const slots: (T | undefined)[] = new Array(Math.max(MIN_SLOTS, old.length * 2));
    for (let i = 0; i < this.#length; i++) slots[i] = old[(this.#head + i) & (old.length - 1)];
    this.#slots = slots;
    this.#head = 0;
  }
}

/** See {@linkcode emptyRing}. */
const EMPTY_RING: Ring<never> = new Ring<never>();

/**
 * A ring that is always empty, shared: a user holds it until its first push, then makes a ring
 * of its own (`if (ring === emptyRing()) ring = new Ring()`), so an idle connection's queues
 * (three priority levels and a replay buffer) cost no ring each. Pushing to it throws.
 */
export function emptyRing<T>(): Ring<T> {
  return EMPTY_RING as Ring<T>;
}
