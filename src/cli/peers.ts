/**
 * `heartline peers <admin-url>`: what a node's failure detector says of each peer, from
 * `GET /peers`, as a table or as JSON.
 *
 * @module
 */

import { adminJson } from "./admin_client.ts";
import { CliError, type CliIo, ExitCode } from "./args.ts";
import { formatPeers } from "./format.ts";

/** One peer as `GET /peers` serves it (JSON turns NaN into null). */
export interface AdminPeer {
  /** Node name. */
  name: string;
  /** `up`, `suspect` or `down`. */
  state: string;
  /** Current phi (null when unknown, as in local mode). */
  phi: number | null;
  /** Last round-trip time, ms (null before the first echo). */
  rttMs: number | null;
  /** Milliseconds since anything arrived from the peer. */
  lastHeardMsAgo: number;
  /** `global` or `local`. */
  mode?: string;
  /** Open connections to the peer. */
  connections: number;
  /** New incarnations of the peer seen. */
  restarts: number;
}

function isPeer(value: unknown): value is AdminPeer {
  const p = value as Record<string, unknown> | null;
  return typeof p === "object" && p !== null && typeof p.name === "string" &&
    typeof p.state === "string";
}

/** Options of {@linkcode runPeers}. */
export interface PeersCommandOptions {
  /** The admin endpoint, checked. */
  url: string;
  /** Bearer token. */
  token?: string;
  /** Request bound, ms. */
  timeoutMs: number;
  /** Print JSON instead of a table. */
  json: boolean;
}

/** Runs `heartline peers`; rejects with a `CliError`. */
export async function runPeers(options: PeersCommandOptions, io: CliIo): Promise<void> {
  const body = await adminJson(options.url, "/peers", { ...options, signal: io.signal });
  if (!Array.isArray(body) || !body.every(isPeer)) {
    throw new CliError(ExitCode.unreachable, `${options.url}/peers is not a list of peers`);
  }
  if (options.json) io.out(JSON.stringify({ peers: body }));
  else for (const line of formatPeers(body)) io.out(line);
}
