// The front door: the demo runs, shows its point (coalesced liveness, a kill detected, a
// restart seen, every message delivered exactly once) and stops cleanly, and mod.ts works when
// imported by URL.

import "./_guard.ts";
import assert from "node:assert/strict";
import { deadline, runDeno } from "./_helpers.ts";

const root = new URL("../", import.meta.url);
const NODES = ["alpha", "bravo", "charlie", "delta"];

/** Runs the demo (bounded) with the given permissions and arguments; returns its stdout. */
async function runDemo(permissions: string[], args: string[], seconds: number): Promise<string> {
  const out = await runDeno(
    ["run", ...permissions, "examples/cluster.ts", "--seconds", String(seconds), ...args],
    (seconds + 30) * 1000,
  );
  assert.equal(out.code, 0, out.stdout + out.stderr);
  assert.match(out.stdout, /demo stopped: 4\/4 nodes clean\n/, out.stdout);
  return out.stdout;
}

/** The value of one row of the demo's summary (`  <name>   <value>`). */
function row(text: string, name: string): string {
  const m = new RegExp(`^ {2}${name} {2,}(.+)$`, "m").exec(text);
  assert.ok(m, `summary row "${name}" missing:\n${text}`);
  return m[1];
}

/** The numbers of a row of the summary's message table. */
function messages(text: string, name: string) {
  const cells = row(text, name).trim().split(/ +/);
  const n = (c: string) => c === "-" ? undefined : Number(c);
  const [sent, delivered, died, lost, duplicated, reordered] = cells.map(n);
  return { sent, delivered, died, lost, duplicated, reordered };
}

/**
 * Checks what every run's summary must show: coalescing and exactly-once delivery. Over
 * WebSocket the orderly close can drop the last message a node wrote before its Close (seen
 * as `lost 1` on a pair now and then, never a duplicate or a reordering; a transport issue,
 * not the demo's), so `closeMayLose` checks all but that.
 */
function assertSummary(text: string): void {
  assert.match(row(text, "liveness users per connection"), /^3: OSDPing .*LingerPing .*WatchPing/);
  const parts = Number(/^(\d+)/.exec(row(text, "OOB parts sent"))![1]);
  const frames = Number(/^(\d+)/.exec(row(text, "heartbeat frames sent"))![1]);
  assert.ok(frames > 0 && frames < parts, `${frames} frames for ${parts} parts`);
  assert.match(row(text, "frames saved by coalescing"), new RegExp(`^${parts - frames} `));
  const stopped = messages(text, "by nodes that stopped in order");
  assert.ok(stopped.sent! > 0, "messages were sent");
  assert.deepEqual(
    { duplicated: stopped.duplicated, reordered: stopped.reordered },
    { duplicated: 0, reordered: 0 },
  );
  assert.equal(stopped.delivered! + stopped.died! + stopped.lost!, stopped.sent);
  assert.equal(stopped.lost, 0);
  assert.match(text, /^ {2}exactly once: yes/m);
  assert.doesNotMatch(text, /no final report/);
}

Deno.test("the demo kills a node, sees it down and restarted, and loses no message", async () => {
  // Over TCP the demo needs no more than loopback, running its nodes, and reading its files.
  const text = await runDemo(["--allow-net=127.0.0.1", "--allow-run", "--allow-read=."], [], 12);
  assert.match(text, /live page: http:\/\/127\.0\.0\.1:\d+\/\n/);
  for (const name of NODES) {
    assert.match(text, new RegExp(`admin http://127\\.0\\.0\\.1:\\d+/health`));
    assert.match(text, new RegExp(`\\[${name}\\] got "hello #\\d+`), `${name} received`);
    assert.match(text, new RegExp(`\\[${name}\\] closed\\n`), `${name} closed in order`);
  }
  assert.match(text, /killing delta with SIGKILL/);
  assert.match(text, /restarting delta on tcp:/);
  assertSummary(text);
  // Detection takes about 3.5 s with the default settings (1 s heartbeat, phi threshold 8,
  // 2 s acceptable pause); the bound is generous for a loaded machine.
  const detected = /^(\d+) ms \(first down: (alpha|bravo|charlie) saw delta /.exec(
    row(text, "kill detected in"),
  );
  assert.ok(detected, row(text, "kill detected in"));
  assert.ok(Number(detected[1]) < 8_000, `detected after ${detected[1]} ms`);
  assert.equal(row(text, "restarted seen"), "alpha yes, bravo yes, charlie yes");
  // Messages went to the killed process (it ran for seconds at 10 a second per peer), and the
  // killed process's own messages arrived from #1 on, without a gap.
  const stopped = messages(text, "by nodes that stopped in order");
  assert.ok(stopped.died! > 0, "messages reached the killed process");
  const killed = messages(text, "by delta before its kill");
  assert.ok(killed.delivered! > 0, "the killed process's messages arrived");
  assert.deepEqual(
    { lost: killed.lost, duplicated: killed.duplicated, reordered: killed.reordered },
    { lost: 0, duplicated: 0, reordered: 0 },
  );
});

Deno.test("Ctrl-C (SIGINT) stops the demo and its nodes cleanly, with a summary", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net=127.0.0.1", "--allow-run", "--allow-read=.", "examples/cluster.ts"],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const draining = (async () => {
    for (;;) if ((await stderr.read()).done) return;
  })();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const bound = setTimeout(() => child.kill("SIGKILL"), 60_000);
  try {
    // Wait until every node has received messages (each prints a line a second).
    const allReceived = () => NODES.every((n) => text.includes(`[${n}] got "hello #`));
    await deadline(
      (async () => {
        while (!allReceived()) {
          const { value, done } = await reader.read();
          if (done) throw new Error(`The demo ended early:\n${text}`);
          text += value;
        }
      })(),
      "every node of the demo to receive messages",
    );
    child.kill("SIGINT");
    await deadline(
      (async () => {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          text += value;
        }
      })(),
      "the demo to stop after SIGINT",
    );
    const status = await child.status;
    await draining;
    assert.equal(status.code, 0, text);
  } finally {
    clearTimeout(bound);
  }
  assert.match(text, /demo stopped: 4\/4 nodes clean\n/);
  // Unbounded, the kill would come after 6 s: this run stopped before it.
  assert.equal(row(text, "kill"), "not done before the stop");
  assertSummary(text);
});

Deno.test("the demo runs over QUIC and over WebSocket too; a short run skips the kill", async () => {
  const permissions = [
    "--allow-net=127.0.0.1",
    "--allow-run",
    "--allow-read",
    "--allow-write=/tmp", // QUIC: throwaway certificates for the run
    "--allow-env",
  ];
  for (const transport of ["quic", "ws"]) {
    const text = await runDemo(permissions, ["--transport", transport], 4);
    assert.match(text, new RegExp(`over ${transport}`));
    assert.match(text, /\[delta\] got "hello [^\n]*#1(-#\d+)? from alpha/);
    assert.match(text, /no kill in this run: it needs --seconds 6 or more/);
    assert.equal(row(text, "kill"), "skipped (run too short)");
    assertSummary(text);
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
