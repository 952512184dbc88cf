/**
 * One heartline node: listens, dials its peers with the `losslessPeer` policy, sends every
 * peer numbered messages (`--every-ms`), checks that each peer's messages arrive exactly once
 * and in order, runs three liveness users per connection that ride the heartbeats as
 * out-of-band parts (OSDPing, LingerPing, WatchPing, named after the Ceph users the idea
 * comes from), prints node events from the failure detector, and serves the admin endpoint if
 * asked. Ctrl-C (or SIGTERM) closes it in order.
 *
 * ```sh
 * deno run --allow-net=127.0.0.1 examples/node.ts --name a --listen tcp://127.0.0.1:6801
 * deno run --allow-net=127.0.0.1 examples/node.ts --name w --listen ws://127.0.0.1:6803/heartline
 * deno run --allow-net=127.0.0.1 examples/node.ts --name b --listen tcp://127.0.0.1:6802 \
 *   --peer tcp://127.0.0.1:6801 --admin-port 9102
 * HEARTLINE_KEY=... deno run --allow-net --allow-env=HEARTLINE_KEY examples/node.ts --name c \
 *   --listen tcp://0.0.0.0:6804   # beyond loopback: a key (or --insecure) is required
 * ```
 *
 * With `--report` the node also prints machine-readable lines for a harness (the demo,
 * examples/cluster.ts): each starts with `@json ` and holds one {@linkcode Report}.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  type Connection,
  Messenger,
  TcpTransport,
  type Transport,
  WebSocketTransport,
} from "../mod.ts";
import { serveAdmin } from "../admin.ts";
import { clusterKeyFromEnv, dialUntilUp } from "./_peers.ts";

/** The liveness users each node runs on every connection, and their intervals in ms. */
const OOB_USERS: Readonly<Record<string, number>> = {
  OSDPing: 1000,
  LingerPing: 1000,
  WatchPing: 2000,
};

/** What a receiver saw of the numbered messages of one sender incarnation. */
export interface StreamReport {
  /** The sender's node name. */
  from: string;
  /** The sender's instance nonce: its numbering starts afresh when it restarts. */
  incarnation: string;
  /** The first number received (1 unless earlier ones went to a previous incarnation of ours). */
  first: number;
  /** The highest number received. */
  last: number;
  /** Distinct numbers received. */
  delivered: number;
  /** Numbers received more than once. */
  duplicated: number;
  /** Messages that arrived after one with a higher number. */
  reordered: number;
}

/** A machine-readable line of `--report` (printed as `@json <JSON>`). */
export type Report =
  | {
    /** The node listens. */
    kind: "ready";
    name: string;
    incarnation: string;
    addr: string;
    /** The admin endpoint's base URL, if served. */
    admin?: string;
    /** The liveness users registered on every connection: op and interval in ms. */
    oobUsers: Record<string, number>;
    /** The heartbeat settings the failure detector works with. */
    heartbeat: { intervalMs: number; phiThreshold: number; acceptablePauseMs: number };
  }
  | {
    /** A node event from the failure detector; `wallMs` is `Date.now()` when it was seen. */
    kind: "node";
    peer: string;
    state: string;
    reason: string;
    wallMs: number;
  }
  | {
    /** A peer restarted: the lossless session with its old incarnation was reset. */
    kind: "remote-reset";
    peer: string;
    /** Messages written to the old incarnation and never acknowledged. */
    unacked: number;
    reason: string;
  }
  | {
    /** The node closed in order: its final counts. */
    kind: "final";
    name: string;
    incarnation: string;
    /** Messages handed to `send()` per peer name, numbered 1..n (failed sends included). */
    sent: Record<string, number>;
    /** Sends that rejected, per peer name. */
    failed: Record<string, number>;
    /** Per sender incarnation, what arrived. */
    received: StreamReport[];
    /** Heartbeat frames sent (each carries the node's own keepalive and the parts due). */
    heartbeatFrames: number;
    /** OOB parts sent, by op. */
    partsSent: Record<string, number>;
    /** OOB parts handled, by op. */
    partsHandled: Record<string, number>;
  };

const { values } = parseArgs({
  args: Deno.args,
  options: {
    name: { type: "string", default: `node-${Deno.pid}` },
    listen: { type: "string", default: "tcp://127.0.0.1:0" },
    peer: { type: "string", multiple: true, default: [] },
    "admin-port": { type: "string" },
    "every-ms": { type: "string", default: "1000" },
    seconds: { type: "string" },
    // Machine-readable `@json` lines for a harness (examples/cluster.ts).
    report: { type: "boolean", default: false },
    // For quic:// addresses (run with --unstable-net): PEM files of the certificate chain,
    // its key, and the CA that peers' certificates are signed by.
    cert: { type: "string" },
    key: { type: "string" },
    ca: { type: "string" },
    // Authentication: a cluster-wide key, read from the environment so that it stays out of
    // the process list (HEARTLINE_KEY); --insecure allows a keyless listener beyond loopback.
    insecure: { type: "boolean", default: false },
  },
});

const name = values.name!;
const everyMs = Number(values["every-ms"]);
const transports: Transport[] = [new TcpTransport(), new WebSocketTransport()];
if (values.cert && values.key && values.ca) {
  // Loaded only when asked for: QUIC needs --unstable-net.
  const { QuicTransport } = await import("../transports/quic.ts");
  transports.push(
    new QuicTransport({
      cert: await Deno.readTextFile(values.cert),
      key: await Deno.readTextFile(values.key),
      caCerts: [await Deno.readTextFile(values.ca)],
    }),
  );
}
const clusterKey = clusterKeyFromEnv();
const messenger = new Messenger({
  name,
  transports,
  auth: clusterKey ? { key: clusterKey } : undefined,
  insecure: values.insecure,
});
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function say(line: string): void {
  console.log(`[${name}] ${line}`);
}

function report(r: Report): void {
  if (values.report) console.log(`@json ${JSON.stringify(r)}`);
}

/** Runs a background loop; a failure is printed, never an unhandled rejection. */
function background(what: string, loop: () => Promise<void>): Promise<void> {
  return loop().catch((error) => say(`${what} failed: ${(error as Error)?.stack ?? error}`));
}

const addr = await messenger.listen(values.listen!);
say(`listening on ${addr}`);
let adminUrl: string | undefined;
if (values["admin-port"] !== undefined) {
  const admin = await serveAdmin(messenger, { port: Number(values["admin-port"]) });
  adminUrl = admin.url;
  say(`admin endpoint at ${admin.url}/health`);
}
report({
  kind: "ready",
  name,
  incarnation: messenger.nonce,
  addr,
  admin: adminUrl,
  oobUsers: { ...OOB_USERS },
  heartbeat: {
    intervalMs: messenger.heartbeat.intervalMs,
    phiThreshold: messenger.heartbeat.phiThreshold,
    acceptablePauseMs: messenger.heartbeat.acceptablePauseMs,
  },
});

// Liveness users on the data connection: each registers its own OOB producer on every
// connection, and the messenger coalesces every part due in a tick (with its own keepalive)
// into one heartbeat frame. Their handlers count what arrives.
const handled = new Map<string, number>();
const handledThisSecond = new Map<string, number>();
for (const op of Object.keys(OOB_USERS)) {
  messenger.onOob(op, () => {
    handled.set(op, (handled.get(op) ?? 0) + 1);
    handledThisSecond.set(op, (handledThisSecond.get(op) ?? 0) + 1);
  });
}
const registered = new WeakSet<Connection>();
function registerUsers(conn: Connection): void {
  if (registered.has(conn)) return;
  registered.add(conn);
  for (const [op, intervalMs] of Object.entries(OOB_USERS)) {
    const data = encoder.encode(`${op} from ${name}`);
    conn.registerOob(op, () => data, { intervalMs });
  }
}

const events = background("event loop", async () => {
  for await (const ev of messenger.events()) {
    const peer = ev.connection.peerName ?? ev.connection.remoteAddr;
    if (ev.kind === "connect" || ev.kind === "accept") {
      say(`${ev.kind}: ${peer} (${ev.connection.remoteAddr})`);
      registerUsers(ev.connection);
    } else if (ev.kind === "close") {
      say(`closed by ${ev.by}: ${peer}`);
    } else if (ev.kind === "reset") {
      say(`reset: ${peer}: ${ev.error.message} (${ev.unsent.length} unsent)`);
    } else if (ev.kind === "disconnect") {
      say(`link to ${peer} lost (${ev.error.message}); the lossless session waits`);
    } else if (ev.kind === "resume") {
      say(`resumed the session with ${peer} (${ev.replayed} replayed)`);
    } else if (ev.kind === "remote-reset") {
      say(
        `${peer} came back as a new incarnation (${ev.reason}); ${ev.lost} unacknowledged ` +
          `message(s) died with the old one`,
      );
      report({ kind: "remote-reset", peer, unacked: ev.lost, reason: ev.reason });
    }
  }
});

const watching = background("node event loop", async () => {
  for await (const ev of messenger.watch()) {
    if (ev.reason === "current") continue;
    say(`node ${ev.peer} is ${ev.state} (${ev.reason})`);
    report({ kind: "node", peer: ev.peer, state: ev.state, reason: ev.reason, wallMs: Date.now() });
  }
});

// Every peer's numbered messages, per incarnation of the sender: exactly once and in order?
class Stream {
  first = 0;
  last = 0;
  duplicated = 0;
  reordered = 0;
  seen = new Set<number>();
  /** Numbers received since the last progress line. */
  window: number[] = [];
  constructor(readonly from: string, readonly incarnation: string) {}
  add(n: number): void {
    if (this.seen.has(n)) {
      this.duplicated++;
      return;
    }
    if (this.seen.size === 0) this.first = n;
    if (n < this.last) this.reordered++;
    this.seen.add(n);
    this.last = Math.max(this.last, n);
    this.window.push(n);
  }
  report(): StreamReport {
    const { from, incarnation, first, last, duplicated, reordered } = this;
    return { from, incarnation, first, last, delivered: this.seen.size, duplicated, reordered };
  }
}
const streams = new Map<string, Stream>();
const HELLO = /^hello #(\d+) from (\S+) \(incarnation ([0-9a-f]+)\)$/;
let rttNote = "-";
const receiving = background("message loop", async () => {
  for await (const m of messenger.messages()) {
    const text = decoder.decode(m.payload);
    const match = HELLO.exec(text);
    if (!match) {
      say(`got "${text}" from ${m.connection.peerName}`);
      continue;
    }
    const [, n, from, incarnation] = match;
    const key = `${from}/${incarnation}`;
    let stream = streams.get(key);
    if (!stream) streams.set(key, stream = new Stream(from, incarnation));
    stream.add(Number(n));
    if (!Number.isNaN(m.connection.rttMs)) rttNote = `${m.connection.rttMs.toFixed(2)} ms`;
  }
});

// One progress line a second: which numbers came from whom, and the OOB parts handled.
function progress(): void {
  const got: string[] = [];
  for (const s of streams.values()) {
    if (s.window.length === 0) continue;
    const lo = Math.min(...s.window), hi = Math.max(...s.window);
    got.push(`${lo === hi ? `#${lo}` : `#${lo}-#${hi}`} from ${s.from}`);
    s.window = [];
  }
  const oob = Object.keys(OOB_USERS).map((op) => `${op} ${handledThisSecond.get(op) ?? 0}`);
  handledThisSecond.clear();
  if (got.length > 0) say(`got "hello ${got.join(", ")}" (rtt ${rttNote}); oob ${oob.join(", ")}`);
}
const progressTimer = setInterval(progress, 1000);

// Dial peers; they may not be up yet, so retry with capped backoff. Lossless peer sessions:
// either node may dial, a fault is resumed with nothing lost, and a restarted peer is told
// apart by its new instance nonce.
for (const peer of values.peer ?? []) {
  background(`dialing ${peer}`, () => dialUntilUp(messenger, peer, { policy: "losslessPeer" }));
}

// Numbered messages, per peer name; the incarnation in each says where a numbering starts.
const sent = new Map<string, number>();
const failed = new Map<string, number>();
const ticker = setInterval(() => {
  for (const conn of messenger.connections()) {
    const peer = conn.peerName;
    if (conn.state !== "open" || peer === undefined) continue;
    const n = (sent.get(peer) ?? 0) + 1;
    sent.set(peer, n);
    const text = `hello #${n} from ${name} (incarnation ${messenger.nonce})`;
    conn.send(1, encoder.encode(text)).catch(() => failed.set(peer, (failed.get(peer) ?? 0) + 1));
  }
}, everyMs);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  clearInterval(ticker);
  say("closing");
  // An orderly close writes what is queued and reads the peers' messages until their Close,
  // so the counts below are final.
  await messenger.close();
  await Promise.all([receiving, events, watching]);
  clearInterval(progressTimer);
  progress();
  const stats = messenger.oobStats;
  report({
    kind: "final",
    name,
    incarnation: messenger.nonce,
    sent: Object.fromEntries(sent),
    failed: Object.fromEntries(failed),
    received: [...streams.values()].map((s) => s.report()),
    heartbeatFrames: stats.heartbeatFramesSent,
    partsSent: Object.fromEntries(stats.partsSent),
    partsHandled: Object.fromEntries(handled),
  });
  say("closed");
  Deno.exit(0);
}
function stopOnSignal(): void {
  stop().catch((error) => {
    say(`close failed: ${(error as Error)?.stack ?? error}`);
    Deno.exit(1);
  });
}
Deno.addSignalListener("SIGINT", stopOnSignal);
Deno.addSignalListener("SIGTERM", stopOnSignal);
if (values.seconds !== undefined) setTimeout(stopOnSignal, Number(values.seconds) * 1000);
