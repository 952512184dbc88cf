/**
 * An edge node: what an edge platform allows and nothing more. It serves one HTTP port with
 * `Deno.serve` (the admin routes and heartline's WebSocket endpoint, `/heartline`), dials its
 * peers outbound (TCP or WebSocket), greets every peer each second and prints what it receives.
 * No `Deno.listen`, no unstable flag, no file system: it runs with `--allow-net` alone.
 * Ctrl-C (or SIGTERM) closes it in order.
 *
 * ```sh
 * deno task node --name a --listen tcp://127.0.0.1:6801            # a TCP node to join
 * deno run --allow-net examples/edge.ts --name e --port 8000 --peer tcp://127.0.0.1:6801
 * deno task node --name b --listen tcp://127.0.0.1:6802 --peer ws://127.0.0.1:8000/heartline
 * ```
 *
 * Flags: `--hostname` (default 127.0.0.1), `--port` (0 picks one), `--peer` (repeatable),
 * `--token` (bearer token of the admin routes; peers on the WebSocket route need none),
 * `--key` (cluster-wide key; `HEARTLINE_KEY` is read instead only when env access to it is
 * granted), `--insecure` (serve beyond loopback without a key), `--every-ms`, `--seconds`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type Connection, Messenger, TcpTransport, WebSocketTransport } from "../mod.ts";
import { serveNode } from "../admin.ts";
import { clusterKeyFromEnv, dialUntilUp } from "./_peers.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    name: { type: "string", default: `edge-${Deno.pid}` },
    hostname: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "0" },
    peer: { type: "string", multiple: true, default: [] },
    token: { type: "string" },
    key: { type: "string" },
    insecure: { type: "boolean", default: false },
    "every-ms": { type: "string", default: "1000" },
    seconds: { type: "string" },
  },
});

const name = values.name!;
const everyMs = Number(values["every-ms"]);
const clusterKey = values.key ?? clusterKeyFromEnv();
const messenger = new Messenger({
  name,
  // TCP only dials here (Deno.connect); WebSocket dials and, through serveNode, accepts.
  transports: [new TcpTransport(), new WebSocketTransport()],
  auth: clusterKey ? { key: clusterKey } : undefined,
  insecure: values.insecure,
});
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function say(line: string): void {
  console.log(`[${name}] ${line}`);
}

const node = await serveNode(messenger, {
  hostname: values.hostname,
  port: Number(values.port),
  token: values.token,
}).catch(async (error) => {
  // Beyond loopback without a key, for one: say so and stop, with nothing left open.
  console.error(`[${name}] ${(error as Error).message} (flags: --key, --insecure)`);
  await messenger.close();
  Deno.exit(1);
});
say(`admin endpoint at ${node.url}/health`);
say(`accepting peers at ${node.addr}`);

// Application-level liveness on the data connection, coalesced with the keepalive.
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
})().catch((e) => say(`event loop failed: ${e}`));

(async () => {
  for await (const m of messenger.messages()) {
    const rtt = Number.isNaN(m.connection.rttMs) ? "-" : `${m.connection.rttMs.toFixed(2)} ms`;
    say(`got "${decoder.decode(m.payload)}" from ${m.connection.peerName} (rtt ${rtt})`);
  }
})().catch((e) => say(`message loop failed: ${e}`));

// Dial peers outbound; they may not be up yet, so retry with capped backoff.
for (const peer of values.peer ?? []) dialUntilUp(messenger, peer);

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
  await messenger.close(); // closes its connections, then the server
  say("closed");
  Deno.exit(0);
}
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
if (values.seconds !== undefined) setTimeout(stop, Number(values.seconds) * 1000);
