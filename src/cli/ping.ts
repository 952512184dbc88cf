/**
 * `heartline ping <addr>`: dials a node with a throwaway messenger (lossy client policy),
 * times the dial and handshake, reports the settings the node announced in its Welcome, and
 * takes round-trip samples from the echoed heartbeat stamps, the RTT the failure detector
 * itself sees (the node's hold time before echoing is subtracted; see docs/protocol.md).
 *
 * A node refuses a peer whose heartbeat settings differ, naming the field and its own value:
 * ping adopts that value and dials again (at most once per field), so an operator can ping
 * any node of any cluster configuration; the report says which values it adopted. `--strict`
 * keeps the defaults and reports the refusal instead (exit 3). A cluster id is never disclosed
 * by a refusal: `--cluster` sets it.
 *
 * @module
 */

import {
  type Connection,
  HandshakeRefusedError,
  type HeartbeatSettings,
  Messenger,
  type PeerSettings,
  TcpTransport,
  TlsTransport,
  WebSocketTransport,
} from "../../mod.ts";
import { CliError, type CliIo, ExitCode } from "./args.ts";
import { formatPing } from "./format.ts";

/** Options of {@linkcode ping}. */
export interface PingOptions {
  /** The node's address, checked. */
  addr: string;
  /** RTT samples to take. */
  count: number;
  /** This probe's node name (with a keyring, the name whose key `key` is). */
  name: string;
  /** The cluster id the node runs with. */
  cluster?: string;
  /** The key to authenticate with. */
  key?: string;
  /** Bound on the dial and handshake, and on each wait for a sample, ms. */
  timeoutMs: number;
  /** Keep the default heartbeat settings: a node with others refuses (exit 3). */
  strict: boolean;
  /** Stops the ping (Ctrl-C): the samples taken so far are reported. */
  signal?: AbortSignal;
}

/** What a ping learnt. */
export interface PingReport {
  /** The address pinged. */
  addr: string;
  /** The settings the node announced in the handshake. */
  peer: PeerSettings;
  /** Dial plus handshake of the successful attempt, ms. */
  handshakeMs: number;
  /** Dials made (1, or more when settings were adopted from refusals). */
  attempts: number;
  /** Heartbeat settings adopted from the node's refusals, by field (`heartbeat.intervalMs`). */
  adopted: Record<string, unknown>;
  /** Round-trip samples from echoed heartbeat stamps, ms. */
  rttMs: number[];
  /** Whether Ctrl-C cut the sampling short. */
  interrupted: boolean;
}

function quiet(): void {}

/**
 * Pings a node: resolves with the report, rejects with a {@linkcode CliError} (1 unreachable
 * or timed out, 3 refused on a setting, 4 authentication).
 *
 * @example
 * ```ts
 * import { Messenger } from "../../mod.ts";
 * import { ping } from "./ping.ts";
 * await using node = new Messenger({ name: "a", heartbeat: { intervalMs: 50 }, logger: () => {} });
 * const addr = await node.listen("tcp://127.0.0.1:0");
 * const report = await ping({ addr, count: 2, name: "probe", timeoutMs: 5000, strict: false });
 * if (report.peer.name !== "a" || report.rttMs.length !== 2) throw new Error("no pong");
 * if (report.adopted["heartbeat.intervalMs"] !== 50) throw new Error("settings not adopted");
 * ```
 */
export async function ping(options: PingOptions): Promise<PingReport> {
  const adopted: Record<string, unknown> = {};
  // One messenger for every dial, so the node sees one incarnation of the probe.
  const messenger = newProbe(options);
  try {
    // One dial per heartbeat field at most, plus the first.
    for (let attempts = 1; attempts <= 8; attempts++) {
      const started = performance.now();
      let conn: Connection;
      try {
        conn = await messenger.connect(options.addr, { signal: options.signal });
      } catch (error) {
        const field = adoptable(error, options.strict, adopted);
        if (field === null) throw dialFailure(error, options);
        const value = (error as HandshakeRefusedError).peer;
        adopted[field] = value;
        adopt(messenger, field.slice("heartbeat.".length), value);
        continue;
      }
      const handshakeMs = performance.now() - started;
      const peer = conn.peerSettings!;
      const { samples, interrupted } = await rttSamples(messenger, conn, options);
      return {
        addr: options.addr,
        peer,
        handshakeMs,
        attempts,
        adopted,
        rttMs: samples,
        interrupted,
      };
    }
    throw new CliError(ExitCode.refused, `Handshake with ${options.addr} kept being refused`);
  } finally {
    await messenger.close();
  }
}

/** Takes the node's value of a heartbeat setting (the probe has no connection between dials). */
function adopt(messenger: Messenger, key: string, value: unknown): void {
  try {
    messenger.setHeartbeat({ [key]: value } as Partial<HeartbeatSettings>);
  } catch (error) {
    throw new CliError(
      ExitCode.refused,
      `The node announced a heartbeat setting no messenger accepts: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

function newProbe(options: PingOptions): Messenger {
  try {
    return new Messenger({
      name: options.name,
      cluster: options.cluster,
      auth: options.key === undefined ? undefined : { key: options.key },
      transports: [new TcpTransport(), new TlsTransport(), new WebSocketTransport()],
      handshakeTimeoutMs: options.timeoutMs,
      logger: quiet,
    });
  } catch (error) {
    // A bad --name or --key.
    throw new CliError(ExitCode.usage, (error as Error).message, { cause: error });
  }
}

/** The heartbeat field a refusal names, when ping may adopt the node's value of it. */
function adoptable(
  error: unknown,
  strict: boolean,
  adopted: Record<string, unknown>,
): string | null {
  if (strict || !(error instanceof HandshakeRefusedError)) return null;
  if (!error.field.startsWith("heartbeat.") || error.peer === undefined) return null;
  return error.field in adopted ? null : error.field;
}

/** A failed dial as the operator should read it. */
function dialFailure(error: unknown, options: PingOptions): unknown {
  if (options.signal?.aborted && error === options.signal.reason) {
    return new CliError(ExitCode.unreachable, `Ping of ${options.addr} interrupted`);
  }
  const message = (error as Error)?.message ?? String(error);
  if (error instanceof HandshakeRefusedError) {
    const detail = { field: error.field, local: error.local, peer: error.peer };
    if (error.field === "auth") {
      const hint = options.key === undefined
        ? "the node wants a key: --key or HEARTLINE_KEY"
        : "check the key, and --name if the node has a keyring";
      return new CliError(
        ExitCode.auth,
        `Handshake refused by ${options.addr} (field auth): ${message}; ${hint}`,
        { cause: error, detail },
      );
    }
    const hint = error.field === "cluster" ? "; set the node's cluster id with --cluster" : "";
    return new CliError(
      ExitCode.refused,
      `Handshake refused by ${options.addr} (field ${error.field}): ${message}${hint}`,
      { cause: error, detail },
    );
  }
  const name = (error as Error)?.name ?? "Error";
  if (name === "FrameError" && (error as { reason?: string }).reason === "banner") {
    return new CliError(
      ExitCode.unreachable,
      `${options.addr} is not a heartline node: ${message}`,
      {
        cause: error,
      },
    );
  }
  return new CliError(ExitCode.unreachable, `Cannot reach ${options.addr}: ${message}`, {
    cause: error,
    detail: { error: name },
  });
}

/**
 * Takes `count` RTT samples: one each time a heartbeat frame from the node arrives once an
 * echo has been measured, read from `conn.rttMs`. Polled from the probe's own timer wheel.
 */
function rttSamples(
  messenger: Messenger,
  conn: Connection,
  options: PingOptions,
): Promise<{ samples: number[]; interrupted: boolean }> {
  const samples: number[] = [];
  // A sample can take two of the node's intervals (its first heartbeat may echo nothing).
  const boundMs = Math.max(options.timeoutMs, 3 * conn.peerSettings!.heartbeat.intervalMs);
  const { promise, resolve, reject } = Promise.withResolvers<
    { samples: number[]; interrupted: boolean }
  >();
  let frames = messenger.oobStats.heartbeatFramesReceived;
  let waitingSince = messenger.clock.now();
  const timer = messenger.every(5, () => {
    const now = messenger.clock.now();
    const seen = messenger.oobStats.heartbeatFramesReceived;
    if (seen !== frames && Number.isFinite(conn.rttMs)) {
      samples.push(conn.rttMs);
      waitingSince = now;
      if (samples.length >= options.count) resolve({ samples, interrupted: false });
    }
    frames = seen;
    if (conn.state !== "open") {
      reject(
        new CliError(
          ExitCode.unreachable,
          `${options.addr} closed the connection: ${conn.error?.message ?? "closed"}`,
        ),
      );
    } else if (now - waitingSince > boundMs) {
      reject(
        new CliError(
          ExitCode.unreachable,
          `No heartbeat echo from ${options.addr} within ${Math.round(boundMs)} ms`,
        ),
      );
    }
  });
  const onAbort = () => resolve({ samples, interrupted: true });
  options.signal?.addEventListener("abort", onAbort, { once: true });
  return promise.finally(() => {
    timer.cancel();
    options.signal?.removeEventListener("abort", onAbort);
  });
}

/** Options of {@linkcode runPing}. */
export interface PingCommandOptions extends Omit<PingOptions, "signal"> {
  /** Print JSON instead of text. */
  json: boolean;
}

/** Runs `heartline ping`: prints the report; rejects with a `CliError`. */
export async function runPing(options: PingCommandOptions, io: CliIo): Promise<void> {
  const report = await ping({ ...options, signal: io.signal });
  if (report.interrupted && report.rttMs.length === 0) {
    throw new CliError(ExitCode.unreachable, `Ping of ${options.addr} interrupted before a sample`);
  }
  if (options.json) io.out(JSON.stringify(report));
  else for (const line of formatPing(report)) io.out(line);
}
