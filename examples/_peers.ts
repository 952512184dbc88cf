// Shared by the example nodes: the cluster key from the environment, and dialing a peer that
// may not be up yet.

import type { ConnectOptions, Messenger } from "../mod.ts";

/**
 * The cluster key from `HEARTLINE_KEY`, read only when that permission was granted already
 * (so a node run with `--allow-net` alone is never prompted).
 */
export function clusterKeyFromEnv(): string | undefined {
  const granted =
    Deno.permissions.querySync({ name: "env", variable: "HEARTLINE_KEY" }).state === "granted";
  return granted ? Deno.env.get("HEARTLINE_KEY") : undefined;
}

/**
 * Dials `addr` until it answers or the messenger stops, backing off from 100 ms to 2 s between
 * tries. Never rejects.
 */
export async function dialUntilUp(
  messenger: Messenger,
  addr: string,
  options: ConnectOptions = {},
): Promise<void> {
  for (let delay = 100; messenger.status === "running"; delay = Math.min(delay * 2, 2000)) {
    try {
      await messenger.connect(addr, options);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}
