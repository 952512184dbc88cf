// The live cluster page: follows the admin endpoint's event stream (GET events, server-sent
// events read with fetch so that the bearer token can travel in a header) and draws it with
// uPlot. No build step: this file is served as it is.
/* global uPlot */
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = ["#58a6ff", "#3fb950", "#d29922", "#f85149", "#bc8cff", "#39c5cf", "#ff9bce"];
const WINDOW_S = 300;

const state = {
  token: null,
  samples: [],
  events: [],
  peerNames: [],
  lastEventByPeer: new Map(),
  charts: {},
  threshold: 8,
};

// The token comes from the URL fragment (never sent to the server, never logged), is kept for
// this tab only, and is dropped from the address bar.
function readToken() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    sessionStorage.setItem("heartline.token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("heartline.token");
}

function headers() {
  return state.token ? { authorization: `Bearer ${state.token}` } : {};
}

function setFeed(text, kind) {
  const el = $("feed");
  el.textContent = text;
  el.dataset.state = kind;
}

/** Reads server-sent events from a fetch response; calls onEvent(name, data) for each. */
async function readSse(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

async function follow() {
  for (let delay = 500;; delay = Math.min(delay * 2, 5000)) {
    try {
      const response = await fetch("events", { headers: headers() });
      if (response.status === 401) {
        showLogin(state.token ? "That token was refused." : "");
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      delay = 500;
      setFeed("live", "live");
      await readSse(response, onFeed);
      setFeed("reconnecting", "lost");
    } catch (error) {
      setFeed(`reconnecting (${error.message})`, "lost");
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}

function onFeed(name, data) {
  if (name === "hello") {
    $("node").textContent = data.node.name;
    document.title = `heartline · ${data.node.name}`;
    state.threshold = data.node.heartbeat.phiThreshold;
    $("threshold").textContent = String(state.threshold);
    state.samples = data.samples;
    state.events = [];
    $("events").replaceChildren();
    for (const e of data.events) addEvent(e);
  } else if (name === "sample") {
    state.samples.push(data);
    const cutoff = data.time - WINDOW_S * 1000;
    while (state.samples.length && state.samples[0].time < cutoff) state.samples.shift();
  } else if (name === "node") {
    addEvent(data);
  }
  render();
}

function addEvent(e) {
  state.events.push(e);
  if (e.reason !== "current") state.lastEventByPeer.set(e.peer, e);
  const li = document.createElement("li");
  li.dataset.peer = e.peer;
  li.dataset.state = e.state;
  const time = document.createElement("time");
  time.textContent = new Date(e.time).toLocaleTimeString();
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.dataset.state = e.state;
  badge.textContent = e.state;
  li.append(time, `${e.peer} `, badge, ` ${e.reason}`);
  if (e.watcher !== "global") li.append(` (watcher ${e.watcher})`);
  $("events").prepend(li);
  while ($("events").children.length > 100) $("events").lastChild.remove();
}

function fmt(n, digits = 1) {
  return n === null || n === undefined ? "–" : n.toFixed(digits);
}

function renderPeers(latest) {
  const body = $("peers").tBodies[0];
  const rows = latest.peers.map((p) => {
    const tr = document.createElement("tr");
    tr.dataset.peer = p.name;
    tr.dataset.state = p.state;
    const last = state.lastEventByPeer.get(p.name);
    const restarted = p.restarts > 0 && last?.reason === "restarted" && p.state === "up";
    tr.dataset.restarted = String(restarted);
    const cells = [
      p.name,
      null,
      fmt(p.phi, 2),
      p.rttMs === null ? "–" : `${p.rttMs.toFixed(2)} ms`,
      `${(p.lastHeardMsAgo / 1000).toFixed(1)} s ago`,
      String(p.connections),
      String(p.restarts),
    ].map((text) => {
      const td = document.createElement("td");
      if (text !== null) td.textContent = text;
      return td;
    });
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.dataset.state = p.state;
    badge.textContent = p.state;
    cells[1].append(badge);
    if (restarted) {
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = "restarted";
      cells[1].append(tag);
    }
    cells[1].className = "state";
    tr.append(...cells);
    return tr;
  });
  body.replaceChildren(...rows);
  $("no-peers").hidden = rows.length > 0;
}

function renderConnections(latest) {
  const chips = (obj, label) =>
    Object.entries(obj).map(([k, v]) => {
      const span = document.createElement("span");
      span.dataset[label] = k;
      span.textContent = `${k}: ${v}`;
      return span;
    });
  $("conn-states").replaceChildren(...chips(latest.connections.byState, "state"));
  $("conn-transports").replaceChildren(...chips(latest.connections.byTransport, "transport"));
}

/**
 * Per-second rates of the heartbeat counters between consecutive samples, both directions:
 * OOB parts (the liveness users' pings) against the heartbeat frames that carried them.
 */
function economy() {
  const t = [], frames = [], parts = [];
  // Extra samples come at node events: rates are taken over at least half a second.
  let a = state.samples[0];
  for (let i = 1; i < state.samples.length; i++) {
    const b = state.samples[i];
    const dt = (b.time - a.time) / 1000;
    if (dt < 0.5) continue;
    t.push(b.time / 1000);
    const h = (s) => s.heartbeat;
    frames.push(
      (h(b).framesSent + h(b).framesReceived - h(a).framesSent - h(a).framesReceived) / dt,
    );
    parts.push((h(b).partsSent + h(b).partsReceived - h(a).partsSent - h(a).partsReceived) / dt);
    a = b;
  }
  return { t, frames, parts };
}

/** Creates or refreshes a uPlot chart; recreated when its series change. */
function plot(id, seriesNames, data, extra = {}) {
  const key = seriesNames.join("\u0000");
  let entry = state.charts[id];
  const el = $(id);
  if (!entry || entry.key !== key) {
    entry?.chart.destroy();
    const series = [
      {},
      ...seriesNames.map((label, i) => ({
        label,
        stroke: COLORS[i % COLORS.length],
        width: 2,
        spanGaps: false,
      })),
    ];
    const axis = { stroke: "#7d8a99", grid: { stroke: "#263040" }, ticks: { stroke: "#263040" } };
    const chart = new uPlot(
      {
        width: el.clientWidth || 500,
        height: 180,
        series,
        axes: [axis, { ...axis, size: 50 }],
        scales: { x: { time: true }, ...extra.scales },
        legend: { live: false },
      },
      data,
      el,
    );
    entry = state.charts[id] = { key, chart };
  } else {
    entry.chart.setData(data);
  }
}

function render() {
  const latest = state.samples[state.samples.length - 1];
  if (!latest) return;
  renderPeers(latest);
  renderConnections(latest);

  const names = [...new Set(state.samples.flatMap((s) => s.peers.map((p) => p.name)))].sort();
  const t = state.samples.map((s) => s.time / 1000);
  const column = (field) =>
    names.map((n) => state.samples.map((s) => s.peers.find((p) => p.name === n)?.[field] ?? null));
  // Phi is capped at twice the threshold on the plot, so one dead peer does not flatten the rest.
  const cap = (v) => v === null ? null : Math.min(v, 2 * state.threshold);
  plot("chart-phi", names, [t, ...column("phi").map((s) => s.map(cap))]);
  plot("chart-rtt", names, [t, ...column("rttMs")]);

  const eco = economy();
  plot("chart-economy", ["OOB parts/s", "heartbeat frames/s"], [eco.t, eco.parts, eco.frames]);
  const n = eco.t.length;
  if (n > 0) {
    $("parts-rate").textContent = eco.parts[n - 1].toFixed(1);
    $("frames-rate").textContent = eco.frames[n - 1].toFixed(1);
    $("coalescing").textContent = eco.frames[n - 1] > 0
      ? (eco.parts[n - 1] / eco.frames[n - 1]).toFixed(2)
      : "–";
  }
}

function showLogin(message) {
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  setFeed("needs a token", "lost");
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = $("token").value;
  sessionStorage.setItem("heartline.token", state.token);
  $("login").hidden = true;
  $("main").hidden = false;
  follow();
});

state.token = readToken();
follow();
