/**
 * What every command of the operator CLI shares: exit codes, the error that carries one, the
 * I/O a command writes through, and checks of addresses and numbers given on the command line.
 *
 * @module
 */

/**
 * Exit codes of `heartline`, for scripts: 0 ok; 1 the node or admin endpoint could not be
 * reached, timed out or answered something unexpected; 2 usage (bad address, unknown command
 * or flag); 3 handshake refused (a setting differs, the field is printed); 4 authentication
 * (the admin endpoint wants a token, or the node a key).
 */
export const ExitCode = {
  /** Done. */
  ok: 0,
  /** Unreachable, timed out, or an unexpected answer. */
  unreachable: 1,
  /** Bad command line. */
  usage: 2,
  /** The peer refused the handshake on a setting. */
  refused: 3,
  /** A token or key is missing or wrong. */
  auth: 4,
} as const;

/** One of {@linkcode ExitCode}'s values. */
export type ExitCodeValue = typeof ExitCode[keyof typeof ExitCode];

/**
 * A failure the CLI reports in one line and turns into an exit code.
 *
 * @example
 * ```ts
 * import { CliError, ExitCode } from "./args.ts";
 * const err = new CliError(ExitCode.usage, "Unknown command: pong");
 * if (err.exitCode !== 2) throw new Error("wrong code");
 * ```
 */
export class CliError extends Error {
  /** The exit code the process ends with. */
  readonly exitCode: ExitCodeValue;
  /** Machine-readable detail printed with `--json` (for example the refused field). */
  readonly detail: Record<string, unknown>;
  /** Creates the error. */
  constructor(
    exitCode: ExitCodeValue,
    message: string,
    options?: ErrorOptions & { detail?: Record<string, unknown> },
  ) {
    super(message, options);
    this.name = "CliError";
    this.exitCode = exitCode;
    this.detail = options?.detail ?? {};
  }
}

/** Where a command writes, and what it reads from its environment. */
export interface CliIo {
  /** Writes one line to standard output. */
  out(line: string): void;
  /** Writes one line to standard error. */
  err(line: string): void;
  /** Reads an environment variable (undefined when unset or not permitted). */
  env(name: string): string | undefined;
  /** Aborts when the operator presses Ctrl-C. */
  signal: AbortSignal;
}

/**
 * A positive integer option, or `fallback` when absent; a usage error otherwise.
 *
 * @example
 * ```ts
 * import { positiveInt } from "./args.ts";
 * if (positiveInt("count", "3", 1) !== 3 || positiveInt("count", undefined, 1) !== 1) {
 *   throw new Error("wrong number");
 * }
 * ```
 */
export function positiveInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n <= 0) {
    throw new CliError(ExitCode.usage, `--${name} must be a positive integer: ${value}`);
  }
  return n;
}

/** The schemes `heartline ping` can dial. */
export const PING_SCHEMES: readonly string[] = ["tcp", "tls", "ws", "wss"];

/**
 * Checks a node address (`tcp://host:port`, `tls://`, `ws://host:port/path`, `wss://`) and
 * returns it as given; a usage error names what is wrong.
 *
 * @example
 * ```ts
 * import { checkNodeAddress } from "./args.ts";
 * checkNodeAddress("tcp://127.0.0.1:6801");
 * try {
 *   checkNodeAddress("127.0.0.1:6801");
 *   throw new Error("accepted an address without a scheme");
 * } catch (e) {
 *   if ((e as { exitCode?: number }).exitCode !== 2) throw e;
 * }
 * ```
 */
export function checkNodeAddress(addr: string): string {
  const expected = "expected tcp://host:port, tls://host:port, ws://host:port/path or wss://";
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(addr)?.[1]?.toLowerCase();
  if (!scheme) throw new CliError(ExitCode.usage, `Not a node address: ${addr} (${expected})`);
  if (!PING_SCHEMES.includes(scheme)) {
    throw new CliError(ExitCode.usage, `Unsupported scheme ${scheme}: in ${addr} (${expected})`);
  }
  let url: URL;
  try {
    url = new URL(addr);
  } catch {
    throw new CliError(ExitCode.usage, `Not a node address: ${addr} (${expected})`);
  }
  if (!url.hostname) throw new CliError(ExitCode.usage, `Address has no host: ${addr}`);
  if (!url.port && (scheme === "tcp" || scheme === "tls")) {
    throw new CliError(ExitCode.usage, `Address has no port: ${addr}`);
  }
  if ((scheme === "tcp" || scheme === "tls") && url.pathname !== "" && url.pathname !== "/") {
    throw new CliError(ExitCode.usage, `A ${scheme} address has no path: ${addr}`);
  }
  return addr;
}

/**
 * Checks an admin endpoint URL (`http://host:port` or `https://`) and returns it without a
 * trailing slash; a usage error otherwise.
 *
 * @example
 * ```ts
 * import { checkAdminUrl } from "./args.ts";
 * if (checkAdminUrl("http://127.0.0.1:9101/") !== "http://127.0.0.1:9101") {
 *   throw new Error("trailing slash kept");
 * }
 * ```
 */
export function checkAdminUrl(raw: string): string {
  let url: URL | null = null;
  try {
    url = new URL(raw);
  } catch {
    // reported below
  }
  if (!url || (url.protocol !== "http:" && url.protocol !== "https:") || !url.hostname) {
    throw new CliError(
      ExitCode.usage,
      `Not an admin URL: ${raw} (expected http://host:port, as serveAdmin prints it)`,
    );
  }
  if (url.search || url.hash) {
    throw new CliError(ExitCode.usage, `An admin URL has no query or fragment: ${raw}`);
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}
