// Internal: a settle-once outcome whose promise is made on demand.

/**
 * An outcome settled once (the first `resolve` or `reject` wins), as a promise made only when
 * someone asks for it: an outcome nobody awaits costs no promise, and once it is settled no
 * resolvers are held (an idle session keeps a few hundred bytes less). Its rejection is never
 * reported as unhandled: it is observed through other paths.
 *
 * @example
 * ```ts
 * import { Deferred } from "./_deferred.ts";
 * const d = new Deferred<number>();
 * d.resolve(1);
 * d.reject(new Error("too late")); // the first outcome stays
 * if (await d.promise !== 1 || !d.settled) throw new Error("resolved once");
 * ```
 */
export class Deferred<T> {
  #promise: Promise<T> | null = null;
  #resolvers: PromiseWithResolvers<T> | null = null;
  #outcome: { value: T } | { error: unknown } | null = null;

  /** Whether it is resolved or rejected. */
  get settled(): boolean {
    return this.#outcome !== null;
  }

  /** The outcome as a promise. */
  get promise(): Promise<T> {
    if (this.#promise !== null) return this.#promise;
    const outcome = this.#outcome;
    if (outcome === null) {
      this.#resolvers = Promise.withResolvers<T>();
      this.#promise = this.#resolvers.promise;
    } else {
      this.#promise = "value" in outcome
        ? Promise.resolve(outcome.value)
        : Promise.reject(outcome.error);
    }
    this.#promise.catch(() => {});
    return this.#promise;
  }

  /** Resolves it, unless it is settled. */
  resolve(value: T): void {
    if (this.#outcome !== null) return;
    this.#outcome = { value };
    this.#resolvers?.resolve(value);
    this.#resolvers = null;
  }

  /** Rejects it, unless it is settled. */
  reject(error: unknown): void {
    if (this.#outcome !== null) return;
    this.#outcome = { error };
    this.#resolvers?.reject(error);
    this.#resolvers = null;
  }
}
