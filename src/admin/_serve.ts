// Internal: the HTTP server under `serveAdmin` and `serveNode`. Open live streams (`/events`)
// would hold `shutdown()` forever, so closing aborts them first through `signal`.

import { ADMIN_HOSTNAME } from "../defaults.ts";
import { formatHostPort } from "../../transports/types.ts";

/** A running server and what the app it serves needs to know of it. */
export interface HttpServer {
  /** The bound host, in URL form (IPv6 in brackets), e.g. `127.0.0.1`. */
  readonly host: string;
  /** The bound port. */
  readonly port: number;
  /** Base URL, e.g. `http://127.0.0.1:9100`. */
  readonly url: string;
  /** Aborted when the server closes (and when `options.signal` aborts): ends live streams. */
  readonly signal: AbortSignal;
  /** Ends the live streams, then shuts the server down; once. */
  close(): Promise<void>;
}

/**
 * Serves `handle` with `Deno.serve` on `hostname` (default 127.0.0.1) and `port` (0: any).
 * `handle` is called per request, so it may be set up after the server is bound.
 */
export function serveHttp(
  options: { hostname?: string; port?: number; signal?: AbortSignal },
  handle: (req: Request, info: Deno.ServeHandlerInfo) => Response | Promise<Response>,
): HttpServer {
  const streams = new AbortController();
  const signal = options.signal
    ? AbortSignal.any([streams.signal, options.signal])
    : streams.signal;
  const server = Deno.serve(
    { hostname: options.hostname ?? ADMIN_HOSTNAME, port: options.port ?? 0, onListen: () => {} },
    handle,
  );
  const { hostname, port } = server.addr;
  const url = formatHostPort("http", hostname, port);
  let closing: Promise<void> | null = null;
  return {
    host: new URL(url).hostname,
    port,
    url,
    signal,
    close: () => closing ??= (streams.abort(), server.shutdown()),
  };
}
