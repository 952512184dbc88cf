// Where a round trip's time goes, for the `proc_pingpong_64B_js_path` row: the code that runs
// between a read's completion and the next write call, in each process of a ping-pong. For
// heartline that is the session's code, from the link handing over a chunk to the session
// calling the link's write: what the link does around its reads and writes, what the writer
// and reader do after the write, and garbage collection fall outside it.

import { median } from "../_common.ts";
import {
  ForwardingLink,
  type Link,
  mapTransportLinks,
  type Transport,
} from "../../transports/types.ts";

/** Medians of a probe's spans, us (a span that was not timed is absent). */
export interface PathMedians {
  /** From a read's completion to the next write call (the echo's reply). */
  readToWrite?: number;
  /** From the pinger's send() to its write call. */
  sendToWrite?: number;
  /** From a read's completion to the reply in the pinger's hands. */
  readToReply?: number;
}

/**
 * Timestamps of one process's reads and writes. Each span is timed with `performance.now()`
 * (about 0.08 us here), as often per message on raw's side as on heartline's. Meant for lossy
 * sessions, whose only writes in a ping-pong are the messages (and a heartbeat a second): a
 * write between a read and the reply, such as a lossless session's ack, would be taken for the
 * reply by `readToWrite`.
 */
export class PathProbe {
  #lastRead = 0;
  #readAwaitingWrite = false;
  #sendAt = 0;
  #readToWrite: number[] = [];
  #sendToWrite: number[] = [];
  #readToReply: number[] = [];

  /** A read has completed. */
  readDone(): void {
    this.#lastRead = performance.now();
    this.#readAwaitingWrite = true;
  }

  /** The pinger calls send() now (`at`: its clock reading, taken for the round trip anyway). */
  sending(at: number): void {
    this.#sendAt = at;
  }

  /** A write call is about to be made. */
  writeStarting(): void {
    const now = performance.now();
    if (this.#readAwaitingWrite) this.#readToWrite.push((now - this.#lastRead) * 1000);
    if (this.#sendAt > 0) this.#sendToWrite.push((now - this.#sendAt) * 1000);
    this.#readAwaitingWrite = false;
    this.#sendAt = 0;
  }

  /** The pinger has its reply in hand. */
  replied(): void {
    if (this.#lastRead > 0) this.#readToReply.push((performance.now() - this.#lastRead) * 1000);
    this.#lastRead = 0;
  }

  /** The echo's span: the median of the second half of its samples (the first warms up). */
  echoMedians(): PathMedians {
    return { readToWrite: secondHalfMedian(this.#readToWrite) };
  }

  /** The pinger's spans, as {@linkcode PathProbe.echoMedians} takes the echo's. */
  pingMedians(): PathMedians {
    return {
      sendToWrite: secondHalfMedian(this.#sendToWrite),
      readToReply: secondHalfMedian(this.#readToReply),
    };
  }
}

/** The median of the second half of `samples` (the first half warms up), if there are any. */
function secondHalfMedian(samples: number[]): number | undefined {
  return samples.length === 0 ? undefined : median(afterWarmUp(samples));
}

/** The second half of a run's samples: heartline keeps being optimized for its first second. */
export function afterWarmUp(samples: number[]): number[] {
  return samples.slice(Math.floor(samples.length / 2));
}

/** A link that tells `probe` of each chunk it hands on and each write it is given. */
class ProbedLink extends ForwardingLink {
  #probe: PathProbe;
  // The reader gives readThen the same callback each time: its wrapper is made once.
  #onChunk: ((chunk: Uint8Array | null) => void) | null = null;
  #probedOnChunk: (chunk: Uint8Array | null) => void = () => {};

  constructor(inner: Link, probe: PathProbe) {
    if (!inner.readThen || !inner.writeThen) {
      throw new TypeError(
        `The path probe needs a link with readThen and writeThen, not a ${inner.constructor.name}`,
      );
    }
    super(inner);
    this.#probe = probe;
  }

  override async read(): Promise<Uint8Array | null> {
    const chunk = await this.inner.read();
    this.#probe.readDone();
    return chunk;
  }

  readThen(onChunk: (chunk: Uint8Array | null) => void, onError: (error: unknown) => void): void {
    if (onChunk !== this.#onChunk) {
      this.#onChunk = onChunk;
      this.#probedOnChunk = (chunk) => {
        this.#probe.readDone();
        onChunk(chunk);
      };
    }
    this.inner.readThen!(this.#probedOnChunk, onError);
  }

  override write(chunks: Uint8Array[]): Promise<void> {
    this.#probe.writeStarting();
    return this.inner.write(chunks);
  }

  writeThen(chunks: Uint8Array[], onWritten: () => void, onError: (error: unknown) => void): void {
    this.#probe.writeStarting();
    this.inner.writeThen!(chunks, onWritten, onError);
  }
}

/** Wraps `inner` so every link it dials or accepts reports to `probe`. */
export function probedTransport(inner: Transport, probe: PathProbe): Transport {
  return mapTransportLinks(inner, (link) => new ProbedLink(link, probe));
}
