/**
 * The demo: starts a local cluster of three nodes (separate processes, loopback only) that
 * greet each other, prints what flows, and stops them all on Ctrl-C (or after `--seconds`).
 *
 * ```sh
 * deno task demo                 # until Ctrl-C
 * deno task demo --seconds 5     # bounded run
 * deno task demo --transport ws  # over WebSocket (also: quic, with throwaway certificates)
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string" },
    nodes: { type: "string", default: "3" },
    transport: { type: "string", default: "tcp" },
  },
});

/**
 * A port that is free now, chosen below the kernel's ephemeral range (32768 and up on Linux):
 * a port the kernel hands out for bind(0) or an outgoing connection could be taken by another
 * process between this check and the node's own bind.
 */
function freePort(): number {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return port;
    } catch (error) {
      if (!(error instanceof Deno.errors.AddrInUse)) throw error;
    }
  }
}

const count = Number(values.nodes);
const transport = values.transport!;
if (!["tcp", "ws", "quic"].includes(transport)) {
  console.error(`Unknown transport: ${transport} (tcp, ws or quic)`);
  Deno.exit(2);
}
const addrOf = (port: number) =>
  transport === "ws" ? `ws://127.0.0.1:${port}/heartline` : `${transport}://127.0.0.1:${port}`;
// QUIC needs TLS: make a throwaway CA and leaf for this run, removed on exit.
let certDir: string | null = null;
const extraArgs: string[] = [];
const nodeFlags: string[] = [];
if (transport === "quic") {
  const { testCerts } = await import("./_dev_certs.ts");
  const certs = await testCerts();
  certDir = await Deno.makeTempDir({ prefix: "heartline-demo-" });
  for (const [name, pem] of Object.entries(certs)) {
    await Deno.writeTextFile(`${certDir}/${name}.pem`, pem);
  }
  extraArgs.push(
    "--cert",
    `${certDir}/cert.pem`,
    "--key",
    `${certDir}/key.pem`,
    "--ca",
    `${certDir}/caCert.pem`,
  );
  nodeFlags.push("--unstable-net", `--allow-read=${certDir}`);
}
const names = ["alpha", "bravo", "charlie", "delta", "echo"].slice(0, count);
const ports = names.map(() => freePort());
const adminPorts = names.map(() => freePort());
const nodeScript = new URL("./node.ts", import.meta.url);
const colors = ["\x1b[36m", "\x1b[33m", "\x1b[35m", "\x1b[32m", "\x1b[34m"];
const useColor = Deno.stdout.isTerminal();

console.log(`heartline demo: ${count} nodes on 127.0.0.1 over ${transport}; Ctrl-C stops them`);
const children = names.map((name, i) => {
  const args = [
    "run",
    "--allow-net=127.0.0.1",
    ...nodeFlags,
    nodeScript.href,
    "--name",
    name,
    "--listen",
    addrOf(ports[i]),
    ...extraArgs,
    "--admin-port",
    String(adminPorts[i]),
    // Each node dials the nodes before it: one connection per pair.
    ...names.slice(0, i).flatMap((_, j) => ["--peer", addrOf(ports[j])]),
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
  if (certDir) await Deno.remove(certDir, { recursive: true });
  const failed = statuses.filter((s) => !s.success && s.signal !== "SIGTERM");
  console.log(`demo stopped: ${statuses.length - failed.length}/${statuses.length} nodes clean`);
  Deno.exit(failed.length === 0 ? 0 : 1);
}
Deno.addSignalListener("SIGINT", stop);
if (values.seconds !== undefined) setTimeout(stop, Number(values.seconds) * 1000);
