// One heartline node of `deno task bench:cluster --netns`, in its own network namespace (see
// ./netns.ts): it listens on its namespace's address, dials the nodes after it (one data
// connection per pair), registers U liveness users on every connection, and answers the
// harness on stdin/stdout, one line each:
//   `window`  -> starts counting (heartbeat frames and bytes sent, CPU)
//   `report`  -> prints `report {json}` with what it counted since `window`
//   `watch <name>` -> prints `down <name> <epoch ms>` when that peer goes down
//   `flood <s>` -> sends 1 KiB messages on every connection as fast as they go for s seconds,
//                  then prints `flooded {json}`: bytes sent, the highest phi seen of any peer,
//                  the longest silence of any peer and the suspect or down events meanwhile
//   `exit`    -> closes and exits
// Configuration arrives as JSON in CLUSTER_NODE.

import process from "node:process";
import { Messenger } from "../../mod.ts";
import { lines } from "../../tests/chaos/lines.ts";

interface Config {
  name: string;
  listen: string;
  dial: { name: string; addr: string }[];
  peers: number;
  users: number;
  intervalMs: number;
  minStdDevMs: number;
  key: string;
}

const config = JSON.parse(Deno.env.get("CLUSTER_NODE")!) as Config;
const encoder = new TextEncoder();
const say = (line: string) => Deno.stdout.writeSync(encoder.encode(line + "\n"));
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

const m = new Messenger({
  name: config.name,
  auth: { key: config.key },
  heartbeat: {
    intervalMs: config.intervalMs,
    acceptablePauseMs: config.intervalMs * 1.5,
    minStdDevMs: config.minStdDevMs,
  },
  logger: () => {},
});
const part = new Uint8Array(8);
for (let u = 0; u < config.users; u++) m.onOob(`user${u}`, () => {});
(async () => {
  for await (const _ of m.messages()) { /* the flood's messages: taken and dropped */ }
})().catch((error) => say(`error ${error}`));
await m.listen(config.listen);
say("ready");
for (const peer of config.dial) {
  for (let attempt = 0;; attempt++) {
    try {
      await m.connect(peer.addr, { expectName: peer.name });
      break;
    } catch (error) {
      if (attempt > 50) throw error;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}
// Every connection, dialed or accepted, carries the users once all pairs are up.
while (m.connections().filter((c) => c.state === "open").length < config.peers) {
  await new Promise((r) => setTimeout(r, 20));
}
for (const conn of m.connections()) {
  for (let u = 0; u < config.users; u++) {
    conn.registerOob(`user${u}`, () => part, { intervalMs: config.intervalMs });
  }
}
say("connected");

let watched: string | null = null, falseDowns = 0;
/** The suspect or down events of peers never stopped, as lines for the report. */
const falseEvents: string[] = [];

/** Floods every connection for `seconds` while sampling every peer's phi. */
async function flood(seconds: number): Promise<void> {
  const until = performance.now() + seconds * 1000, before = falseDowns;
  const body = new Uint8Array(1024);
  let bytes = 0, maxPhi = 0, maxSilenceMs = 0, maxLagMs = 0, lastTick = performance.now();
  const sampler = setInterval(() => {
    const t = performance.now();
    maxLagMs = Math.max(maxLagMs, t - lastTick - 50);
    lastTick = t;
    for (const p of m.peers()) {
      if (Number.isFinite(p.phi)) maxPhi = Math.max(maxPhi, p.phi);
      maxSilenceMs = Math.max(maxSilenceMs, p.lastHeardMsAgo);
    }
  }, 50);
  await Promise.all(
    m.connections().map(async (conn) => {
      while (performance.now() < until && conn.state === "open") {
        await conn.send(9, body).catch(() => {});
        bytes += body.length;
      }
    }),
  );
  clearInterval(sampler);
  const events = falseEvents.slice(before);
  say(
    `flooded ${
      JSON.stringify({ bytes, maxPhi, maxSilenceMs, maxLagMs, events: events.length, list: events })
    }`,
  );
}
(async () => {
  for await (const e of m.watch()) {
    if (e.state === "up" || e.reason === "current" || e.reason === "closed") continue;
    if (e.peer === watched) {
      if (e.state === "down") say(`down ${e.peer} ${Date.now()}`);
    } else {
      falseDowns++;
      falseEvents.push(
        `${config.name} saw ${e.peer} ${e.state} (${e.reason}, phi ${e.phi.toFixed(1)})`,
      );
    }
  }
})().catch((error) => say(`error ${error}`));

let start = { frames: 0, bytes: 0, cpu: 0, t: 0 };
for await (const line of lines(Deno.stdin.readable)) {
  const [cmd, arg] = line.split(" ");
  const s = m.oobStats;
  if (cmd === "window") {
    start = { frames: s.heartbeatFramesSent, bytes: s.heartbeatBytesSent, cpu: cpuMs(), t: 0 };
    start.t = performance.now();
  } else if (cmd === "report") {
    const seconds = (performance.now() - start.t) / 1000;
    say(`report ${
      JSON.stringify({
        frames: (s.heartbeatFramesSent - start.frames) / seconds,
        bytes: (s.heartbeatBytesSent - start.bytes) / seconds,
        cpu: (cpuMs() - start.cpu) / seconds,
        sockets: m.connections().length,
        falseDowns,
      })
    }`);
  } else if (cmd === "flood") {
    // Never left to reject unhandled: a failed flood answers with its error.
    flood(Number(arg)).catch((error) => say(`flooded ${JSON.stringify({ error: String(error) })}`));
  } else if (cmd === "watch") {
    watched = arg;
  } else if (cmd === "exit") {
    await Promise.race([m.close(), new Promise((r) => setTimeout(r, 500))]);
    Deno.exit(0);
  }
}
