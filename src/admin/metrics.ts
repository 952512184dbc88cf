/**
 * Prometheus text exposition (format 0.0.4) of a messenger's counters and gauges.
 *
 * @module
 */

import type { Messenger } from "../messenger.ts";
import { Tag } from "../protocol/frame.ts";
import { PRIORITIES } from "../protocol/message.ts";

const TAG_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(Tag).map(([name, value]) => [value, name.toLowerCase()]),
);

/** Escapes a label value: backslash, double quote and newline. */
function label(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function num(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  return String(n);
}

class Exposition {
  lines: string[] = [];
  metric(
    name: string,
    type: "counter" | "gauge",
    help: string,
    samples: [Record<string, string>, number][],
  ): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) {
      const keys = Object.keys(labels);
      const set = keys.length ? `{${keys.map((k) => `${k}="${label(labels[k])}"`).join(",")}}` : "";
      this.lines.push(`${name}${set} ${num(value)}`);
    }
  }

  /** A metric with one unlabelled sample. */
  single(name: string, type: "counter" | "gauge", help: string, value: number): void {
    this.metric(name, type, help, [[{}, value]]);
  }
}

/**
 * Renders the messenger's metrics in the Prometheus text format.
 *
 * @example
 * ```ts
 * import { Messenger } from "../messenger.ts";
 * import { renderMetrics } from "./metrics.ts";
 * const m = new Messenger({ name: "a" });
 * const text = renderMetrics(m);
 * if (!text.includes("heartline_connections")) throw new Error("missing gauge");
 * await m.close();
 * ```
 */
export function renderMetrics(messenger: Messenger): string {
  const e = new Exposition();
  trafficMetrics(e, messenger);
  oobMetrics(e, messenger);
  sessionMetrics(e, messenger);
  peerMetrics(e, messenger);
  return e.lines.join("\n") + "\n";
}

type Samples = [Record<string, string>, number][];

function byTag(counts: readonly number[]): Samples {
  return counts.flatMap((n, tag) => TAG_NAMES[tag] ? [[{ tag: TAG_NAMES[tag] }, n]] : []);
}

function byPriority(counts: readonly number[]): Samples {
  return counts.map((n, i) => [{ priority: PRIORITIES[i] }, n]);
}

/** Frames, bytes and messages. */
function trafficMetrics(e: Exposition, messenger: Messenger): void {
  const c = messenger.counters;
  e.metric(
    "heartline_frames_sent_total",
    "counter",
    "Frames written, by tag.",
    byTag(c.framesSent),
  );
  e.metric(
    "heartline_frames_received_total",
    "counter",
    "Frames read, by tag.",
    byTag(c.framesReceived),
  );
  e.single("heartline_bytes_sent_total", "counter", "Bytes written to links.", c.bytesSent);
  e.single("heartline_bytes_received_total", "counter", "Bytes read from links.", c.bytesReceived);
  e.metric(
    "heartline_messages_sent_total",
    "counter",
    "Data messages written (replays excluded), by priority.",
    byPriority(c.messagesSent),
  );
  e.metric(
    "heartline_messages_received_total",
    "counter",
    "Data messages delivered, by priority.",
    byPriority(c.messagesReceived),
  );
}

/** Out-of-band parts and the heartbeat frames that carry them. */
function oobMetrics(e: Exposition, messenger: Messenger): void {
  const oob = messenger.oobStats;
  const perOp = (m: ReadonlyMap<string, number>): Samples => [...m].map(([op, n]) => [{ op }, n]);
  e.metric(
    "heartline_oob_parts_sent_total",
    "counter",
    "Out-of-band parts sent, by op.",
    perOp(oob.partsSent),
  );
  e.metric(
    "heartline_oob_parts_received_total",
    "counter",
    "Out-of-band parts received, by op.",
    perOp(oob.partsReceived),
  );
  e.single(
    "heartline_heartbeat_frames_sent_total",
    "counter",
    "Heartbeat frames written.",
    oob.heartbeatFramesSent,
  );
  e.single(
    "heartline_oob_parts_repeated_total",
    "counter",
    "Out-of-band parts sent as a 2-byte reference to the same bytes as before.",
    oob.partsRepeated,
  );
  e.single(
    "heartline_heartbeat_frames_received_total",
    "counter",
    "Heartbeat frames read.",
    oob.heartbeatFramesReceived,
  );
  let parts = 0;
  for (const n of oob.partsSent.values()) parts += n;
  const ratio = oob.heartbeatFramesSent ? parts / oob.heartbeatFramesSent : 0;
  e.single(
    "heartline_oob_coalescing_ratio",
    "gauge",
    "OOB parts per heartbeat frame sent, since start.",
    ratio,
  );
  e.single("heartline_oob_registrations", "gauge", "Live OOB registrations.", oob.registrations);
  e.single(
    "heartline_oob_errors_total",
    "counter",
    "OOB producers or handlers that threw.",
    oob.errors,
  );
}

/** Connections, resumes and resets, and the timer wheel. */
function sessionMetrics(e: Exposition, messenger: Messenger): void {
  const c = messenger.counters;
  const conns = new Map<string, number>();
  for (const conn of messenger.connections()) {
    const key = `${conn.state}\u0000${conn.remoteAddr.split(":")[0]}`;
    conns.set(key, (conns.get(key) ?? 0) + 1);
  }
  e.metric(
    "heartline_connections",
    "gauge",
    "Connections by state and transport.",
    [...conns].map(([key, n]) => {
      const [state, transport] = key.split("\u0000");
      return [{ state, transport }, n];
    }),
  );
  e.single(
    "heartline_reconnects_total",
    "counter",
    "Lossless sessions resumed after a fault.",
    c.reconnects,
  );
  e.single("heartline_resets_total", "counter", "Sessions ended by a fault.", c.resets);
  e.single(
    "heartline_links_refused_total",
    "counter",
    "Accepted links closed at once (maxConnections or maxPendingHandshakes reached).",
    c.linksRefused,
  );
  e.single(
    "heartline_remote_resets_total",
    "counter",
    "Sessions reset because the peer restarted or lost the session.",
    c.remoteResets,
  );
  e.single(
    "heartline_replayed_messages_total",
    "counter",
    "Messages written again on resume.",
    c.replayed,
  );
  e.single(
    "heartline_unchecked_frames_total",
    "counter",
    "Data frames (Message, Messages) written without a checksum (both ends of the link protect integrity).",
    c.uncheckedFrames,
  );
  e.single(
    "heartline_crc32_frames_total",
    "counter",
    "Data frames (Message, Messages) written with CRC-32 (native) instead of CRC-32C (the peer accepts it).",
    c.crc32Frames,
  );
  const wheel = messenger.timers;
  e.single("heartline_timer_wheel_timers", "gauge", "Timers in the central wheel.", wheel.size);
  e.single(
    "heartline_timer_wheel_late_fires_total",
    "counter",
    "Timers that fired more than two ticks late.",
    wheel.lateFires,
  );
  e.single("heartline_timer_wheel_fired_total", "counter", "Timers fired.", wheel.fired);
  const pauses = messenger.localPauses;
  e.single(
    "heartline_local_pauses_total",
    "counter",
    "Times this process was found not to have run for longer than the acceptable pause.",
    pauses.count,
  );
  e.single(
    "heartline_local_pause_seconds_total",
    "counter",
    "Silence excused to every peer because this process was not running.",
    pauses.totalMs / 1000,
  );
}

/** What the failure detector says of each peer. */
function peerMetrics(e: Exposition, messenger: Messenger): void {
  const peers = messenger.peers();
  const state = (s: string) => s === "up" ? 1 : s === "suspect" ? 0.5 : 0;
  e.metric(
    "heartline_peer_up",
    "gauge",
    "1 if the peer is up, 0.5 if suspect, 0 if down.",
    peers.map((p) => [{ peer: p.name }, state(p.state)]),
  );
  e.metric(
    "heartline_peer_phi",
    "gauge",
    "Failure detector phi per peer.",
    peers.map((p) => [{ peer: p.name }, p.phi]),
  );
  e.metric(
    "heartline_peer_rtt_seconds",
    "gauge",
    "Round-trip time per peer, from echoed heartbeat stamps.",
    peers.map((p) => [{ peer: p.name }, p.rttMs / 1000]),
  );
  const uptime = messenger.health().uptimeMs / 1000;
  e.single("heartline_uptime_seconds", "gauge", "Seconds since the messenger started.", uptime);
}
