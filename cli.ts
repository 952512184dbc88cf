#!/usr/bin/env -S deno run --allow-net --allow-env=HEARTLINE_TOKEN,HEARTLINE_KEY
/**
 * heartline's operator CLI: ping a node, list its peers, follow its node events, sum up its
 * metrics.
 *
 * ```sh
 * deno run --allow-net --allow-env=HEARTLINE_TOKEN,HEARTLINE_KEY <url>/cli.ts ping tcp://127.0.0.1:6801
 * deno install -g -n heartline --allow-net --allow-env=HEARTLINE_TOKEN,HEARTLINE_KEY <url>/cli.ts
 *
 * heartline ping <addr> [--count N] [--name NAME] [--key K] [--cluster ID] [--strict]
 * heartline peers <admin-url>
 * heartline watch <admin-url> [--count N] [--seconds S]
 * heartline metrics <admin-url>
 * ```
 *
 * Every command takes `--json` (one JSON object; JSON lines for `watch`) and `--timeout MS`;
 * the admin commands take `--token` (or `HEARTLINE_TOKEN`), ping takes `--key` (or
 * `HEARTLINE_KEY`). Exit codes: 0 ok, 1 unreachable or timed out, 2 usage, 3 handshake refused,
 * 4 token or key. See docs/cli.md.
 *
 * @module
 */

import { main, processIo } from "./src/cli/main.ts";

export { main } from "./src/cli/main.ts";
export { type CliIo, ExitCode } from "./src/cli/args.ts";

if (import.meta.main) {
  let code: number;
  {
    using io = processIo();
    code = await main(Deno.args, io);
  }
  Deno.exit(code);
}
