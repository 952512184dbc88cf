/**
 * Connection policies: what a session promises when the transport fails, as behaviour. See
 * docs/policies.md.
 *
 * @module
 */

/** What a session does when its link fails. */
export type FaultAction =
  /** End the session: both ends are told, queued messages are handed back as unsent. */
  | "end"
  /** Keep the session and dial again after a backoff (the side that dialed). */
  | "reconnect"
  /** Keep the session and wait for the peer to dial back (the side that accepted). */
  | "standby";

/** A policy: its name on the wire, which side uses it, and what a fault does. */
export interface Policy {
  /** The policy's name, carried in the handshake. */
  readonly name: PolicyName;
  /** Which side of a connection uses it. */
  readonly role: "client" | "server" | "peer";
  /** True when a transport fault ends the session and queued messages are reported unsent. */
  readonly lossy: boolean;
  /**
   * What a fault does to an established session, given which side of the current link this
   * end is (`client` dialed it). Faults before any session existed always end it.
   */
  onFault(side: "client" | "server"): FaultAction;
}

/** Names of the policies this version implements. */
export type PolicyName =
  | "lossyClient"
  | "statelessServer"
  | "losslessClient"
  | "statefulServer"
  | "losslessPeer";

function lossy(name: PolicyName, role: Policy["role"]): Policy {
  return Object.freeze({ name, role, lossy: true, onFault: () => "end" as const });
}

function lossless(name: PolicyName, role: Policy["role"]): Policy {
  return Object.freeze({
    name,
    role,
    lossy: false,
    onFault: (side: "client" | "server") => side === "client" ? "reconnect" as const : "standby",
  });
}

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
 *   refused (`race`) and its `connect()` resolves to the winning session. After a fault the
 *   side that dialed the last link redials; the other waits in standby.
 *
 * @example
 * ```ts
 * import { Policies } from "./policy.ts";
 * if (Policies.lossyClient.onFault("client") !== "end") throw new Error("lossy ends");
 * if (Policies.losslessPeer.onFault("server") !== "standby") throw new Error("peer waits");
 * ```
 */
export const Policies: Readonly<Record<PolicyName, Policy>> = Object.freeze({
  lossyClient: lossy("lossyClient", "client"),
  statelessServer: lossy("statelessServer", "server"),
  losslessClient: lossless("losslessClient", "client"),
  statefulServer: lossless("statefulServer", "server"),
  losslessPeer: lossless("losslessPeer", "peer"),
});

/**
 * The server-side policy that answers a client policy.
 *
 * @example
 * ```ts
 * import { serverPolicyFor } from "./policy.ts";
 * if (serverPolicyFor("losslessClient")?.name !== "statefulServer") throw new Error("pair");
 * ```
 */
export function serverPolicyFor(client: string): Policy | undefined {
  if (client === "lossyClient") return Policies.statelessServer;
  if (client === "losslessClient") return Policies.statefulServer;
  if (client === "losslessPeer") return Policies.losslessPeer;
  return undefined;
}
