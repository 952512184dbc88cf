// A web page as a heartline node: it dials a node's WebSocket endpoint as a lossy client,
// sends text messages (type 1), shows what the node sends back (type 2), registers an
// out-of-band producer ("WatchPing") whose parts ride the connection's heartbeat frames, and
// lists the node events of its failure detector. No build step: it imports the bundle that
// `deno task bundle` writes to dist/ and the page's server serves beside this file.
//
// Query parameters: `node` (the address to dial; default the page's own host at /heartline),
// `name` (this node's name; default `page-` and random digits), `policy` (default
// `lossyClient`; see docs/browser.md before choosing `losslessClient`).

import { Messenger, WebSocketTransport } from "./heartline.browser.js";

/** Message type of text from the page to the node (the demo node answers with type 2). */
const TEXT = 1;

const params = new URLSearchParams(location.search);
const scheme = location.protocol === "https:" ? "wss" : "ws";
const addr = params.get("node") ?? `${scheme}://${location.host}/heartline`;
const name = params.get("name") ?? `page-${Math.floor(Math.random() * 1e6)}`;
const policy = params.get("policy") ?? "lossyClient";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

const $ = (id) => document.getElementById(id);
$("name").textContent = name;
$("addr").textContent = addr;

/** Adds a line to a list, newest first, with data attributes for tests and styles. */
function append(list, text, data = {}) {
  const li = document.createElement("li");
  li.textContent = text;
  Object.assign(li.dataset, data);
  $(list).prepend(li);
  return li;
}

function setStatus(state, text = state) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

const messenger = new Messenger({
  name,
  transports: [new WebSocketTransport()],
  logger: (level, message) => append("log", `${level}: ${message}`, { level }),
});
// For a look from the developer console.
globalThis.heartline = { messenger };

let conn = null;
let pings = 0;

async function connect() {
  $("reconnect").hidden = true;
  setStatus("connecting");
  try {
    conn = await messenger.connect(addr, { policy });
  } catch (error) {
    setStatus("error", `failed: ${error.message}`);
    $("reconnect").hidden = false;
    return;
  }
  setStatus("open");
  $("policy").textContent = conn.policy.name;
  $("peer").textContent = conn.peerName;
  $("send").disabled = false;
  // Liveness that rides the data connection: asked for a part every 500 ms, sent in the
  // next heartbeat frame together with every other producer due in that tick.
  conn.registerOob("WatchPing", () => {
    pings++;
    $("pings").textContent = String(pings);
    return encoder.encode(`${name} ${pings}`);
  }, { intervalMs: 500 });
}

async function followEvents() {
  for await (const ev of messenger.events()) {
    if (ev.connection !== conn) continue;
    if (ev.kind === "close" || ev.kind === "reset") {
      const why = ev.kind === "close" ? `closed by ${ev.by}: ${ev.reason}` : ev.error.message;
      setStatus("closed", why);
      $("send").disabled = true;
      // A lossy client does not reconnect by itself: the page decides.
      $("reconnect").hidden = false;
    }
  }
}

async function followNodeEvents() {
  for await (const ev of messenger.watch()) {
    append("events", `${ev.peer} ${ev.state} (${ev.reason})`, {
      peer: ev.peer,
      state: ev.state,
      reason: ev.reason,
    });
  }
}

async function followMessages() {
  for await (const m of messenger.messages()) {
    append("messages", `${m.connection.peerName}: ${decoder.decode(m.payload)}`, {
      type: String(m.type),
      from: m.connection.peerName ?? "",
    });
  }
}

$("send-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("text").value;
  if (!conn || !text) return;
  conn.send(TEXT, encoder.encode(text)).then(
    () => append("sent", text, { type: String(TEXT) }),
    (error) => append("log", `send failed: ${error.message}`, { level: "error" }),
  );
});
$("reconnect").addEventListener("click", () => void connect());
messenger.every(1000, () => {
  $("rtt").textContent = conn && Number.isFinite(conn.rttMs) ? `${conn.rttMs.toFixed(1)} ms` : "?";
});

// Every loop reports its own failure on the page rather than as an unhandled rejection.
for (const loop of [followEvents, followNodeEvents, followMessages]) {
  loop().catch((error) => append("log", `${loop.name}: ${error.message}`, { level: "error" }));
}
await connect();
