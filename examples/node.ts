/**
 * One heartline node: listens, dials its peers, sends a greeting to every peer each second,
 * prints what it receives and the round-trip time its heartbeats measure, and serves the admin
 * endpoint if asked. Ctrl-C closes it in order.
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

const { values } = parseArgs({
  args: Deno.args,
  options: {
    name: { type: "string", default: `node-${Deno.pid}` },
    listen: { type: "string", default: "tcp://127.0.0.1:0" },
    peer: { type: "string", multiple: true, default: [] },
    "admin-port": { type: "string" },
    "every-ms": { type: "string", default: "1000" },
    seconds: { type: "string" },
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
const envGranted =
  Deno.permissions.querySync({ name: "env", variable: "HEARTLINE_KEY" }).state === "granted";
const clusterKey = envGranted ? Deno.env.get("HEARTLINE_KEY") : undefined;
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

const addr = await messenger.listen(values.listen!);
say(`listening on ${addr}`);
if (values["admin-port"] !== undefined) {
  const admin = await serveAdmin(messenger, { port: Number(values["admin-port"]) });
  say(`admin endpoint at ${admin.url}/health`);
}

// Application-level liveness on the data connection: a "demo.ping" OOB part each second,
// coalesced with the messenger's own keepalive into one heartbeat frame.
messenger.onOob("demo.ping", () => {});
function watch(conn: Connection): void {
  conn.registerOob("demo.ping", () => encoder.encode(name), { intervalMs: 1000 });
}

(async () => {
  for await (const ev of messenger.events()) {
    if (ev.kind === "connect" || ev.kind === "accept") {
      say(`${ev.kind}: ${ev.connection.peerName} (${ev.connection.remoteAddr})`);
      watch(ev.connection);
    } else if (ev.kind === "close") {
      say(`closed by ${ev.by}: ${ev.connection.peerName ?? ev.connection.remoteAddr}`);
    } else if (ev.kind === "reset") {
      say(`reset: ${ev.connection.peerName}: ${ev.error.message} (${ev.unsent.length} unsent)`);
    }
  }
})();

(async () => {
  for await (const m of messenger.messages()) {
    const rtt = Number.isNaN(m.connection.rttMs) ? "-" : `${m.connection.rttMs.toFixed(2)} ms`;
    say(`got "${decoder.decode(m.payload)}" from ${m.connection.peerName} (rtt ${rtt})`);
  }
})();

// Dial peers; they may not be up yet, so retry with capped backoff.
for (const peer of values.peer ?? []) {
  (async () => {
    for (let delay = 100; messenger.status === "running"; delay = Math.min(delay * 2, 2000)) {
      try {
        await messenger.connect(peer);
        return;
      } catch {
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  })();
}

let n = 0;
const ticker = setInterval(() => {
  n++;
  for (const conn of messenger.connections()) {
    if (conn.state !== "open") continue;
    conn.send(1, encoder.encode(`hello #${n} from ${name}`)).catch(() => {});
  }
}, everyMs);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  clearInterval(ticker);
  say("closing");
  await messenger.close();
  say("closed");
  Deno.exit(0);
}
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
if (values.seconds !== undefined) setTimeout(stop, Number(values.seconds) * 1000);
