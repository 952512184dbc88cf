// One node of the chaos harness (tests/chaos/main.ts), run in its own network namespace: it
// listens on its namespace's address, keeps a lossless peer session and a lossy connection of
// its own to every other node, sends numbered messages on both, registers three liveness users
// per lossless session, and writes every send, receipt, return, node event and error to its
// own log, one JSON line each, synchronously (a `kill -9` loses nothing already written).
//
// Node events also go to stdout (`N <peer> <state>`). Commands arrive on stdin, one per line: `stop` (stop sending, report `drained` on stdout
// once every lossless queue is empty) and `exit` (log memory, close, exit 0). Configuration
// arrives as JSON in the environment variable CHAOS_NODE (see `NodeConfig` in ./report.ts).

import { type Connection, Messenger, type PolicyName } from "../../mod.ts";
import type { LogRecord, NodeConfig } from "./report.ts";
import { lines } from "./lines.ts";

const config = JSON.parse(Deno.env.get("CHAOS_NODE")!) as NodeConfig;
const encoder = new TextEncoder(), decoder = new TextDecoder();
const file = Deno.openSync(config.log, { write: true, create: true, append: true });
let unhandled = 0;

/** Appends one record to this incarnation's log before going on. */
function log(record: LogRecord): void {
  const bytes = encoder.encode(JSON.stringify({ ...record, t: Date.now() }) + "\n");
  for (let at = 0; at < bytes.length;) at += file.writeSync(bytes.subarray(at));
}

function say(line: string): void {
  Deno.stdout.writeSync(encoder.encode(line + "\n"));
}

globalThis.addEventListener("unhandledrejection", (e) => {
  e.preventDefault(); // counted and logged; the harness fails the run on any
  unhandled++;
  log({ e: "err", what: "unhandledrejection", msg: String(e.reason?.stack ?? e.reason) });
});
globalThis.addEventListener("error", (e) => {
  e.preventDefault();
  unhandled++;
  log({ e: "err", what: "error", msg: String(e.error?.stack ?? e.message) });
});

const messenger = new Messenger({
  name: config.name,
  auth: { key: config.key },
  heartbeat: config.heartbeat,
  logger: (level, message) => {
    if (level === "error") log({ e: "log", level, msg: message });
  },
});
const peers = config.peers;
const USERS = ["OSDPing", "LingerPing", "WatchPing"];
const oobReceived: Record<string, number> = Object.fromEntries(USERS.map((u) => [u, 0]));
for (const user of USERS) messenger.onOob(user, () => void oobReceived[user]++);

const KIND_TYPE = { L: 1, Y: 2 } as const;
type Kind = keyof typeof KIND_TYPE;

/** Decodes one of our message bodies: `kind from incarnation seq`. */
function parse(payload: Uint8Array): { k: Kind; from: string; inc: number; seq: number } {
  const [k, from, inc, seq] = decoder.decode(payload).split(" ");
  return { k: k as Kind, from, inc: Number(inc), seq: Number(seq) };
}

async function receive(): Promise<void> {
  for await (const m of messenger.messages()) {
    const { k, from, inc, seq } = parse(m.payload);
    log({ e: "R", k, from, inc, seq });
  }
}

async function events(): Promise<void> {
  for await (const ev of messenger.events()) {
    if (ev.kind === "remote-reset") {
      log({ e: "RR", peer: ev.connection.peerName ?? "?", lost: ev.lost, reason: ev.reason });
      for (const m of ev.unacked) {
        const { k, seq } = parse(m.payload);
        log({ e: "U", k, to: ev.connection.peerName ?? "?", seq });
      }
    } else if (ev.kind === "reset") {
      for (const m of ev.unsent) {
        const { k, seq } = parse(m.payload);
        log({ e: "U", k, to: ev.connection.peerName ?? "?", seq });
      }
    }
  }
}

async function watch(): Promise<void> {
  for await (const ev of messenger.watch()) {
    // A subscriber's first events are the current states: not changes, but the harness needs
    // them (a peer that connected before the subscription would otherwise never be "up").
    if (ev.reason !== "current") log({ e: "N", peer: ev.peer, state: ev.state, reason: ev.reason });
    say(`N ${ev.peer} ${ev.state}`); // the harness waits for everyone up between faults
  }
}

let sending = true;
const backlog = new Map<string, () => number>();

/** Sends `kind` messages to `peer` at the configured rate, reconnecting whenever needed. */
async function sender(peer: { name: string; addr: string }, k: Kind): Promise<void> {
  const policy: PolicyName = k === "L" ? "losslessPeer" : "lossyClient";
  let conn: Connection | null = null;
  let seq = 0;
  backlog.set(
    `${k}:${peer.name}`,
    () => (conn?.queuedMessages ?? 0) + (conn?.unackedMessages ?? 0),
  );
  const period = 1000 / config.rate;
  while (sending) {
    if (!conn || conn.state === "closed") {
      try {
        conn = await messenger.connect(peer.addr, { policy, expectName: peer.name });
        if (k === "L") {
          for (const user of USERS) {
            conn.registerOob(user, () => encoder.encode(user), { intervalMs: config.oobMs });
          }
        }
      } catch {
        conn = null;
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
    }
    seq++;
    const body = encoder.encode(`${k} ${config.name} ${config.incarnation} ${seq}`);
    log({ e: "S", k, to: peer.name, seq });
    // Not awaited in turn: a send that waits (a partition) must not hold back the next tick.
    conn.send(KIND_TYPE[k], body).catch((error) =>
      log({ e: "F", k, to: peer.name, seq, why: String((error as Error).name) })
    );
    await new Promise((r) => setTimeout(r, period));
  }
}

async function commands(): Promise<void> {
  for await (const cmd of lines(Deno.stdin.readable)) {
    if (cmd === "stop") {
      sending = false;
      // Drained once nothing lossless is queued or unacknowledged (at most 10 s).
      for (let i = 0; i < 200; i++) {
        const left = [...backlog.entries()].filter(([key, n]) => key.startsWith("L:") && n() > 0);
        if (left.length === 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      say("drained");
    } else if (cmd === "dump") {
      // What this node thinks, for a run that did not recover (the harness asks).
      const conns = messenger.connections().map((c) => ({
        id: c.id,
        peer: c.peerName,
        policy: c.policy.name,
        state: c.state,
        side: c.side,
        link: c.linkEpoch,
        rtt: c.rttMs,
      }));
      log({ e: "dump", peers: messenger.peers(), conns });
    } else if (cmd === "exit") {
      const { rss, heapUsed } = Deno.memoryUsage();
      log({ e: "mem", phase: "end", rss, heap: heapUsed });
      log({ e: "O", counts: oobReceived, unhandled });
      await messenger.close();
      log({ e: "end" });
      file.close();
      Deno.exit(0);
    }
  }
}

log({ e: "start", inc: config.incarnation, nonce: messenger.nonce });
await messenger.listen(config.listen);
say("ready");
/** A background loop that failed: logged and counted, so the run fails, never unhandled. */
const failed = (what: string) => (error: unknown) => {
  unhandled++;
  log({ e: "err", what, msg: String((error as Error)?.stack ?? error) });
};
receive().catch(failed("receive"));
events().catch(failed("events"));
watch().catch(failed("watch"));
commands().catch(failed("commands"));
for (const peer of peers) {
  sender(peer, "L").catch(failed(`sender L ${peer.name}`));
  sender(peer, "Y").catch(failed(`sender Y ${peer.name}`));
}
setTimeout(() => {
  const { rss, heapUsed } = Deno.memoryUsage();
  log({ e: "mem", phase: "start", rss, heap: heapUsed });
}, 3000);
