/**
 * The demo: starts a local cluster of three nodes (separate processes, loopback only) that
 * greet each other, prints what flows, and stops them all on Ctrl-C (or after `--seconds`).
 *
 * ```sh
 * deno task demo                 # until Ctrl-C
 * deno task demo --seconds 5     # bounded run
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: { seconds: { type: "string" }, nodes: { type: "string", default: "3" } },
});

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

const count = Number(values.nodes);
const names = ["alpha", "bravo", "charlie", "delta", "echo"].slice(0, count);
const ports = names.map(() => freePort());
const adminPorts = names.map(() => freePort());
const nodeScript = new URL("./node.ts", import.meta.url);
const colors = ["\x1b[36m", "\x1b[33m", "\x1b[35m", "\x1b[32m", "\x1b[34m"];
const useColor = Deno.stdout.isTerminal();

console.log(`heartline demo: ${count} nodes on 127.0.0.1; Ctrl-C stops them`);
const children = names.map((name, i) => {
  const args = [
    "run",
    "--allow-net=127.0.0.1",
    nodeScript.href,
    "--name",
    name,
    "--listen",
    `tcp://127.0.0.1:${ports[i]}`,
    "--admin-port",
    String(adminPorts[i]),
    // Each node dials the nodes before it: one connection per pair.
    ...names.slice(0, i).flatMap((_, j) => ["--peer", `tcp://127.0.0.1:${ports[j]}`]),
  ];
  const child = new Deno.Command(Deno.execPath(), {
    args,
    stdout: "piped",
    stderr: "inherit",
    stdin: "null",
  }).spawn();
  (async () => {
    const prefix = useColor ? `${colors[i]}${name.padEnd(8)}\x1b[0m` : name.padEnd(8);
    let rest = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop()!;
      for (const line of lines) console.log(`${prefix}| ${line}`);
    }
  })();
  return child;
});

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  for (const child of children) {
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
  }
  const statuses = await Promise.all(children.map((c) => c.status));
  const failed = statuses.filter((s) => !s.success && s.signal !== "SIGTERM");
  console.log(`demo stopped: ${statuses.length - failed.length}/${statuses.length} nodes clean`);
  Deno.exit(failed.length === 0 ? 0 : 1);
}
Deno.addSignalListener("SIGINT", stop);
if (values.seconds !== undefined) setTimeout(stop, Number(values.seconds) * 1000);
