/**
 * The live feed behind the cluster page and `heartline watch`: a sample of every peer (state,
 * phi, RTT), the heartbeat counters and the connections, taken from the messenger's own timer
 * wheel, with a bounded history so a page opened late still draws the last minutes; and every
 * node event as it happens.
 *
 * @module
 */

import { Broadcast } from "../_async_queue.ts";
import type { Messenger } from "../messenger.ts";
import type { NodeEvent, PeerState } from "../health/health.ts";

/** One peer in a {@linkcode LiveSample}. */
export interface LivePeer {
  /** Node name. */
  name: string;
  /** `up`, `suspect` or `down`. */
  state: PeerState;
  /** Current phi (`null` when unknown, as in local mode). */
  phi: number | null;
  /** Last round-trip time, ms (`null` before the first echo). */
  rttMs: number | null;
  /** Milliseconds since anything arrived from the peer. */
  lastHeardMsAgo: number;
  /** Open connections to the peer. */
  connections: number;
  /** New incarnations of the peer seen so far. */
  restarts: number;
}

/** One sample of the live feed. */
export interface LiveSample {
  /** Wall-clock time of the sample, ms since the epoch. */
  time: number;
  /** Every peer this node knows. */
  peers: LivePeer[];
  /** Heartbeat counters since the messenger started (rates are differences of samples). */
  heartbeat: {
    /** Heartbeat frames sent. */
    framesSent: number;
    /** Heartbeat frames received. */
    framesReceived: number;
    /** Bytes of heartbeat frames sent. */
    bytesSent: number;
    /** OOB parts sent in those frames, all ops together. */
    partsSent: number;
    /** OOB parts received, all ops together. */
    partsReceived: number;
  };
  /** Connections that are not closed, counted by state and by transport scheme. */
  connections: { byState: Record<string, number>; byTransport: Record<string, number> };
}

/** A node event as the feed carries it: with the wall-clock time it was seen. */
export interface LiveNodeEvent {
  /** Wall-clock time, ms since the epoch. */
  time: number;
  /** The peer's node name. */
  peer: string;
  /** Its new state. */
  state: PeerState;
  /** Why (`connected`, `silent`, `restarted`, ...; see `NodeEvent.reason`). */
  reason: string;
  /** Phi when the change was seen (`null` when not a number). */
  phi: number | null;
  /** Last round-trip time, ms (`null` when unknown). */
  rttMs: number | null;
  /** `global`, or the local watcher's name. */
  watcher: string;
}

/** An item of a live subscription. */
export type LiveItem =
  | { kind: "sample"; sample: LiveSample }
  | { kind: "node"; event: LiveNodeEvent };

/** Options of {@linkcode LiveFeed}. */
export interface LiveFeedOptions {
  /** Milliseconds between samples. Default 1000. */
  sampleMs?: number;
  /** Samples kept for a newcomer. Default 300 (five minutes at one a second). */
  historySamples?: number;
  /** Node events kept for a newcomer. Default 100. */
  historyEvents?: number;
}

function finite(n: number): number | null {
  return Number.isFinite(n) ? n : null;
}

function sum(map: ReadonlyMap<string, number>): number {
  let n = 0;
  for (const v of map.values()) n += v;
  return n;
}

/** Takes one sample of `messenger` now. */
export function sampleMessenger(messenger: Messenger): LiveSample {
  const oob = messenger.oobStats;
  const byState: Record<string, number> = {};
  const byTransport: Record<string, number> = {};
  for (const conn of messenger.connections()) {
    byState[conn.state] = (byState[conn.state] ?? 0) + 1;
    const scheme = conn.remoteAddr.split(":")[0];
    byTransport[scheme] = (byTransport[scheme] ?? 0) + 1;
  }
  return {
    time: Date.now(),
    peers: messenger.peers().map((p) => ({
      name: p.name,
      state: p.state,
      phi: finite(p.phi),
      rttMs: finite(p.rttMs),
      lastHeardMsAgo: Math.round(p.lastHeardMsAgo),
      connections: p.connections,
      restarts: p.restarts,
    })),
    heartbeat: {
      framesSent: oob.heartbeatFramesSent,
      framesReceived: oob.heartbeatFramesReceived,
      bytesSent: oob.heartbeatBytesSent,
      partsSent: sum(oob.partsSent),
      partsReceived: sum(oob.partsReceived),
    },
    connections: { byState, byTransport },
  };
}

function liveEvent(e: NodeEvent): LiveNodeEvent {
  return {
    time: Date.now(),
    peer: e.peer,
    state: e.state,
    reason: e.reason,
    phi: finite(e.phi),
    rttMs: finite(e.rttMs),
    watcher: e.watcher,
  };
}

/**
 * Samples a messenger from its own timer wheel and follows its node events; any number of
 * subscribers. It stops by itself when the messenger closes.
 *
 * @example
 * ```ts
 * import { Messenger } from "../messenger.ts";
 * import { LiveFeed } from "./live.ts";
 * const messenger = new Messenger({ name: "a" });
 * const feed = new LiveFeed(messenger, { sampleMs: 100 });
 * if (feed.history().samples.length !== 1) throw new Error("no first sample");
 * await messenger.close();
 * ```
 */
export class LiveFeed {
  #messenger: Messenger;
  #samples: LiveSample[] = [];
  #events: LiveNodeEvent[] = [];
  #maxSamples: number;
  #maxEvents: number;
  #stream = new Broadcast<LiveItem>(1000);

  /** Starts sampling `messenger` (a closed messenger gives an empty, finished feed). */
  constructor(messenger: Messenger, options: LiveFeedOptions = {}) {
    this.#messenger = messenger;
    this.#maxSamples = options.historySamples ?? 300;
    this.#maxEvents = options.historyEvents ?? 100;
    if (messenger.status !== "running") {
      this.#stream.close();
      return;
    }
    this.#sample();
    messenger.every(options.sampleMs ?? 1000, () => this.#sample());
    messenger._onClose(() => this.#stream.close());
    this.#follow().catch((error) => console.error("heartline: live feed stopped:", error));
  }

  /** What a newcomer draws first: the samples and node events kept. */
  history(): { samples: LiveSample[]; events: LiveNodeEvent[] } {
    return { samples: [...this.#samples], events: [...this.#events] };
  }

  /** Samples and node events from now on, until `signal` aborts or the messenger closes. */
  subscribe(signal?: AbortSignal): AsyncIterable<LiveItem> {
    return this.#stream.subscribe(signal);
  }

  #sample(): void {
    const sample = sampleMessenger(this.#messenger);
    this.#samples.push(sample);
    if (this.#samples.length > this.#maxSamples) this.#samples.shift();
    this.#stream.publish({ kind: "sample", sample });
  }

  async #follow(): Promise<void> {
    for await (const e of this.#messenger.nodeEvents()) {
      if (e.reason === "current") continue;
      const event = liveEvent(e);
      this.#events.push(event);
      if (this.#events.length > this.#maxEvents) this.#events.shift();
      this.#stream.publish({ kind: "node", event });
      // A sample at each change too: phi climbs steeply, and a crossing between two samples
      // a second apart would never show on the plot.
      this.#sample();
    }
  }
}
