/**
 * The CLI's HTTP side: requests to a node's admin endpoint with its bearer token, and every
 * way they fail turned into one clear line and an exit code. Also reads the server-sent events
 * of `GET /events`.
 *
 * @module
 */

import { CliError, ExitCode } from "./args.ts";

/** Options of {@linkcode adminGet}. */
export interface AdminGetOptions {
  /** Bearer token; without it a protected endpoint answers 401. */
  token?: string;
  /** Bound on the request until its headers arrive, ms. */
  timeoutMs: number;
  /** Stops the request (Ctrl-C). */
  signal?: AbortSignal;
}

/** The hint printed when an admin endpoint answers 401. */
export function tokenHint(token: string | undefined): string {
  return token === undefined
    ? "The admin endpoint needs a token: --token or HEARTLINE_TOKEN"
    : "The admin endpoint refused the token: check --token or HEARTLINE_TOKEN";
}

/**
 * `GET base + path` with the token; resolves with a 2xx response (its body unread) and
 * rejects with a {@linkcode CliError}: 1 when the endpoint cannot be reached, times out or
 * answers another status, 4 on 401. The timeout covers the wait for the headers only, so a
 * stream (`/events`) may then run as long as it likes.
 *
 * @example
 * ```ts
 * import { adminGet } from "./admin_client.ts";
 * try {
 *   await adminGet("http://127.0.0.1:1", "/peers", { timeoutMs: 2000 });
 *   throw new Error("reached port 1");
 * } catch (e) {
 *   if ((e as { exitCode?: number }).exitCode !== 1) throw e;
 * }
 * ```
 */
export async function adminGet(
  base: string,
  path: string,
  options: AdminGetOptions,
): Promise<Response> {
  const url = `${base}${path}`;
  const headers: Record<string, string> = {};
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  const timeout = new AbortController();
  const timer = setTimeout(
    () =>
      timeout.abort(
        new CliError(ExitCode.unreachable, `No answer from ${url} within ${options.timeoutMs} ms`),
      ),
    options.timeoutMs,
  );
  const signals = [timeout.signal];
  if (options.signal) signals.push(options.signal);
  let res: Response;
  try {
    res = await fetch(url, { headers, signal: AbortSignal.any(signals) });
  } catch (error) {
    if (timeout.signal.aborted) throw timeout.signal.reason;
    if (options.signal?.aborted) throw options.signal.reason;
    // Deno says "fetch failed" and puts the reason in the cause.
    const cause = (error as Error).cause as Error | undefined;
    const why = (cause?.message ?? (error as Error).message)
      .replace(/^error sending request for url \([^)]*\): /, "");
    throw new CliError(ExitCode.unreachable, `Cannot reach the admin endpoint at ${url}: ${why}`, {
      cause: error,
    });
  } finally {
    clearTimeout(timer);
  }
  if (res.status === 401) {
    await res.body?.cancel();
    throw new CliError(ExitCode.auth, tokenHint(options.token), { detail: { status: 401 } });
  }
  if (!res.ok) {
    await res.body?.cancel();
    const what = res.status === 404 ? " (is it a heartline admin endpoint?)" : "";
    throw new CliError(ExitCode.unreachable, `${url} answered ${res.status}${what}`, {
      detail: { status: res.status },
    });
  }
  return res;
}

/** `GET base + path` as JSON; a body that is not JSON is a {@linkcode CliError} (exit 1). */
export async function adminJson(
  base: string,
  path: string,
  options: AdminGetOptions,
): Promise<unknown> {
  const res = await adminGet(base, path, options);
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new CliError(
      ExitCode.unreachable,
      `${base}${path} did not answer JSON (is it a heartline admin endpoint?)`,
      { cause },
    );
  }
}

/** One server-sent event. */
export interface SseEvent {
  /** The `event:` field (`message` when absent). */
  event: string;
  /** The `data:` lines, joined with newlines. */
  data: string;
}

/**
 * Parses a `text/event-stream` body into events, as they arrive: fields `event` and `data`,
 * comments and other fields skipped, CRLF, LF or CR line ends. When `signal` aborts, the
 * body is cancelled and the events end.
 *
 * @example
 * ```ts
 * import { readSse } from "./admin_client.ts";
 * const body = new Response("event: node\ndata: {\"a\":1}\n\n: comment\n\ndata: x\n\n").body!;
 * const events = await Array.fromAsync(readSse(body));
 * if (events.length !== 2 || events[0].event !== "node" || events[1].data !== "x") {
 *   throw new Error("wrong events");
 * }
 * ```
 */
export async function* readSse(
  body: ReadableStream<Uint8Array>,
  signal?: AbortSignal,
): AsyncGenerator<SseEvent> {
  let buffer = "";
  let event = "";
  let data: string[] = [];
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  const onAbort = () => reader.cancel().catch(() => {});
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    if (signal?.aborted) return;
    for (;;) {
      const { value, done } = await reader.read();
      // At the end a lone CR is a whole line end; otherwise it may be half of a CRLF.
      if (done && !buffer.endsWith("\r")) return;
      buffer += done ? "\n" : value;
      for (;;) {
        const end = buffer.search(/\r\n|\r|\n/);
        if (end < 0 || (end === buffer.length - 1 && buffer[end] === "\r")) break;
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + (buffer.startsWith("\r\n", end) ? 2 : 1));
        if (line === "") {
          if (data.length > 0) yield { event: event || "message", data: data.join("\n") };
          event = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
      }
      if (done) return;
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
    await reader.cancel().catch(() => {});
  }
}
