// Internal: what the TCP, TLS and node:net links share. Their reads and writes are made with
// callbacks (`readThen`, `writeThen`: no promise per read or write on an idle connection), and
// `read()` and `write()` are promises around them, written here once.

import { guarded, type Link } from "./types.ts";

/** A callback that does nothing: what a link holds while no callback waits (one for all). */
export const nothing = (): void => {};

/** A link whose `read()` and `write()` are its `readThen` and `writeThen` in a promise. */
export abstract class CallbackLink implements Link {
  abstract readonly localAddr: string;
  abstract readonly remoteAddr: string;
  abstract readonly integrity: boolean;

  abstract readThen(
    onChunk: (chunk: Uint8Array | null) => void,
    onError: (error: unknown) => void,
  ): void;

  abstract writeThen(
    chunks: Uint8Array[],
    onWritten: () => void,
    onError: (error: unknown) => void,
  ): void;

  abstract close(): void;

  read(): Promise<Uint8Array | null> {
    return new Promise((resolve, reject) => this.readThen(resolve, reject));
  }

  write(chunks: Uint8Array[]): Promise<void> {
    return new Promise((resolve, reject) => this.writeThen(chunks, resolve, reject));
  }

  /** Refuses a read asked for while one is under way: a TypeError through its `onError`. */
  protected refuseSecondRead(onError: (error: unknown) => void): void {
    const error = new TypeError("Only one read may be outstanding on a link");
    queueMicrotask(() => guarded(onError, error));
  }
}
