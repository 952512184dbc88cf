/**
 * `heartline watch <admin-url>`: follows `GET /events` and prints every node event as it
 * happens, one line each (JSON lines with `--json`), until Ctrl-C, `--count` events or
 * `--seconds` seconds. The events the node kept from before (the `hello` history) are not
 * printed: watch shows what happens from now on.
 *
 * @module
 */

import { adminGet, readSse } from "./admin_client.ts";
import { CliError, type CliIo, ExitCode } from "./args.ts";
import { formatNodeEvent, type WatchedEvent } from "./format.ts";

/** Options of {@linkcode runWatch}. */
export interface WatchCommandOptions {
  /** The admin endpoint, checked. */
  url: string;
  /** Bearer token. */
  token?: string;
  /** Bound on the wait for the stream to start, ms. */
  timeoutMs: number;
  /** Stop after this many events. */
  count?: number;
  /** Stop after this many seconds. */
  seconds?: number;
  /** Print JSON lines instead of text. */
  json: boolean;
}

function parseData(data: string, url: string): Record<string, unknown> {
  try {
    const value = JSON.parse(data);
    if (typeof value === "object" && value !== null) return value;
  } catch {
    // reported below
  }
  throw new CliError(ExitCode.unreachable, `${url}/events sent an event that is not JSON`);
}

/**
 * Runs `heartline watch`; resolves when the count or time is reached or on Ctrl-C, rejects
 * with a `CliError` (exit 1 when the stream ends first: the node went away).
 */
export async function runWatch(options: WatchCommandOptions, io: CliIo): Promise<void> {
  const signals = [io.signal];
  if (options.seconds !== undefined) signals.push(AbortSignal.timeout(options.seconds * 1000));
  const signal = AbortSignal.any(signals);
  let res: Response;
  try {
    res = await adminGet(options.url, "/events", { ...options, signal });
  } catch (error) {
    if (signal.aborted && error === signal.reason) return;
    throw error;
  }
  const type = res.headers.get("content-type") ?? "";
  if (!type.startsWith("text/event-stream")) {
    await res.body?.cancel();
    throw new CliError(ExitCode.unreachable, `${options.url}/events is not an event stream`);
  }
  let seen = 0;
  try {
    for await (const sse of readSse(res.body!, signal)) {
      if (sse.event === "hello") {
        const hello = parseData(sse.data, options.url);
        const node = (hello.node as { name?: string } | undefined)?.name ?? "?";
        io.err(`watching node ${node} at ${options.url} (Ctrl-C stops)`);
        continue;
      }
      if (sse.event !== "node") continue;
      const event = parseData(sse.data, options.url) as unknown as WatchedEvent;
      io.out(options.json ? JSON.stringify(event) : formatNodeEvent(event));
      if (options.count !== undefined && ++seen >= options.count) return;
    }
  } catch (error) {
    if (signal.aborted) return;
    if (error instanceof CliError) throw error;
    throw new CliError(
      ExitCode.unreachable,
      `Event stream from ${options.url} failed: ${(error as Error).message}`,
      { cause: error },
    );
  }
  if (signal.aborted) return;
  throw new CliError(ExitCode.unreachable, `${options.url} closed the event stream`);
}
