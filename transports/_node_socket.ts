// Internal: TCP links and listeners over `node:net` sockets, for the TCP transport's "node"
// sockets (see TcpTransportOptions.sockets).
//
// Why: in Deno 2.9 a `Deno.Conn` read waits as an op of its own, and a pending read costs
// about 10 KB of memory outside the JavaScript heap; a `node:net` socket is read by the
// runtime as bytes arrive and hands each read over in a callback, with no op waiting. Raw
// idle connections with a 38-byte beat each way a second: 8.4 KB each over `node:net`
// against 22.3 KB over `Deno.Conn` (docs/benchmarks.md, stop 25).

import type { Buffer } from "node:buffer";
import type * as NodeNet from "node:net";
import { TransportError } from "../src/errors.ts";
import { CallbackLink, nothing } from "./_callback_link.ts";
import { formatHostPort, gatherWrites, guarded, type Link, type Listener } from "./types.ts";

/** The outcome of a write the socket has yet to call back. */
const AWAITING_SOCKET = Symbol("awaiting the socket");
/** A write's outcome: awaiting the socket's callback, done (null), or failed. */
type WriteOutcome = typeof AWAITING_SOCKET | null | Error;

/**
 * `node:net`, looked up when first needed rather than imported: the library also runs in
 * browsers (its bundle must import no `node:` module), where only Deno sockets' absence matters.
 * Throws a TypeError where the runtime has none.
 */
export function nodeNet(): typeof NodeNet {
  const process = (globalThis as {
    process?: { getBuiltinModule?: (id: string) => unknown };
  }).process;
  const net = process?.getBuiltinModule?.("node:net") as typeof NodeNet | undefined;
  if (!net?.createServer) {
    throw new TypeError('TCP over sockets: "node" needs a runtime with node:net (Deno or Node)');
  }
  return net;
}

/** Bytes of chunks held for a reader that has not asked for them before the socket pauses. */
const PAUSE_AT_BYTES = 256 * 1024;

/**
 * A link over a `node:net` socket. Each read hands over a buffer of its own (the runtime makes
 * one per read, of the read's size); writes of several chunks go in one `writev`.
 */
export class NodeSocketLink extends CallbackLink {
  readonly localAddr: string;
  readonly remoteAddr: string;
  readonly integrity = false;
  #socket: NodeNet.Socket;
  #closed = false;
  /** The socket's end of stream (or its failure), once seen. */
  #ended = false;
  #error: TransportError | null = null;
  /** Chunks that arrived before the reader asked, and their bytes. */
  #chunks: Uint8Array[] = [];
  #held = 0;
  /**
   * The reader waiting for a chunk, if any: its two callbacks (a promise's, or those the
   * reader gave readThen(): then an idle link allocates nothing per read but the chunk).
   */
  #onChunk: ((chunk: Uint8Array | null) => void) | null = null;
  #onReadError: ((error: unknown) => void) | null = null;
  /** Told when the socket ends or fails (flush waits for the peer's end). */
  #onEnd: (() => void) | null = null;

  /** A link over the connected `socket`. */
  constructor(socket: NodeNet.Socket) {
    super();
    this.#socket = socket;
    socket.setNoDelay(true);
    this.localAddr = formatHostPort("tcp", socketHost(socket.localAddress), socket.localPort ?? 0);
    this.remoteAddr = formatHostPort(
      "tcp",
      socketHost(socket.remoteAddress),
      socket.remotePort ?? 0,
    );
    socket.on("data", this.#data);
    socket.on("end", this.#end);
    socket.on("close", this.#gone);
    // Always listened to: an 'error' event without a listener would throw out of the socket.
    // The listener's or the dial's own listener goes: from now on the link's is enough.
    socket.removeAllListeners("error");
    socket.on("error", this.#failed);
  }

  #data = (chunk: Buffer): void => {
    if (this.#closed) return; // a read the socket had under way when we closed it
    // A Uint8Array of the read's own buffer (not pooled): it may be kept as it is.
    const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length);
    if (this.#onChunk !== null) return this.#hand(bytes);
    this.#chunks.push(bytes);
    this.#held += bytes.length;
    // The reader is behind (its application stopped taking messages): stop reading, so the
    // peer's writes wait in the kernel and push back on it.
    if (this.#held >= PAUSE_AT_BYTES) this.#socket.pause();
  };

  #end = (): void => {
    if (this.#ended) return;
    this.#ended = true;
    this.#settleWaiting();
    const onEnd = this.#onEnd;
    this.#onEnd = null;
    onEnd?.();
  };

  /** The socket is closed both ways: writes still waiting for their callback fail now. */
  #gone = (): void => {
    this.#end();
    this.#failWrites();
  };

  /**
   * Writes whose callbacks have not come, oldest first: the first in fields (a session has
   * one write under way at a time), any more in a list made when needed. The socket calls
   * back in the order of the writes, through one handler made once per link: a write
   * allocates nothing of its own. A write settled at once (an empty batch, a refused or
   * failed one) while others wait takes its place in the list with its outcome, so that
   * callbacks still come in the order of the writes.
   */
  #writtenFirst: (() => void) | null = null;
  #failFirst: ((error: unknown) => void) | null = null;
  #outcomeFirst: WriteOutcome = AWAITING_SOCKET;
  /** Triples after the first: onWritten, onError, outcome, onWritten, ... */
  #moreWrites: unknown[] | null = null;

  /** Adds a write whose callbacks are to come. */
  #expectWrite(
    onWritten: () => void,
    onError: (error: unknown) => void,
    outcome: WriteOutcome,
  ): void {
    if (this.#writtenFirst === null) {
      this.#writtenFirst = onWritten;
      this.#failFirst = onError;
      this.#outcomeFirst = outcome;
    } else {
      (this.#moreWrites ??= []).push(onWritten, onError, outcome);
    }
  }

  /**
   * Calls back the oldest write waiting (there must be one): with its own failure if it was
   * refused or failed at once, else with `error`, else as written. The list moves on first,
   * so a callback that writes again joins it behind the rest.
   */
  #settleFirst(error: Error | null): void {
    const onWritten = this.#writtenFirst!, onError = this.#failFirst!;
    const outcome = this.#outcomeFirst;
    const more = this.#moreWrites;
    if (more !== null && more.length > 0) {
      this.#writtenFirst = more.shift() as () => void;
      this.#failFirst = more.shift() as (error: unknown) => void;
      this.#outcomeFirst = more.shift() as WriteOutcome;
    } else {
      this.#writtenFirst = null;
      this.#failFirst = null;
      this.#outcomeFirst = AWAITING_SOCKET;
    }
    if (outcome instanceof Error) error = outcome;
    if (error !== null) guarded(onError, error);
    else guarded(onWritten, undefined);
  }

  /** The socket's callback of a write (of the last piece of a corked batch). */
  #afterWrite = (error?: Error | null): void => {
    // Destroying the socket in close() calls back waiting writes at once: later, not inside it.
    if (this.#closing) return queueMicrotask(() => this.#afterWrite(error));
    // Writes settled at once ahead of the one the socket calls back for come first.
    this.#settleLeading();
    // None waiting: the link failed them all when it closed, before the socket called back.
    if (this.#writtenFirst === null) return;
    this.#settleFirst(
      error ? new TransportError(`TCP write failed: ${error.message}`, { cause: error }) : null,
    );
    this.#settleLeading(); // and those behind it, in order
  };

  /** Calls back the writes settled at once at the head of the list, oldest first. */
  #settleLeading(): void {
    while (this.#writtenFirst !== null && this.#outcomeFirst !== AWAITING_SOCKET) {
      this.#settleFirst(null);
    }
  }

  /** Fails every write still waiting for its callback (a destroyed socket need not call back). */
  #failWrites = (): void => {
    if (this.#writtenFirst === null) return;
    const error = this.#error ?? new TransportError("TCP link is closed");
    // (A write settled at once that failed keeps its own error; the others fail with the link.)
    while (this.#writtenFirst !== null) this.#settleFirst(error);
  };

  /**
   * A write settled without the socket (`outcome`: null for done, or its failure): it joins
   * the list and is called back in its turn, after the writes ahead of it, or in a microtask
   * if none is ahead. Always through the list: the socket calls back in a `nextTick`, which
   * can run before a microtask queued earlier, so a write issued after this one could
   * otherwise be called back first.
   */
  #settleNow(onWritten: () => void, onError: (error: unknown) => void, outcome: null | Error) {
    this.#expectWrite(onWritten, onError, outcome);
    if (this.#leadingScheduled) return;
    this.#leadingScheduled = true;
    queueMicrotask(
      this.#settleLeadingLater ??= () => {
        this.#leadingScheduled = false;
        this.#settleLeading();
      },
    );
  }
  #leadingScheduled = false;
  /** Made when first needed (rarely: a session never writes an empty or refused batch). */
  #settleLeadingLater: (() => void) | null = null;

  #failed = (cause: Error): void => {
    if (!this.#closed && this.#error === null) {
      this.#error = new TransportError(`TCP link failed: ${cause.message}`, { cause });
    }
    this.#end();
  };

  /** A reader waiting when the stream ended gets its end (or the failure). */
  #settleWaiting(): void {
    if (this.#onChunk === null) return;
    if (this.#error !== null && !this.#closed) this.#hand(this.#error);
    else this.#hand(null);
  }

  /**
   * Hands the waiting reader a chunk, its end, or a failure. This runs in the socket's event
   * handlers: what the reader's callbacks throw goes to its error callback, and no further.
   */
  #hand(outcome: Uint8Array | null | TransportError): void {
    const onChunk = this.#onChunk!, onError = this.#onReadError!;
    this.#onChunk = this.#onReadError = null;
    try {
      if (outcome instanceof TransportError) return guarded(onError, outcome);
      onChunk(outcome);
    } catch (error) {
      guarded(onError, error); // (what onChunk threw: its read ends in a failure instead)
    }
  }

  /** What a read gets now: a chunk, the end (null), the failure, or undefined (it waits). */
  #readNow(): Uint8Array | null | TransportError | undefined {
    if (this.#closed) return null;
    if (this.#chunks.length > 0) {
      const chunk = this.#chunks.shift()!;
      this.#held -= chunk.length;
      if (this.#held < PAUSE_AT_BYTES && this.#socket.isPaused()) this.#socket.resume();
      return chunk;
    }
    if (this.#ended) return this.#error ?? null;
    return undefined;
  }

  readThen(onChunk: (chunk: Uint8Array | null) => void, onError: (error: unknown) => void): void {
    if (this.#onChunk !== null || this.#answering) {
      return this.refuseSecondRead(onError);
    }
    const now = this.#readNow();
    if (now === undefined) {
      this.#onChunk = onChunk;
      this.#onReadError = onError;
      return;
    }
    // An answer at once, but never synchronously: handed in a microtask, and the reader is
    // not registered until then, so a chunk, end or failure that arrives meanwhile queues
    // behind it instead of overtaking it.
    this.#answering = true;
    queueMicrotask(() => {
      this.#answering = false;
      this.#onChunk = onChunk;
      this.#onReadError = onError;
      this.#hand(this.#closed ? null : now);
    });
  }

  /** A readThen answer waits for its microtask (see readThen). */
  #answering = false;

  writeThen(
    chunks: Uint8Array[],
    onWritten: () => void,
    onError: (error: unknown) => void,
  ): void {
    let refused: Error | null = null;
    if (this.#closed || this.#ended && this.#socket.destroyed) {
      refused = this.#error ?? new TransportError("TCP link is closed");
    } else if (this.#socket.writableEnded) {
      // After flush() our side is ended: a write now would make the socket fail as a whole
      // (on Deno sockets only the write fails, and the reads go on): fail the write alone.
      refused = new TransportError("TCP link is half-closed: no more writes");
    }
    if (refused !== null) return this.#settleNow(onWritten, onError, refused);
    if (chunks.length === 0) return this.#settleNow(onWritten, onError, null);
    const socket = this.#socket;
    try {
      // Small chunks are joined; a large one (a body written in place) goes as it is, and the
      // pieces of a batch go to the kernel in one writev while the socket is corked. The last
      // piece's callback settles the write; the socket calls back later, never during write().
      const pieces = gatherWrites(chunks);
      if (pieces.length === 1) socket.write(pieces[0], this.#afterWrite);
      else {
        socket.cork();
        try {
          for (let i = 0; i < pieces.length; i++) {
            socket.write(pieces[i], i === pieces.length - 1 ? this.#afterWrite : undefined);
          }
        } finally {
          socket.uncork();
        }
      }
    } catch (cause) {
      const error = new TransportError(`TCP write failed: ${(cause as Error).message}`, { cause });
      return this.#settleNow(onWritten, onError, error);
    }
    this.#expectWrite(onWritten, onError, AWAITING_SOCKET);
  }

  /**
   * A lingering close's first half: sends our FIN and resolves once the peer has closed its
   * side (see StreamLink.flush: closing with unread bytes would reset the connection and lose
   * the last frames at the peer).
   */
  flush(): Promise<void> {
    if (this.#closed || this.#ended) return Promise.resolve();
    return this.#flushing ??= new Promise<void>((resolve) => {
      this.#onEnd = resolve;
      try {
        this.#socket.end();
      } catch {
        this.#end(); // the link is gone already
      }
    });
  }

  /** The flush under way (a second call waits for the same end). */
  #flushing: Promise<void> | null = null;

  /** Set during close(): callbacks the socket makes then are deferred. */
  #closing = false;

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#chunks = [];
    this.#held = 0;
    this.#closing = true;
    try {
      this.#socket.destroy();
    } finally {
      this.#closing = false;
    }
    // A waiting reader gets its end, and waiting writes their failure, in a microtask, not
    // inside this call.
    queueMicrotask(this.#end);
    queueMicrotask(this.#failWrites);
  }
}

/** A socket's host as Deno's sockets name it (`::ffff:` kept); unknown once destroyed. */
function socketHost(address: string | undefined): string {
  return address || "0.0.0.0";
}

/** Options of a `node:net` server socket or dial: both ends may half-close (see flush). */
const SOCKET_OPTIONS = { allowHalfOpen: true, noDelay: true } as const;

/** A listener over a `node:net` server. */
export class NodeSocketListener implements Listener {
  readonly addr: string;
  #server: NodeNet.Server;
  #accepted: NodeNet.Socket[] = [];
  /** Iterators waiting for a socket, oldest first. */
  #waiting: ((socket: NodeNet.Socket | null) => void)[] = [];
  #closed = false;

  private constructor(server: NodeNet.Server, addr: string) {
    this.#server = server;
    this.addr = addr;
    server.on("connection", (socket: NodeNet.Socket) => {
      if (this.#closed) return void socket.destroy();
      // Until the listener's user takes it, a socket's errors are caught here (the link
      // that takes it replaces this listener with its own).
      socket.on("error", nothing);
      const waiting = this.#waiting.shift();
      if (waiting) waiting(socket);
      else this.#accepted.push(socket);
    });
    server.on("error", () => {}); // a failed accept does not end the listener
  }

  /** Binds `hostname:port`. */
  static listen(hostname: string, port: number): Promise<NodeSocketListener> {
    const server = nodeNet().createServer({ ...SOCKET_OPTIONS, pauseOnConnect: false });
    return new Promise((resolve, reject) => {
      const failed = (error: Error) => {
        reject(
          new TransportError(`TCP listen on ${hostname}:${port} failed: ${error.message}`, {
            cause: error,
          }),
        );
      };
      server.once("error", failed);
      server.listen({ host: hostname, port }, () => {
        server.off("error", failed);
        const bound = server.address() as NodeNet.AddressInfo;
        resolve(new NodeSocketListener(server, formatHostPort("tcp", bound.address, bound.port)));
      });
    });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Link> {
    for (;;) {
      const socket = this.#accepted.shift() ??
        (this.#closed
          ? null
          : await new Promise<NodeNet.Socket | null>((r) => this.#waiting.push(r)));
      if (socket === null) return;
      if (socket.destroyed) continue; // reset before it was taken
      yield new NodeSocketLink(socket);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#server.close();
    for (const socket of this.#accepted.splice(0)) socket.destroy();
    for (const waiting of this.#waiting.splice(0)) waiting(null);
  }
}

/** Dials `hostname:port`; `signal` aborts the dial with its reason. */
export function dialNodeSocket(
  hostname: string,
  port: number,
  signal?: AbortSignal,
): Promise<Link> {
  return new Promise<Link>((resolve, reject) => {
    signal?.throwIfAborted();
    const socket = nodeNet().connect({ ...SOCKET_OPTIONS, host: hostname, port });
    const onAbort = () => {
      socket.destroy();
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    socket.once("error", (error: Error) => {
      signal?.removeEventListener("abort", onAbort);
      reject(error);
    });
    socket.once("connect", () => {
      signal?.removeEventListener("abort", onAbort);
      resolve(new NodeSocketLink(socket));
    });
  });
}
