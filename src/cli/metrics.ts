/**
 * `heartline metrics <admin-url>`: reads `GET /metrics` (Prometheus text) and sums it up for a
 * person: messages and bytes, heartbeat frames against the OOB parts they carry (the
 * coalescing ratio), resets and reconnects, connections by state, peers by state.
 *
 * @module
 */

import { adminGet } from "./admin_client.ts";
import { CliError, type CliIo, ExitCode } from "./args.ts";
import { formatMetrics } from "./format.ts";

/** One sample of a Prometheus text exposition. */
export interface PromSample {
  /** Metric name. */
  name: string;
  /** Label values by label name. */
  labels: Record<string, string>;
  /** The value (NaN and infinities included). */
  value: number;
}

function unescapeLabel(value: string): string {
  return value.replace(/\\(["\\n])/g, (_, c: string) => c === "n" ? "\n" : c);
}

function parseValue(text: string): number {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  const n = Number(text);
  if (text === "" || Number.isNaN(n)) throw new TypeError(`Not a sample value: ${text}`);
  return n;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$/;
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)/y;

/**
 * Parses Prometheus text format 0.0.4 into samples; comments and blank lines are skipped. A
 * line that is not a sample throws `TypeError`.
 *
 * @example
 * ```ts
 * import { parsePrometheus } from "./metrics.ts";
 * const [s] = parsePrometheus('# TYPE x counter\nx{op="a\\"b"} 3\n');
 * if (s.name !== "x" || s.labels.op !== 'a"b' || s.value !== 3) throw new Error("parse");
 * ```
 */
export function parsePrometheus(text: string): PromSample[] {
  const samples: PromSample[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new TypeError(`Not a Prometheus sample: ${line.slice(0, 80)}`);
    const labels: Record<string, string> = {};
    const set = m[3] ?? "";
    LABEL.lastIndex = 0;
    while (LABEL.lastIndex < set.length) {
      const before = LABEL.lastIndex;
      const l = LABEL.exec(set);
      if (!l || LABEL.lastIndex === before) {
        throw new TypeError(`Bad labels: ${line.slice(0, 80)}`);
      }
      labels[l[1]] = unescapeLabel(l[2]);
    }
    samples.push({ name: m[1], labels, value: parseValue(m[4]) });
  }
  return samples;
}

/** What `heartline metrics` shows (and prints with `--json`). */
export interface MetricsSummary {
  /** Data messages, in total and by priority. */
  messages: {
    sent: number;
    received: number;
    sentByPriority: Record<string, number>;
    receivedByPriority: Record<string, number>;
  };
  /** Bytes written to and read from links (every frame). */
  bytes: { sent: number; received: number };
  /** Heartbeat frames and the OOB parts they carried. */
  heartbeat: {
    framesSent: number;
    framesReceived: number;
    partsSent: number;
    partsReceived: number;
    /** Parts sent as a 2-byte reference to the bytes sent before. */
    partsRepeated: number;
    /** OOB parts per heartbeat frame sent, since start. */
    coalescingRatio: number;
    /** Live OOB registrations. */
    registrations: number;
    /** Producers or handlers that threw. */
    errors: number;
  };
  /** Session faults and recoveries. */
  sessions: {
    resets: number;
    remoteResets: number;
    reconnects: number;
    replayed: number;
    linksRefused: number;
  };
  /** Connections that are not closed, by state and by transport. */
  connections: {
    total: number;
    byState: Record<string, number>;
    byTransport: Record<string, number>;
  };
  /** Peers by what the failure detector says. */
  peers: { up: number; suspect: number; down: number };
  /** The timer wheel. */
  timers: { size: number; lateFires: number };
  /** Seconds since the messenger started. */
  uptimeSeconds: number;
}

/**
 * Sums up a messenger's metrics.
 *
 * @example
 * ```ts
 * import { parsePrometheus, summarizeMetrics } from "./metrics.ts";
 * const s = summarizeMetrics(parsePrometheus(
 *   "heartline_heartbeat_frames_sent_total 10\nheartline_oob_coalescing_ratio 4.5\n",
 * ));
 * if (s.heartbeat.framesSent !== 10 || s.heartbeat.coalescingRatio !== 4.5) throw new Error("sum");
 * ```
 */
export function summarizeMetrics(samples: readonly PromSample[]): MetricsSummary {
  const all = (name: string) => samples.filter((s) => s.name === name);
  const total = (name: string) => all(name).reduce((n, s) => n + s.value, 0);
  const by = (name: string, label: string) => {
    const out: Record<string, number> = {};
    for (const s of all(name)) out[s.labels[label]] = (out[s.labels[label]] ?? 0) + s.value;
    return out;
  };
  const peers = { up: 0, suspect: 0, down: 0 };
  for (const s of all("heartline_peer_up")) {
    if (s.value === 1) peers.up++;
    else if (s.value === 0.5) peers.suspect++;
    else peers.down++;
  }
  return {
    messages: {
      sent: total("heartline_messages_sent_total"),
      received: total("heartline_messages_received_total"),
      sentByPriority: by("heartline_messages_sent_total", "priority"),
      receivedByPriority: by("heartline_messages_received_total", "priority"),
    },
    bytes: {
      sent: total("heartline_bytes_sent_total"),
      received: total("heartline_bytes_received_total"),
    },
    heartbeat: {
      framesSent: total("heartline_heartbeat_frames_sent_total"),
      framesReceived: total("heartline_heartbeat_frames_received_total"),
      partsSent: total("heartline_oob_parts_sent_total"),
      partsReceived: total("heartline_oob_parts_received_total"),
      partsRepeated: total("heartline_oob_parts_repeated_total"),
      coalescingRatio: total("heartline_oob_coalescing_ratio"),
      registrations: total("heartline_oob_registrations"),
      errors: total("heartline_oob_errors_total"),
    },
    sessions: {
      resets: total("heartline_resets_total"),
      remoteResets: total("heartline_remote_resets_total"),
      reconnects: total("heartline_reconnects_total"),
      replayed: total("heartline_replayed_messages_total"),
      linksRefused: total("heartline_links_refused_total"),
    },
    connections: {
      total: total("heartline_connections"),
      byState: by("heartline_connections", "state"),
      byTransport: by("heartline_connections", "transport"),
    },
    peers,
    timers: {
      size: total("heartline_timer_wheel_timers"),
      lateFires: total("heartline_timer_wheel_late_fires_total"),
    },
    uptimeSeconds: total("heartline_uptime_seconds"),
  };
}

/** Options of {@linkcode runMetrics}. */
export interface MetricsCommandOptions {
  /** The admin endpoint, checked. */
  url: string;
  /** Bearer token. */
  token?: string;
  /** Request bound, ms. */
  timeoutMs: number;
  /** Print JSON instead of text. */
  json: boolean;
}

/** Runs `heartline metrics`; rejects with a `CliError`. */
export async function runMetrics(options: MetricsCommandOptions, io: CliIo): Promise<void> {
  const res = await adminGet(options.url, "/metrics", { ...options, signal: io.signal });
  const text = await res.text();
  let samples: PromSample[];
  try {
    samples = parsePrometheus(text);
  } catch (cause) {
    throw new CliError(
      ExitCode.unreachable,
      `${options.url}/metrics is not Prometheus text: ${(cause as Error).message}`,
      { cause },
    );
  }
  if (!samples.some((s) => s.name.startsWith("heartline_"))) {
    throw new CliError(ExitCode.unreachable, `${options.url}/metrics has no heartline metrics`);
  }
  const summary = summarizeMetrics(samples);
  if (options.json) io.out(JSON.stringify(summary));
  else for (const line of formatMetrics(summary)) io.out(line);
}
