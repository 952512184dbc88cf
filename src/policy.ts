/**
 * Connection policies: what a session promises when the transport fails. See docs/policies.md.
 *
 * @module
 */

/** What a policy promises. */
export interface Policy {
  /** The policy's name, carried in the handshake. */
  readonly name: PolicyName;
  /** Which side of a connection uses it. */
  readonly role: "client" | "server" | "peer";
  /** True when a transport fault ends the session and queued messages are reported unsent. */
  readonly lossy: boolean;
}

/** Names of the policies this version implements. */
export type PolicyName =
  | "lossyClient"
  | "statelessServer"
  | "losslessClient"
  | "statefulServer"
  | "losslessPeer";

/**
 * The named policies.
 *
 * - `lossyClient`: the dialing side of a lossy client/server session. On a transport fault the
 *   session ends, both ends get a `reset` event, and messages that were queued but not written
 *   are handed back in that event. The client does not reconnect by itself.
 * - `statelessServer`: the accepting side of a lossy session. It keeps nothing once the
 *   session ends.
 * - `losslessClient`: the dialing side of a lossless session. On a transport fault it
 *   reconnects by itself (capped exponential backoff with jitter) and resumes: nothing lost,
 *   duplicated or reordered. Messages sent meanwhile wait in the queue.
 * - `statefulServer`: the accepting side of a lossless session. It keeps the session
 *   (sequence numbers, unacknowledged messages) in `standby` for `sessionTimeoutMs` and never
 *   dials; a client that comes back later gets a `remote-reset`, never a silent resume.
 * - `losslessPeer`: either node may dial; one lossless session per pair of nodes. When both
 *   dial at once, the link dialed by the node whose name sorts first wins, the other dial is
 *   refused (`race`) and its `connect()` resolves to the winning session.
 *
 * @example
 * ```ts
 * import { Policies } from "./policy.ts";
 * if (!Policies.lossyClient.lossy) throw new Error("lossyClient must be lossy");
 * ```
 */
export const Policies: Readonly<Record<PolicyName, Policy>> = Object.freeze({
  lossyClient: { name: "lossyClient", role: "client", lossy: true },
  statelessServer: { name: "statelessServer", role: "server", lossy: true },
  losslessClient: { name: "losslessClient", role: "client", lossy: false },
  statefulServer: { name: "statefulServer", role: "server", lossy: false },
  losslessPeer: { name: "losslessPeer", role: "peer", lossy: false },
});

/** The server-side policy that answers a client policy. */
export function serverPolicyFor(client: string): Policy | undefined {
  if (client === "lossyClient") return Policies.statelessServer;
  if (client === "losslessClient") return Policies.statefulServer;
  if (client === "losslessPeer") return Policies.losslessPeer;
  return undefined;
}
