/**
 * The operator CLI's front: parses the command line (`node:util` parseArgs), runs one command,
 * prints every failure as one line and returns the exit code (see {@linkcode ExitCode}).
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import {
  checkAdminUrl,
  checkNodeAddress,
  CliError,
  type CliIo,
  ExitCode,
  type ExitCodeValue,
  positiveInt,
} from "./args.ts";
import { runMetrics } from "./metrics.ts";
import { runPeers } from "./peers.ts";
import { runPing } from "./ping.ts";
import { runWatch } from "./watch.ts";

/** The usage text `heartline --help` prints. */
export const USAGE = `heartline: operator CLI for heartline nodes

Usage:
  heartline ping <addr> [--count N] [--name NAME] [--key K] [--cluster ID] [--strict]
  heartline peers <admin-url>
  heartline watch <admin-url> [--count N] [--seconds S]
  heartline metrics <admin-url>

  <addr>       a node's address: tcp://host:port, tls://host:port, ws://host:port/path, wss://
  <admin-url>  its admin endpoint: http://host:port

Options:
  --json         machine-readable output (one JSON object; JSON lines for watch)
  --timeout MS   bound on each wait for the node or endpoint (default 5000)
  --token T      admin bearer token (default: $HEARTLINE_TOKEN)
  --key K        authentication key for ping (default: $HEARTLINE_KEY)
  --name NAME    ping's node name (default heartline-ping; with a keyring, the key's name)
  --cluster ID   the node's cluster id (default heartline)
  --strict       ping with the default heartbeat settings, not the node's (refused: exit 3)
  --count N      ping: RTT samples (default 3); watch: stop after N events
  --seconds S    watch: stop after S seconds
  -h, --help     this text

Exit codes: 0 ok, 1 unreachable or timed out, 2 usage, 3 handshake refused, 4 token or key`;

type Options = NonNullable<ParseArgsConfig["options"]>;

const COMMON: Options = {
  json: { type: "boolean", default: false },
  timeout: { type: "string" },
  help: { type: "boolean", short: "h", default: false },
};

const ADMIN: Options = { ...COMMON, token: { type: "string" } };

const COMMANDS: Record<string, Options> = {
  ping: {
    ...COMMON,
    count: { type: "string" },
    name: { type: "string" },
    key: { type: "string" },
    cluster: { type: "string" },
    strict: { type: "boolean", default: false },
  },
  peers: ADMIN,
  metrics: ADMIN,
  watch: { ...ADMIN, count: { type: "string" }, seconds: { type: "string" } },
};

function parse(command: string, args: string[]) {
  try {
    return parseArgs({ args, options: COMMANDS[command], allowPositionals: true, strict: true });
  } catch (error) {
    // Node's messages go on with advice about "--" that does not help here.
    const first = (error as Error).message.split(/(?<=\.) /)[0].replace(/\.$/, "");
    throw new CliError(ExitCode.usage, `${first} (heartline --help)`, {
      cause: error,
    });
  }
}

function onePositional(command: string, positionals: string[], what: string): string {
  if (positionals.length !== 1) {
    const got = positionals.length === 0 ? "none" : positionals.join(" ");
    throw new CliError(ExitCode.usage, `heartline ${command} takes one ${what}: got ${got}`);
  }
  return positionals[0];
}

/** Runs one command line against `io`; resolves with the exit code, never rejects. */
export async function main(args: string[], io: CliIo): Promise<ExitCodeValue> {
  const json = args.includes("--json");
  try {
    const [command, ...rest] = args;
    if (command === undefined || command === "help" || command === "--help" || command === "-h") {
      io.out(USAGE);
      return command === undefined ? ExitCode.usage : ExitCode.ok;
    }
    if (!(command in COMMANDS)) {
      throw new CliError(ExitCode.usage, `Unknown command: ${command} (heartline --help)`);
    }
    const { values, positionals } = parse(command, rest);
    const v = values as Record<string, string | boolean | undefined>;
    if (v.help) {
      io.out(USAGE);
      return ExitCode.ok;
    }
    const str = (name: string) => v[name] as string | undefined;
    const timeoutMs = positiveInt("timeout", str("timeout"), 5000);
    const token = str("token") ?? io.env("HEARTLINE_TOKEN");
    switch (command) {
      case "ping":
        await runPing({
          addr: checkNodeAddress(onePositional(command, positionals, "node address")),
          count: positiveInt("count", str("count"), 3),
          name: str("name") ?? "heartline-ping",
          cluster: str("cluster"),
          key: str("key") ?? io.env("HEARTLINE_KEY"),
          timeoutMs,
          strict: v.strict === true,
          json,
        }, io);
        break;
      case "peers":
      case "metrics": {
        const url = checkAdminUrl(onePositional(command, positionals, "admin URL"));
        const run = command === "peers" ? runPeers : runMetrics;
        await run({ url, token, timeoutMs, json }, io);
        break;
      }
      case "watch":
        await runWatch({
          url: checkAdminUrl(onePositional(command, positionals, "admin URL")),
          token,
          timeoutMs,
          count: str("count") === undefined ? undefined : positiveInt("count", str("count"), 1),
          seconds: str("seconds") === undefined
            ? undefined
            : positiveInt("seconds", str("seconds"), 1),
          json,
        }, io);
        break;
    }
    return ExitCode.ok;
  } catch (error) {
    const failure = error instanceof CliError ? error : new CliError(
      ExitCode.unreachable,
      `Unexpected failure: ${(error as Error)?.stack ?? error}`,
    );
    io.err(`heartline: ${failure.message}`);
    if (json) {
      io.out(
        JSON.stringify({ error: failure.message, exitCode: failure.exitCode, ...failure.detail }),
      );
    }
    return failure.exitCode;
  }
}

/** The I/O of the real process: stdout, stderr, the environment and Ctrl-C. */
export function processIo(): CliIo & { [Symbol.dispose](): void } {
  const interrupt = new AbortController();
  const onSignal = () => interrupt.abort(new CliError(ExitCode.ok, "Interrupted"));
  Deno.addSignalListener("SIGINT", onSignal);
  return {
    out: (line) => console.log(line),
    err: (line) => console.error(line),
    env(name) {
      // Asked first, so that a run without --allow-env never prompts: as if unset.
      const granted = Deno.permissions.querySync({ name: "env", variable: name });
      return granted.state === "granted" ? Deno.env.get(name) : undefined;
    },
    signal: interrupt.signal,
    [Symbol.dispose]: () => Deno.removeSignalListener("SIGINT", onSignal),
  };
}
