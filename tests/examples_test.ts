// The front door: the demo runs and stops cleanly, and mod.ts works when imported by URL.

import "./_guard.ts";
import assert from "node:assert/strict";

const root = new URL("../", import.meta.url);

/** Runs the demo with the given permissions and arguments; returns its output. */
async function runDemo(permissions: string[], args: string[]): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissions, "examples/cluster.ts", ...args],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, text + new TextDecoder().decode(out.stderr));
  assert.match(text, /demo stopped: 3\/3 nodes clean/);
  return text;
}

Deno.test("the demo starts three nodes that exchange messages, then stops cleanly", async () => {
  // Over TCP the demo needs no more than loopback, running its nodes, and reading its files.
  const text = await runDemo(["--allow-net=127.0.0.1", "--allow-run", "--allow-read=."], [
    "--seconds",
    "4",
  ]);
  for (const name of ["alpha", "bravo", "charlie"]) {
    assert.match(text, new RegExp(`\\[${name}\\] got "hello #\\d+ from `), `${name} received`);
    assert.match(text, new RegExp(`\\[${name}\\] closed\\n`), `${name} closed in order`);
  }
});

Deno.test("Ctrl-C (SIGINT) stops the demo and its nodes cleanly", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net=127.0.0.1", "--allow-run", "--allow-read=.", "examples/cluster.ts"],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  // Wait for traffic to flow (bounded: the demo greets every second).
  for (let i = 0; i < 100 && !/got "hello #1/.test(text); i++) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  assert.match(text, /got "hello #1/);
  child.kill("SIGINT");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  const status = await child.status;
  await child.stderr.cancel();
  assert.equal(status.code, 0);
  assert.match(text, /demo stopped: 3\/3 nodes clean/);
});

Deno.test("the demo runs over QUIC and over WebSocket too", async () => {
  const permissions = [
    "--allow-net=127.0.0.1",
    "--allow-run",
    "--allow-read",
    "--allow-write=/tmp", // QUIC: throwaway certificates for the run
    "--allow-env",
  ];
  for (const transport of ["quic", "ws"]) {
    const text = await runDemo(permissions, ["--transport", transport, "--seconds", "3"]);
    assert.match(text, new RegExp(`over ${transport}`));
    assert.match(text, /\[charlie\] got "hello #1 from alpha"/);
  }
});

Deno.test("mod.ts imported by URL (from a local HTTP server) works", async () => {
  // Serve the repository over HTTP on loopback, as a user would import it from a host.
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname;
    if (path.includes("..")) return new Response("no", { status: 400 });
    try {
      const body = await Deno.readFile(new URL(`.${path}`, root));
      return new Response(body, { headers: { "content-type": "application/typescript" } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  const base = `http://127.0.0.1:${server.addr.port}`;
  const dir = await Deno.makeTempDir();
  try {
    const script = `
      import { Messenger } from "${base}/mod.ts";
      const a = new Messenger({ name: "a" });
      const b = new Messenger({ name: "b" });
      const addr = await a.listen("tcp://127.0.0.1:0");
      const conn = await b.connect(addr);
      await conn.send(42, new Uint8Array([1]));
      for await (const m of a.messages()) { console.log("type", m.type); break; }
      await b.close(); await a.close();
    `;
    await Deno.writeTextFile(`${dir}/user.ts`, script);
    await Deno.writeTextFile(`${dir}/deno.json`, JSON.stringify({ nodeModulesDir: "auto" }));
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        `--allow-import=127.0.0.1:${server.addr.port}`,
        "--allow-net=127.0.0.1",
        "--allow-read",
        "--allow-env",
        "user.ts",
      ],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.match(stdout, /type 42/);
  } finally {
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});
