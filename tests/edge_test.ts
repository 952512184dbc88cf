// Edge nodes: serveNode() and createNodeHandler() (one port for the admin routes and the
// WebSocket endpoint), and examples/edge.ts run as its own process with --allow-net alone,
// joined to a TCP cluster.

import assert from "node:assert/strict";
import { captureLogger, deadline, take, WAIT_MS, waitEvent } from "./_helpers.ts";
import { Messenger, type MessengerOptions, TcpTransport, WebSocketTransport } from "../mod.ts";
import { createNodeHandler, serveNode } from "../admin.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const TOKEN = "s3cret";
const authorized = { authorization: `Bearer ${TOKEN}` };

function node(name: string, options: MessengerOptions = {}): Messenger {
  return new Messenger({
    name,
    transports: [new TcpTransport(), new WebSocketTransport()],
    logger: captureLogger().log,
    ...options,
  });
}

/** Resolves when `messenger`'s node events show `peer` in `state`; fails after `ms`. */
function waitPeer(messenger: Messenger, peer: string, state: string, ms = WAIT_MS) {
  const iter = messenger.watch()[Symbol.asyncIterator]();
  const found = (async () => {
    for (;;) {
      const r = await iter.next();
      if (r.done) throw new Error(`Node events ended before ${peer} was ${state}`);
      if (r.value.peer === peer && r.value.state === state) return r.value;
    }
  })();
  return deadline(found, `node event: ${peer} ${state} on ${messenger.name}`, ms)
    .finally(() => iter.return?.());
}

/** Status and body of a request; the body is always read, so no response stays open. */
async function get(url: string, headers: HeadersInit = {}) {
  const res = await deadline(fetch(url, { headers }), `GET ${url}`);
  return { status: res.status, text: await res.text() };
}

/**
 * examples/edge.ts as a child process, bounded: every wait on its output fails after a while
 * with a message, and disposing it kills it if it is still running.
 */
function spawnEdge(args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    // --no-prompt: any access beyond the network fails at once instead of asking.
    args: ["run", "--no-prompt", "--allow-net=127.0.0.1", "examples/edge.ts", ...args],
    cwd: new URL("../", import.meta.url),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stdout = "";
  let stderr = "";
  let ended = false;
  let changed = Promise.withResolvers<void>();
  const pumpOut = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      stdout += chunk;
      changed.resolve();
      changed = Promise.withResolvers<void>();
    }
    ended = true;
    changed.resolve();
  })();
  const pumpErr = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) stderr += chunk;
  })();
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  return {
    /** The first match of `re` in the output so far or to come; fails naming `what`. */
    waitFor(re: RegExp, what: string): Promise<RegExpExecArray> {
      const seen = (async () => {
        for (;;) {
          const m = re.exec(stdout);
          if (m) return m;
          if (ended) throw new Error(`Edge node ended before ${what}:\n${stdout}\n${stderr}`);
          await changed.promise;
        }
      })();
      return deadline(seen, `${what}; output so far:\n${stdout}\n${stderr}`);
    },
    /** SIGTERM, then the exit code and all of the output. */
    async stop(): Promise<{ code: number; stdout: string; stderr: string }> {
      child.kill("SIGTERM");
      const { code } = await deadline(status, "the edge node to exit on SIGTERM");
      await deadline(Promise.all([pumpOut, pumpErr]), "the edge node's output to end");
      return { code, stdout, stderr };
    },
    async [Symbol.asyncDispose]() {
      try {
        if (!exited) child.kill("SIGKILL");
      } catch {
        // it exited meanwhile
      }
      await status;
      await Promise.all([pumpOut, pumpErr]);
    },
  };
}

Deno.test("createNodeHandler() routes the endpoint before the admin token, the rest behind it", async () => {
  await using m = node("edge");
  const h = createNodeHandler(m, { url: "ws://127.0.0.1:8000/heartline", token: TOKEN });
  assert.equal(h.addr, "ws://127.0.0.1:8000/heartline");
  assert.deepEqual(m.health().listening, [h.addr]);
  const req = (path: string, headers: HeadersInit = {}) =>
    h.fetch(new Request(`http://127.0.0.1:8000${path}`, { headers }));

  for (const path of ["/health", "/metrics", "/peers", "/connections", "/elsewhere"]) {
    const res = await req(path);
    assert.equal(res.status, 401, `${path} without the token`);
    await res.body?.cancel();
  }
  const health = await req("/health", authorized);
  assert.equal(health.status, 200);
  assert.equal((await health.json()).name, "edge");
  const missing = await req("/elsewhere", authorized);
  assert.equal(missing.status, 404);
  await missing.body?.cancel();

  // The endpoint answers without the token: a plain request is asked to upgrade, not refused.
  const plain = await req("/heartline");
  assert.equal(plain.status, 426);
  await plain.body?.cancel();
  const browser = await req("/heartline", { upgrade: "websocket", origin: "https://evil.test" });
  assert.equal(browser.status, 403, "a browser origin not allowed by the transport");
  await browser.body?.cancel();

  h.close();
  const closed = await req("/heartline", { upgrade: "websocket" });
  assert.equal(closed.status, 503, "a closed endpoint accepts no peers");
  await closed.body?.cancel();
  assert.equal((await req("/health", authorized)).status, 200, "admin routes still answer");
});

Deno.test("createNodeHandler() refuses a public address without keys, and an admin path", async () => {
  await using open = node("open");
  assert.throws(
    () => createNodeHandler(open, { url: "wss://edge.example.com/heartline" }),
    (e: Error) => e instanceof TypeError && /set auth, or insecure: true/.test(e.message),
  );
  assert.deepEqual(open.health().listening, [], "nothing accepted");
  assert.throws(
    () => createNodeHandler(open, { url: "ws://127.0.0.1:8000/health" }),
    (e: Error) => e instanceof TypeError && /admin route: \/health/.test(e.message),
  );

  await using keyed = node("keyed", { auth: { key: "cluster-key" } });
  const h = createNodeHandler(keyed, { url: "wss://edge.example.com/heartline" });
  assert.equal(h.addr, "wss://edge.example.com/heartline");
  await using insecure = node("insecure", { insecure: true });
  createNodeHandler(insecure, { url: "wss://edge.example.com/heartline" });
});

Deno.test("serveNode(): peers and admin routes on one port; it stops with the messenger", async () => {
  const edge = node("edge");
  const served = await serveNode(edge, { port: 0, token: TOKEN, path: "/cluster" });
  const port = new URL(served.url).port;
  assert.equal(served.addr, `ws://127.0.0.1:${port}/cluster`);
  await using far = node("far");
  const accepted = waitEvent(edge, "accept", (e) => e.connection.peerName === "far");
  const conn = await deadline(far.connect(served.addr), "far to dial the edge node");
  const edgeConn = (await accepted).connection;
  await conn.send(1, encoder.encode("to edge"));
  assert.equal(decoder.decode((await take(edge, 1))[0].payload), "to edge");
  await edgeConn.send(2, encoder.encode("to far"));
  assert.equal(decoder.decode((await take(far, 1))[0].payload), "to far");

  assert.equal((await get(`${served.url}/health`)).status, 401);
  const health = await get(`${served.url}/health`, authorized);
  assert.equal(health.status, 200);
  assert.equal(JSON.parse(health.text).name, "edge");
  assert.equal(JSON.parse(health.text).connections.open, 1);

  await edge.close();
  await assert.rejects(fetch(`${served.url}/health`), "the server stopped with the messenger");
  await served.close(); // again: a no-op
});

Deno.test("serveNode() on a closed messenger rejects and releases its port", async () => {
  const m = node("gone");
  await m.close();
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  await assert.rejects(serveNode(m, { port }), /Messenger gone is closed/);
  const again = Deno.listen({ hostname: "127.0.0.1", port }); // throws AddrInUse if it were kept
  again.close();
});

Deno.test("examples/edge.ts joins a TCP cluster with --allow-net=127.0.0.1 and nothing else", async () => {
  // A TCP-only node for the edge node to dial, and a node that dials the edge over WebSocket.
  await using t = new Messenger({ name: "t", logger: captureLogger().log });
  const tcpAddr = await t.listen("tcp://127.0.0.1:0");
  await using u = node("u");
  await u.listen("tcp://127.0.0.1:0");
  const accepted = waitEvent(t, "accept", (e) => e.connection.peerName === "e");

  const args = ["--name", "e", "--port", "0", "--peer", tcpAddr, "--token", TOKEN];
  await using edge = spawnEdge([...args, "--every-ms", "200"]);
  const [, url] = await edge.waitFor(/admin endpoint at (http:\/\/\S+)\/health/, "the admin URL");
  const [, wsAddr] = await edge.waitFor(/accepting peers at (ws:\/\/\S+)/, "the endpoint");
  assert.equal(wsAddr, `${url.replace("http:", "ws:")}/heartline`, "one port for both");

  // The edge node dials the TCP node; messages flow both ways; t sees e up.
  const fromEdge = (await accepted).connection;
  assert.match(fromEdge.remoteAddr, /^tcp:/);
  const tUp = waitPeer(t, "e", "up");
  assert.match(decoder.decode((await take(t, 1))[0].payload), /^hello #\d+ from e$/);
  await fromEdge.send(1, encoder.encode("hi from t"));
  await edge.waitFor(/\[e\] got "hi from t" from t/, "the edge node to print t's message");
  await tUp;

  // A node dials the edge node over WebSocket, on the admin port, with no admin token.
  const uUp = waitPeer(u, "e", "up");
  const toEdge = await deadline(u.connect(wsAddr), "u to dial the edge node over WebSocket");
  assert.equal(toEdge.peerName, "e");
  assert.equal(toEdge.state, "open");
  assert.match(decoder.decode((await take(u, 1))[0].payload), /^hello #\d+ from e$/);
  await toEdge.send(1, encoder.encode("hi from u"));
  await edge.waitFor(/\[e\] got "hi from u" from u/, "the edge node to print u's message");
  await uUp;

  // The admin routes, on the same port, keep their token.
  for (const path of ["/health", "/metrics", "/peers", "/connections"]) {
    assert.equal((await get(`${url}${path}`)).status, 401, `${path} without the token`);
  }
  const health = await get(`${url}/health`, authorized);
  assert.equal(health.status, 200);
  const body = JSON.parse(health.text);
  assert.equal(body.name, "e");
  assert.deepEqual(body.listening, [wsAddr]);
  assert.equal(body.connections.open, 2);
  const peers = JSON.parse((await get(`${url}/peers`, authorized)).text) as { name: string }[];
  assert.deepEqual(peers.map((p) => p.name).sort(), ["t", "u"]);

  // SIGTERM closes it in order; run with network access alone, it never needed more.
  const tClosed = waitEvent(t, "close", (e) => e.connection === fromEdge);
  const out = await edge.stop();
  assert.equal(out.code, 0, out.stdout + out.stderr);
  assert.match(out.stdout, /\[e\] closing\n[^]*\[e\] closed\n/);
  assert.doesNotMatch(out.stderr, /NotCapable|PermissionDenied|permission/i);
  await tClosed;
});
