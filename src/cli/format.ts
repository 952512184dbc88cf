/**
 * Text output of the operator CLI: pure functions from what a command learnt to the lines it
 * prints, kept apart from the fetching so they can be tested without a node.
 *
 * @module
 */

import type { LiveNodeEvent } from "../admin/live.ts";
import type { MetricsSummary } from "./metrics.ts";
import type { AdminPeer } from "./peers.ts";
import type { PingReport } from "./ping.ts";

/** A node event as `GET /events` sends it. */
export type WatchedEvent = LiveNodeEvent;

/**
 * Milliseconds for people: `0.31 ms`, `12.4 ms`, `420 ms`, `1.52 s`; `-` for null or NaN.
 *
 * @example
 * ```ts
 * import { formatMs } from "./format.ts";
 * if (formatMs(0.314) !== "0.31 ms" || formatMs(1520) !== "1.52 s" || formatMs(null) !== "-") {
 *   throw new Error("wrong format");
 * }
 * ```
 */
export function formatMs(ms: number | null): string {
  if (ms === null || !Number.isFinite(ms)) return "-";
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 100) return `${Math.round(ms)} ms`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}

/**
 * Bytes for people: `512 B`, `1.5 KiB`, `3.2 MiB`, `1.1 GiB`.
 *
 * @example
 * ```ts
 * import { formatBytes } from "./format.ts";
 * if (formatBytes(1536) !== "1.5 KiB") throw new Error("wrong format");
 * ```
 */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

/**
 * Seconds for people: `42 s`, `3m 05s`, `2h 07m`, `3d 04h`.
 *
 * @example
 * ```ts
 * import { formatUptime } from "./format.ts";
 * if (formatUptime(185) !== "3m 05s") throw new Error("wrong format");
 * ```
 */
export function formatUptime(seconds: number): string {
  const s = Math.floor(seconds);
  const pad = (n: number) => String(n).padStart(2, "0");
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${pad(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86400)}d ${pad(Math.floor(s / 3600) % 24)}h`;
}

/**
 * Lays rows out under headers in columns two spaces apart; numbers are right-aligned when
 * `right` names their column.
 *
 * @example
 * ```ts
 * import { table } from "./format.ts";
 * const lines = table(["NAME", "N"], [["a", "1"], ["bb", "22"]], new Set([1]));
 * if (lines[2] !== "bb    22") throw new Error(JSON.stringify(lines));
 * ```
 */
export function table(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
  right: ReadonlySet<number> = new Set(),
): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => right.has(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))
      .join("  ").trimEnd();
  return [line(headers), ...rows.map(line)];
}

/**
 * The lines of `heartline ping`.
 *
 * @example
 * ```ts
 * import { formatPing } from "./format.ts";
 * const heartbeat = {
 *   mode: "global", detector: "phi", intervalMs: 1000, phiThreshold: 8,
 *   acceptablePauseMs: 2000, minStdDevMs: 100, graceMs: 5000,
 * } as const;
 * const lines = formatPing({
 *   addr: "tcp://127.0.0.1:6801", handshakeMs: 1.9, attempts: 1, adopted: {}, interrupted: false,
 *   peer: { name: "a", version: 1, cluster: "heartline", policy: "statelessServer", heartbeat,
 *     listening: ["tcp://127.0.0.1:6801"] },
 *   rttMs: [0.3, 0.2],
 * });
 * if (!lines.at(-1)!.includes("min/avg/max 0.20/0.25/0.30 ms")) throw new Error(lines.at(-1));
 * ```
 */
export function formatPing(report: PingReport): string[] {
  const p = report.peer;
  const h = p.heartbeat;
  const detector = h.detector === "phi"
    ? `phi (threshold ${h.phiThreshold}, acceptable pause ${h.acceptablePauseMs} ms, ` +
      `min std dev ${h.minStdDevMs} ms)`
    : `grace (${h.graceMs} ms)`;
  const lines = [
    `PING ${report.addr}: node ${p.name}`,
    `  protocol   v${p.version}, cluster ${p.cluster}, policy ${p.policy}`,
    `  heartbeat  ${h.mode} every ${h.intervalMs} ms, detector ${detector}`,
    `  listening  ${p.listening.length ? p.listening.join(", ") : "(none announced)"}`,
    `  handshake  ${formatMs(report.handshakeMs)} (dial and handshake)`,
  ];
  const adopted = Object.entries(report.adopted);
  if (adopted.length > 0) {
    const what = adopted.map(([field, value]) => `${field}=${value}`).join(", ");
    lines.push(`  adopted    ${what} (the node refused the defaults; ${report.attempts} dials)`);
  }
  report.rttMs.forEach((rtt, i) => lines.push(`  rtt        ${formatMs(rtt)}  (echo ${i + 1})`));
  const n = report.rttMs.length;
  if (n === 0) {
    lines.push(`--- ${p.name}: no rtt sample`);
    return lines;
  }
  const min = Math.min(...report.rttMs);
  const max = Math.max(...report.rttMs);
  const avg = report.rttMs.reduce((a, b) => a + b, 0) / n;
  const f = (x: number) => x.toFixed(2);
  const cut = report.interrupted ? ", interrupted" : "";
  lines.push(
    `--- ${p.name}: ${n} heartbeat echo${n === 1 ? "" : "es"}${cut}, ` +
      `rtt min/avg/max ${f(min)}/${f(avg)}/${f(max)} ms`,
  );
  return lines;
}

/**
 * The table of `heartline peers`.
 *
 * @example
 * ```ts
 * import { formatPeers } from "./format.ts";
 * const lines = formatPeers([{ name: "b", state: "up", phi: 0.12, rttMs: 0.31,
 *   lastHeardMsAgo: 420, connections: 1, restarts: 0 }]);
 * if (!/^b\s+up\s+0\.12\s+0\.31 ms\s+420 ms ago\s+1\s+0$/.test(lines[1])) throw new Error(lines[1]);
 * ```
 */
export function formatPeers(peers: readonly AdminPeer[]): string[] {
  if (peers.length === 0) return ["no peers"];
  const rows = peers.map((p) => [
    p.name,
    p.state,
    p.phi === null ? "-" : p.phi.toFixed(2),
    formatMs(p.rttMs),
    `${formatMs(p.lastHeardMsAgo)} ago`,
    String(p.connections),
    String(p.restarts),
  ]);
  return table(
    ["NAME", "STATE", "PHI", "RTT", "LAST HEARD", "CONNS", "RESTARTS"],
    rows,
    new Set([2, 3, 4, 5, 6]),
  );
}

function counts(map: Record<string, number>): string {
  const entries = Object.entries(map).filter(([, n]) => n > 0);
  return entries.length ? entries.map(([k, n]) => `${k} ${n}`).join(", ") : "none";
}

/**
 * The summary of `heartline metrics`.
 *
 * @example
 * ```ts
 * import { formatMetrics } from "./format.ts";
 * import { summarizeMetrics } from "./metrics.ts";
 * const lines = formatMetrics(summarizeMetrics([
 *   { name: "heartline_heartbeat_frames_sent_total", labels: {}, value: 10 },
 *   { name: "heartline_oob_parts_sent_total", labels: { op: "a" }, value: 45 },
 *   { name: "heartline_oob_coalescing_ratio", labels: {}, value: 4.5 },
 * ]));
 * if (!lines.some((l) => l.includes("4.50 parts per frame"))) throw new Error(lines.join("\n"));
 * ```
 */
export function formatMetrics(s: MetricsSummary): string[] {
  const hb = s.heartbeat;
  const c = s.connections;
  return [
    `messages     sent ${s.messages.sent} (${counts(s.messages.sentByPriority)}), ` +
    `received ${s.messages.received} (${counts(s.messages.receivedByPriority)})`,
    `bytes        sent ${formatBytes(s.bytes.sent)}, received ${formatBytes(s.bytes.received)}`,
    `heartbeats   frames sent ${hb.framesSent}, received ${hb.framesReceived}`,
    `oob parts    sent ${hb.partsSent}, received ${hb.partsReceived}, ` +
    `sent as 2-byte repeats ${hb.partsRepeated}`,
    `coalescing   ${hb.coalescingRatio.toFixed(2)} parts per frame sent ` +
    `(${hb.registrations} registrations, ${hb.errors} errors)`,
    `sessions     resets ${s.sessions.resets}, remote resets ${s.sessions.remoteResets}, ` +
    `reconnects ${s.sessions.reconnects}, replayed ${s.sessions.replayed}, ` +
    `links refused ${s.sessions.linksRefused}`,
    `connections  ${c.total}: ${counts(c.byState)}; by transport ${counts(c.byTransport)}`,
    `peers        up ${s.peers.up}, suspect ${s.peers.suspect}, down ${s.peers.down}`,
    `timer wheel  ${s.timers.size} timers, ${s.timers.lateFires} late fires`,
    `uptime       ${formatUptime(s.uptimeSeconds)}`,
  ];
}

/**
 * One line of `heartline watch`: time, peer, state, reason, phi, RTT and watcher.
 *
 * @example
 * ```ts
 * import { formatNodeEvent } from "./format.ts";
 * const line = formatNodeEvent({ time: 0, peer: "b", state: "down", reason: "closed",
 *   phi: null, rttMs: 0.3, watcher: "global" });
 * if (line !== "1970-01-01T00:00:00.000Z  b  down  closed  phi -  rtt 0.30 ms  (global)") {
 *   throw new Error(line);
 * }
 * ```
 */
export function formatNodeEvent(e: WatchedEvent): string {
  const phi = e.phi === null ? "-" : e.phi.toFixed(2);
  return `${new Date(e.time).toISOString()}  ${e.peer}  ${e.state}  ${e.reason}  phi ${phi}  ` +
    `rtt ${formatMs(e.rttMs)}  (${e.watcher})`;
}
