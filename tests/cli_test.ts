import assert from "node:assert/strict";
import { Messenger } from "../mod.ts";
import { renderMetrics, serveAdmin } from "../admin.ts";
import { main } from "../cli.ts";
import { checkAdminUrl, checkNodeAddress, type CliIo } from "../src/cli/args.ts";
import { readSse } from "../src/cli/admin_client.ts";
import {
  formatMetrics,
  formatNodeEvent,
  formatPeers,
  formatPing,
  formatUptime,
} from "../src/cli/format.ts";
import { parsePrometheus, summarizeMetrics } from "../src/cli/metrics.ts";
import { captureLogger, deadline, pair, runDeno, WAIT_MS } from "./_helpers.ts";

/** The CLI as an operator runs it, with loopback-only network for the tests. */
const CLI = ["run", "--allow-net=127.0.0.1", "--allow-env=HEARTLINE_TOKEN,HEARTLINE_KEY", "cli.ts"];

function cli(...args: string[]) {
  return runDeno([...CLI, ...args], WAIT_MS);
}

/** A node with a fast heartbeat (so RTT samples come quickly), listening on loopback. */
async function node(name: string, options: { key?: string } = {}) {
  const messenger = new Messenger({
    name,
    heartbeat: { intervalMs: 100 },
    auth: options.key === undefined ? undefined : { key: options.key },
    logger: captureLogger().log,
  });
  const addr = await messenger.listen("tcp://127.0.0.1:0");
  return { messenger, addr, [Symbol.asyncDispose]: () => messenger.close() };
}

/** A loopback port nobody listens on (bound, then closed). */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** An in-process I/O for `main()`: lines kept, no environment, never interrupted. */
function fakeIo(): CliIo & { stdout: string[]; stderr: string[] } {
  const stdout: string[] = [];
  const stderr: string[] = [];
  return {
    stdout,
    stderr,
    out: (line) => stdout.push(line),
    err: (line) => stderr.push(line),
    env: () => undefined,
    signal: new AbortController().signal,
  };
}

const heartbeat = {
  mode: "global",
  detector: "phi",
  intervalMs: 1000,
  phiThreshold: 8,
  acceptablePauseMs: 2000,
  minStdDevMs: 100,
  graceMs: 5000,
} as const;

// ---- formatters and parsers, without a subprocess ----

Deno.test("formatPing shows the node's settings, adopted values and rtt min/avg/max", () => {
  const lines = formatPing({
    addr: "tcp://127.0.0.1:6801",
    peer: {
      name: "a",
      version: 1,
      cluster: "heartline",
      policy: "statelessServer",
      heartbeat: { ...heartbeat, intervalMs: 200 },
      listening: ["tcp://127.0.0.1:6801"],
    },
    handshakeMs: 2.5,
    attempts: 2,
    adopted: { "heartbeat.intervalMs": 200 },
    rttMs: [0.5, 0.25, 0.3],
    interrupted: false,
  });
  assert.equal(lines[0], "PING tcp://127.0.0.1:6801: node a");
  assert.match(lines.join("\n"), /protocol\s+v1, cluster heartline, policy statelessServer/);
  assert.match(lines.join("\n"), /heartbeat\s+global every 200 ms, detector phi \(threshold 8/);
  assert.match(lines.join("\n"), /adopted\s+heartbeat\.intervalMs=200 .*2 dials/);
  assert.match(lines.join("\n"), /handshake\s+2\.50 ms/);
  assert.equal(lines.filter((l) => l.includes("(echo ")).length, 3);
  assert.equal(lines.at(-1), "--- a: 3 heartbeat echoes, rtt min/avg/max 0.25/0.35/0.50 ms");
});

Deno.test("formatPeers lays peers out in columns, with - for unknown phi and RTT", () => {
  const lines = formatPeers([
    {
      name: "b",
      state: "up",
      phi: 0.5,
      rttMs: 0.31,
      lastHeardMsAgo: 80,
      connections: 1,
      restarts: 0,
    },
    {
      name: "carol",
      state: "down",
      phi: null,
      rttMs: null,
      lastHeardMsAgo: 4200,
      connections: 0,
      restarts: 2,
    },
  ]);
  assert.deepEqual(lines, [
    "NAME   STATE   PHI      RTT   LAST HEARD  CONNS  RESTARTS",
    "b      up     0.50  0.31 ms  80.0 ms ago      1         0",
    "carol  down      -        -   4.20 s ago      0         2",
  ]);
  assert.deepEqual(formatPeers([]), ["no peers"]);
});

Deno.test("formatNodeEvent prints one line: time, peer, state, reason, phi, RTT, watcher", () => {
  const line = formatNodeEvent({
    time: Date.UTC(2026, 0, 2, 3, 4, 5, 6),
    peer: "b",
    state: "down",
    reason: "silent",
    phi: 8.25,
    rttMs: null,
    watcher: "global",
  });
  assert.equal(line, "2026-01-02T03:04:05.006Z  b  down  silent  phi 8.25  rtt -  (global)");
  assert.equal(formatUptime(42), "42 s");
  assert.equal(formatUptime(2 * 3600 + 7 * 60), "2h 07m");
});

Deno.test("parsePrometheus reads renderMetrics' text; summarizeMetrics counts a live pair", async () => {
  await using p = await pair("tcp://127.0.0.1:0");
  const samples = parsePrometheus(renderMetrics(p.server));
  const summary = summarizeMetrics(samples);
  assert.equal(summary.connections.byState.open, 1);
  assert.equal(summary.connections.byTransport.tcp, 1);
  assert.deepEqual(summary.peers, { up: 1, suspect: 0, down: 0 });
  assert.ok(summary.bytes.received > 0);
  const escaped = parsePrometheus('m{op="a\\"b\\\\c\\n",x="y"} +Inf\nn NaN\n');
  assert.deepEqual(escaped[0].labels, { op: 'a"b\\c\n', x: "y" });
  assert.equal(escaped[0].value, Infinity);
  assert.ok(Number.isNaN(escaped[1].value));
  assert.throws(() => parsePrometheus("<html>"), TypeError);
  const text = formatMetrics(summarizeMetrics(parsePrometheus(
    "heartline_heartbeat_frames_sent_total 10\n" +
      'heartline_oob_parts_sent_total{op="lease"} 30\n' +
      'heartline_oob_parts_sent_total{op="watch"} 15\n' +
      "heartline_oob_coalescing_ratio 4.5\n",
  ))).join("\n");
  assert.match(text, /heartbeats\s+frames sent 10/);
  assert.match(text, /oob parts\s+sent 45/);
  assert.match(text, /coalescing\s+4\.50 parts per frame sent/);
});

Deno.test("readSse splits events across chunks and CRLF, CR or LF line ends", async () => {
  const chunks = [
    "event: hel",
    'lo\r\ndata: {"a"',
    ":1}\r\n\r",
    "\n: ping\n\nevent: node\rdata: x\r",
    "data: y\r\r",
  ];
  const body = ReadableStream.from(chunks.map((c) => new TextEncoder().encode(c)));
  const events = await Array.fromAsync(readSse(body));
  assert.deepEqual(events, [
    { event: "hello", data: '{"a":1}' },
    { event: "node", data: "x\ny" },
  ]);
});

Deno.test("addresses: node addresses need a scheme and port, admin URLs http(s)", () => {
  assert.equal(checkNodeAddress("ws://127.0.0.1:8080/heartline"), "ws://127.0.0.1:8080/heartline");
  assert.equal(checkNodeAddress("tcp://[::1]:6801"), "tcp://[::1]:6801");
  for (const bad of ["127.0.0.1:6801", "tcp://127.0.0.1", "udp://127.0.0.1:1", "tcp://h:1/x"]) {
    assert.throws(() => checkNodeAddress(bad), (e: { exitCode?: number }) => e.exitCode === 2, bad);
  }
  assert.equal(checkAdminUrl("https://admin.internal:9101/"), "https://admin.internal:9101");
  for (const bad of ["127.0.0.1:9101", "tcp://127.0.0.1:9101", "http://h:1/?x=1", "nope"]) {
    assert.throws(() => checkAdminUrl(bad), (e: { exitCode?: number }) => e.exitCode === 2, bad);
  }
});

Deno.test("main(): usage errors exit 2 with one line, --help exits 0, --json adds an object", async () => {
  const cases: [string[], number, RegExp][] = [
    [[], 2, /Usage:/],
    [["pong"], 2, /^heartline: Unknown command: pong/],
    [["ping"], 2, /takes one node address: got none/],
    [["ping", "tcp://127.0.0.1:1", "--bogus"], 2, /^heartline: Unknown option '--bogus' \(/],
    [["ping", "tcp://127.0.0.1:1", "--count", "0"], 2, /--count must be a positive integer: 0/],
    [["peers", "http://127.0.0.1:1", "--count", "2"], 2, /Unknown option '--count'/],
    [["watch", "127.0.0.1:9101"], 2, /Not an admin URL: 127\.0\.0\.1:9101/],
    [["metrics", "--help"], 0, /Exit codes: 0 ok/],
  ];
  for (const [args, code, said] of cases) {
    const io = fakeIo();
    assert.equal(await main(args, io), code, args.join(" "));
    assert.match([...io.stderr, ...io.stdout].join("\n"), said, args.join(" "));
  }
  const io = fakeIo();
  assert.equal(await main(["ping", "nope", "--json"], io), 2);
  assert.equal(JSON.parse(io.stdout[0]).exitCode, 2);
});

Deno.test("Connection.peerSettings: the settings the peer announced, frozen, after the handshake", async () => {
  await using n = await node("a");
  await using b = new Messenger({
    name: "b",
    heartbeat: { intervalMs: 100 },
    logger: captureLogger().log,
  });
  const conn = await b.connect(n.addr);
  const settings = conn.peerSettings!;
  assert.deepEqual(settings, {
    name: "a",
    version: 1,
    cluster: "heartline",
    policy: "statelessServer",
    heartbeat: { ...heartbeat, intervalMs: 100 },
    listening: [n.addr],
  });
  assert.ok(Object.isFrozen(settings) && Object.isFrozen(settings.heartbeat));
  assert.notEqual(conn.peerSettings, settings, "a copy each time");
  const accepted = n.messenger.connections()[0];
  assert.equal(accepted.peerSettings?.policy, "lossyClient");
});

// ---- the CLI as a subprocess ----

Deno.test("heartline ping --json: name, settings learnt from the refusal, RTT numbers; exit 0", async () => {
  await using n = await node("alpha");
  const { code, stdout, stderr } = await cli("ping", n.addr, "--json", "--count", "2");
  assert.equal(code, 0, stderr);
  const report = JSON.parse(stdout);
  assert.equal(report.peer.name, "alpha");
  assert.equal(report.peer.version, 1);
  assert.equal(report.peer.cluster, "heartline");
  assert.equal(report.peer.heartbeat.intervalMs, 100);
  assert.equal(report.peer.heartbeat.mode, "global");
  assert.deepEqual(report.peer.listening, [n.addr]);
  assert.deepEqual(report.adopted, { "heartbeat.intervalMs": 100 });
  assert.equal(report.attempts, 2);
  assert.equal(typeof report.handshakeMs, "number");
  assert.equal(report.rttMs.length, 2);
  for (const rtt of report.rttMs) assert.ok(typeof rtt === "number" && rtt >= 0, String(rtt));
});

Deno.test("heartline ping --strict: the refusal names the field; exit 3", async () => {
  await using n = await node("alpha");
  const { code, stdout, stderr } = await cli("ping", n.addr, "--strict", "--json");
  assert.equal(code, 3, stderr);
  assert.match(
    stderr,
    /Handshake refused by .* \(field heartbeat\.intervalMs\): .*local 1000, peer 100/,
  );
  const out = JSON.parse(stdout);
  assert.equal(out.field, "heartbeat.intervalMs");
  assert.equal(out.peer, 100);
});

Deno.test("heartline ping: closed port exits 1, bad address exits 2", async () => {
  const closed = await cli("ping", `tcp://127.0.0.1:${closedPort()}`, "--timeout", "3000");
  assert.equal(closed.code, 1, closed.stderr);
  assert.match(closed.stderr, /^heartline: Cannot reach tcp:\/\/127\.0\.0\.1:\d+: .*refused/);
  const bad = await cli("ping", "127.0.0.1:6801");
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^heartline: Not a node address: 127\.0\.0\.1:6801/);
});

Deno.test("heartline ping of a keyed node: without a key exit 4 with the hint, with --key exit 0", async () => {
  await using n = await node("keyed", { key: "cluster-key" });
  const without = await cli("ping", n.addr);
  assert.equal(without.code, 4, without.stderr);
  assert.match(without.stderr, /\(field auth\).*the node wants a key: --key or HEARTLINE_KEY/);
  const withKey = await cli("ping", n.addr, "--key", "cluster-key", "--count", "1");
  assert.equal(withKey.code, 0, withKey.stderr);
  assert.match(withKey.stdout, /^PING tcp:\/\/127\.0\.0\.1:\d+: node keyed$/m);
  assert.match(
    withKey.stdout,
    /^--- keyed: 1 heartbeat echo, rtt min\/avg\/max [\d.]+\/[\d.]+\/[\d.]+ ms$/m,
  );
});

Deno.test("heartline peers: a table and --json; a token-protected endpoint without one exits 4", async () => {
  await using p = await pair("tcp://127.0.0.1:0");
  const admin = await serveAdmin(p.server, { port: 0 });
  const table = await cli("peers", admin.url);
  assert.equal(table.code, 0, table.stderr);
  const lines = table.stdout.trimEnd().split("\n");
  assert.match(lines[0], /^NAME\s+STATE\s+PHI\s+RTT\s+LAST HEARD\s+CONNS\s+RESTARTS$/);
  assert.match(lines[1], /^client\s+up\s+[\d.]+\s+(-|[\d.]+ m?s)\s+[\d.]+ m?s ago\s+1\s+0$/);
  const json = await cli("peers", `${admin.url}/`, "--json");
  assert.equal(json.code, 0, json.stderr);
  const { peers } = JSON.parse(json.stdout);
  assert.equal(peers.length, 1);
  assert.equal(peers[0].name, "client");
  assert.equal(peers[0].state, "up");
  await admin.close();

  const locked = await serveAdmin(p.server, { port: 0, token: "s3cret" });
  const missing = await cli("peers", locked.url);
  assert.equal(missing.code, 4);
  assert.equal(
    missing.stderr.trim(),
    "heartline: The admin endpoint needs a token: --token or HEARTLINE_TOKEN",
  );
  const wrong = await cli("metrics", locked.url, "--token", "nope");
  assert.equal(wrong.code, 4);
  assert.match(wrong.stderr, /refused the token/);
  const right = await cli("peers", locked.url, "--token", "s3cret");
  assert.equal(right.code, 0, right.stderr);
  await locked.close();
  const gone = await cli("peers", locked.url, "--timeout", "3000");
  assert.equal(gone.code, 1);
  assert.match(
    gone.stderr,
    /^heartline: Cannot reach the admin endpoint at http:\/\/127\.0\.0\.1:\d+\/peers: /,
  );
});

Deno.test("heartline metrics: a summary with the coalescing ratio; --json carries it", async () => {
  await using p = await pair("tcp://127.0.0.1:0", { heartbeat: { intervalMs: 50 } });
  // Two users' liveness parts on one connection: they travel together in heartbeat frames.
  const arrived = Promise.withResolvers<void>();
  p.server.onOob("lease", () => arrived.resolve());
  p.conn.registerOob("lease", () => new Uint8Array(8), { intervalMs: 50 });
  p.conn.registerOob("watch", () => new Uint8Array(4), { intervalMs: 50 });
  p.server.onOob("watch", () => {});
  await p.conn.send(1, new Uint8Array(16));
  await deadline(arrived.promise, "an OOB part at the server");
  const admin = await serveAdmin(p.client, { port: 0 });
  const text = await cli("metrics", admin.url);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^messages\s+sent 1 \(normal 1\), received 0/m);
  assert.match(text.stdout, /^heartbeats\s+frames sent [1-9]\d*, received \d+$/m);
  assert.match(text.stdout, /^coalescing\s+\d+\.\d\d parts per frame sent/m);
  assert.match(text.stdout, /^connections\s+1: open 1; by transport tcp 1$/m);
  const json = await cli("metrics", admin.url, "--json");
  assert.equal(json.code, 0, json.stderr);
  const summary = JSON.parse(json.stdout);
  assert.ok(summary.heartbeat.partsSent >= 2, JSON.stringify(summary.heartbeat));
  assert.ok(summary.heartbeat.coalescingRatio > 0, JSON.stringify(summary.heartbeat));
  assert.equal(summary.messages.sent, 1);
});

/** Reads `stream` until its text matches `pattern`; returns the text so far, keeps reading. */
async function readUntil(
  stream: ReadableStream<Uint8Array>,
  pattern: RegExp,
): Promise<{ seen: string; rest: Promise<string> }> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!pattern.test(seen)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`Stream ended before ${pattern}: ${seen}`);
    seen += value;
  }
  const rest = (async () => {
    let more = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return more;
      more += value;
    }
  })();
  return { seen, rest };
}

Deno.test("heartline watch --count 2 --json: prints up, then down when the peer closes", async () => {
  await using n = await node("alpha");
  const admin = await serveAdmin(n.messenger, { port: 0 });
  const child = new Deno.Command(Deno.execPath(), {
    args: [...CLI, "watch", admin.url, "--count", "2", "--json"],
    cwd: new URL("../", import.meta.url),
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = new Response(child.stdout).text();
  let rest: Promise<string> | undefined;
  try {
    // Synchronise on the CLI's own word that it follows the stream, then make the events.
    const started = await deadline(
      readUntil(child.stderr, /watching node alpha at /),
      "heartline watch to start",
    );
    rest = started.rest;
    const peer = new Messenger({
      name: "bravo",
      heartbeat: { intervalMs: 100 },
      logger: captureLogger().log,
    });
    const conn = await peer.connect(n.addr);
    await conn.close();
    await peer.close();
    const status = await deadline(child.status, "heartline watch to stop after 2 events");
    const out = await deadline(stdout, "heartline watch's output");
    assert.equal(status.code, 0, started.seen + await rest);
    const events = out.trimEnd().split("\n").map((l) => JSON.parse(l));
    assert.equal(events.length, 2, out);
    assert.deepEqual(events.map((e) => [e.peer, e.state, e.reason]), [
      ["bravo", "up", "connected"],
      ["bravo", "down", "closed"],
    ]);
    assert.equal(events[1].watcher, "global");
    assert.equal(typeof events[1].time, "number");
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // it has exited
    }
    await child.status;
    await stdout.catch(() => "");
    await rest?.catch(() => "");
  }
});
