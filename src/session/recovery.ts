/**
 * What a fault does to a session: end it, redial after a backoff, or wait in standby. The
 * policy decides for an established session (`Policy.onFault`); without one, after a refusal,
 * or while closing, a fault always ends it.
 *
 * @module
 */

import { ConnectionClosedError, HandshakeRefusedError, UnwritableMessageError } from "../errors.ts";
import type { Limits } from "../options.ts";
import type { Policy } from "../policy.ts";
import type { ConnectionState } from "./state.ts";
import type { DialPort } from "./ports.ts";
import type { Link } from "../../transports/types.ts";

/** The plan for one fault. */
export type FaultPlan =
  | { kind: "end" }
  | { kind: "reconnect"; delayMs: number }
  | { kind: "standby" };

/** The facts a fault is judged by. */
export interface FaultFacts {
  /** The session's state when the fault came. */
  state: ConnectionState;
  /** Whether a handshake ever completed (a session exists to keep). */
  established: boolean;
  /** This end's policy. */
  policy: Policy;
  /** Which end dialed the current link. */
  side: "client" | "server";
  /** Redials that failed in a row. */
  attempt: number;
}

/**
 * Plans the answer to `error`. A session ends on a refusal, or on a message it cannot write (a
 * new link would not help); otherwise its policy decides. A redial waits `reconnectBaseMs`
 * doubling per failed try, capped at `reconnectMaxMs`, times a jitter of 0.5-1 from `random()`.
 *
 * @example
 * ```ts
 * import { planFault } from "./recovery.ts";
 * import { Policies } from "../policy.ts";
 * import { resolveLimits } from "../options.ts";
 * import { UnwritableMessageError } from "../errors.ts";
 * const facts = {
 *   state: "open", established: true, policy: Policies.losslessClient, side: "client", attempt: 3,
 * } as const;
 * const plan = planFault(facts, new Error("cut"), resolveLimits({}), () => 1);
 * if (plan.kind !== "reconnect" || plan.delayMs !== 400) throw new Error("50 ms x 2^3");
 * const unwritable = new UnwritableMessageError("body detached");
 * if (planFault(facts, unwritable, resolveLimits({}), () => 1).kind !== "end") {
 *   throw new Error("a new link would fail the same way");
 * }
 * ```
 */
export function planFault(
  facts: FaultFacts,
  error: Error,
  limits: Limits,
  random: () => number,
): FaultPlan {
  if (
    !facts.established || facts.state === "closing" || error instanceof HandshakeRefusedError ||
    error instanceof UnwritableMessageError // a new link would fail the same way
  ) {
    return { kind: "end" };
  }
  const action = facts.policy.onFault(facts.side);
  if (action !== "reconnect") return { kind: action };
  const base = limits.reconnectBaseMs * 2 ** Math.min(facts.attempt, 16);
  return {
    kind: "reconnect",
    delayMs: Math.min(limits.reconnectMaxMs, base) * (0.5 + random() / 2),
  };
}

/** What a redial reports back to its session. */
export interface RedialCallbacks {
  /** Whether the session still wants the link (it may have closed, or taken its peer's). */
  wanted(): boolean;
  /** The new link. */
  attach(link: Link): void;
  /** The dial failed. */
  failed(error: Error): void;
}

/**
 * Dials `addr` again for a session in `connecting`; a link the session no longer wants is
 * closed at once. Never rejects.
 */
export async function redial(dialer: DialPort, addr: string, cb: RedialCallbacks): Promise<void> {
  let link: Link;
  try {
    link = await dialer.redial(addr);
  } catch (error) {
    if (cb.wanted()) cb.failed(error as Error);
    return;
  }
  if (!cb.wanted()) return link.close();
  try {
    cb.attach(link);
  } catch (error) {
    cb.failed(error as Error); // never a rejection nobody handles
  }
}

/** The error a session in standby ends with when its peer does not come back in time. */
export function standbyExpired(peer: string | undefined, limits: Limits): ConnectionClosedError {
  return new ConnectionClosedError(
    `Session with ${peer} expired after ${limits.sessionTimeoutMs} ms in standby`,
  );
}
