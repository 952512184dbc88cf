/**
 * The browser demo's node: one `Deno.serve` port for the page (`/demo/`, with the bundle from
 * dist/), heartline's WebSocket endpoint (`/heartline`, open to the page's origin only) and
 * the admin routes with the live cluster page (`/`). It answers each text message a page sends
 * with an echo, counts the pages' `WatchPing` parts and prints node events.
 *
 * ```sh
 * deno task browser-demo            # bundles, then serves on 127.0.0.1:8700
 * deno task browser-demo --port 0   # any free port
 * ```
 *
 * Flags: `--port` (default 8700; 0 picks one), `--name` (default `demo-node`), `--seconds`
 * (stop after that long).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Messenger, WebSocketTransport } from "../../mod.ts";
import { createNodeHandler } from "../../admin.ts";

/** Message type of a page's text. */
export const TEXT = 1;
/** Message type of the node's echo. */
export const REPLY = 2;

const FILES: Record<string, { url: URL; type: string }> = {
  "/demo/": { url: new URL("./index.html", import.meta.url), type: "text/html; charset=utf-8" },
  "/demo/client.js": {
    url: new URL("./client.js", import.meta.url),
    type: "text/javascript; charset=utf-8",
  },
  "/demo/heartline.browser.js": {
    url: new URL("../../dist/heartline.browser.js", import.meta.url),
    type: "text/javascript; charset=utf-8",
  },
  "/demo/heartline.browser.js.map": {
    url: new URL("../../dist/heartline.browser.js.map", import.meta.url),
    type: "application/json",
  },
};

/**
 * Answers a request for the demo page's files under `/demo/` (the page, its script and the
 * bundle from dist/), or returns null for any other path.
 *
 * @example
 * ```ts ignore
 * Deno.serve((req) => demoFiles(req) ?? new Response("not found", { status: 404 }));
 * ```
 */
export function demoFiles(req: Request): Promise<Response> | null {
  const path = new URL(req.url).pathname;
  if (path === "/demo") return Promise.resolve(Response.redirect(new URL("/demo/", req.url)));
  const file = FILES[path];
  if (!file) return null;
  return Deno.readFile(file.url).then(
    (body) => new Response(body, { headers: { "content-type": file.type } }),
    () => new Response(`Missing ${path}: run deno task bundle\n`, { status: 404 }),
  );
}

/** Options of {@linkcode serveDemo}. */
export interface DemoOptions {
  /** Port on 127.0.0.1; 0 picks a free one. Default 8700. */
  port?: number;
  /** The node's name. Default `demo-node`. */
  name?: string;
  /** Prints what the node sees. Default: nothing. */
  print?: (line: string) => void;
}

/** A running demo node. */
export interface DemoServer {
  /** The node's messenger. */
  readonly messenger: Messenger;
  /** The page's URL. */
  readonly pageUrl: string;
  /** The admin base URL (the live cluster page is at `/`). */
  readonly url: string;
  /** The WebSocket address pages dial. */
  readonly addr: string;
  /** Closes the messenger and stops the server. */
  close(): Promise<void>;
}

/**
 * Starts the demo node on 127.0.0.1. The WebSocket endpoint accepts upgrades from the page's
 * own origin (`http://127.0.0.1:<port>` and `http://localhost:<port>`) and refuses other
 * pages.
 *
 * @example
 * ```ts ignore
 * const demo = await serveDemo({ port: 0, print: console.log });
 * console.log(`open ${demo.pageUrl}`);
 * ```
 */
export async function serveDemo(options: DemoOptions = {}): Promise<DemoServer> {
  const print = options.print ?? (() => {});
  const { promise: bound, resolve } = Promise.withResolvers<Deno.NetAddr>();
  let handler: (req: Request, info: Deno.ServeHandlerInfo) => Response | Promise<Response> = () =>
    new Response("starting", { status: 503 });
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: options.port ?? 8700, onListen: resolve },
    (req, info) => handler(req, info),
  );
  const { port } = await bound;
  const transport = new WebSocketTransport({
    allowedOrigins: [`http://127.0.0.1:${port}`, `http://localhost:${port}`],
  });
  const messenger = new Messenger({
    name: options.name ?? "demo-node",
    transports: [transport],
    logger: (level, message) => level !== "debug" && level !== "info" && print(message),
  });
  const node = createNodeHandler(messenger, { url: `ws://127.0.0.1:${port}/heartline`, transport });
  handler = (req, info) => demoFiles(req) ?? node.fetch(req, info);

  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  const pings = new Map<string, number>();
  messenger.onOob("WatchPing", (part) => {
    const peer = part.connection.peerName ?? "?";
    const n = (pings.get(peer) ?? 0) + 1;
    pings.set(peer, n);
    if (n === 1 || n % 20 === 0) {
      print(`WatchPing #${n} from ${peer}: ${decoder.decode(part.data)}`);
    }
  });
  const loops = [
    (async () => {
      for await (const m of messenger.messages()) {
        const text = decoder.decode(m.payload);
        print(`message from ${m.connection.peerName}: ${text}`);
        if (m.type !== TEXT) continue;
        m.connection.send(REPLY, encoder.encode(`echo: ${text}`)).catch((error) =>
          print(`reply failed: ${error.message}`)
        );
      }
    })(),
    (async () => {
      for await (const ev of messenger.watch()) print(`node ${ev.peer} ${ev.state} (${ev.reason})`);
    })(),
    (async () => {
      for await (const ev of messenger.events()) {
        if (ev.kind === "accept") {
          print(`accepted ${ev.connection.peerName} (${ev.connection.policy.name})`);
        }
      }
    })(),
  ].map((loop) => loop.catch((error) => print(`a loop failed: ${error?.message ?? error}`)));
  let closing: Promise<void> | null = null;
  return {
    messenger,
    pageUrl: `http://127.0.0.1:${port}/demo/`,
    url: `http://127.0.0.1:${port}`,
    addr: node.addr,
    close: () =>
      closing ??= (async () => {
        node.close();
        await messenger.close();
        await server.shutdown();
        await Promise.allSettled(loops);
      })(),
  };
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      port: { type: "string", default: "8700" },
      name: { type: "string", default: "demo-node" },
      seconds: { type: "string" },
    },
  });
  const demo = await serveDemo({
    port: Number(values.port),
    name: values.name,
    print: (line) => console.log(`[${values.name}] ${line}`),
  });
  console.log(`open ${demo.pageUrl} (the live cluster page is at ${demo.url}/)`);
  let stopping = false;
  const stop = () => {
    if (stopping) Deno.exit(130); // a second Ctrl-C does not wait
    stopping = true;
    void demo.close().then(() => Deno.exit(0));
  };
  Deno.addSignalListener("SIGINT", stop);
  if (values.seconds) setTimeout(stop, Number(values.seconds) * 1000);
}
