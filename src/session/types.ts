/**
 * Types a session shares with the node around it: its counters, its fixed facts, and the
 * error a dial that lost a race ends with.
 *
 * @module
 */

import type { Policy } from "../policy.ts";

/** Counters of one session. */
export interface SessionStats {
  /** Messages written (replays excluded). */
  messagesSent: number;
  /** Messages received. */
  messagesReceived: number;
  /** Bytes written, frames included. */
  bytesSent: number;
  /** Bytes read. */
  bytesReceived: number;
  /** Frames written. */
  framesSent: number;
  /** Frames read. */
  framesReceived: number;
  /** Messages written again after a resume. */
  replayed: number;
  /** Replayed messages that had already been delivered and were dropped. */
  duplicatesDropped: number;
}

/** Zeroed counters. */
export function newSessionStats(): SessionStats {
  return {
    messagesSent: 0,
    messagesReceived: 0,
    bytesSent: 0,
    bytesReceived: 0,
    framesSent: 0,
    framesReceived: 0,
    replayed: 0,
    duplicatesDropped: 0,
  };
}

/** A dial of ours lost a race to the peer's own dial; carries the session to use instead. */
export class SupersededError<H> extends Error {
  /** Creates the error naming the winning session's handle. */
  constructor(readonly winner: H) {
    super("Dial superseded by the peer's own dial");
    this.name = "SupersededError";
  }
}

/** The fixed facts of a session. */
export interface SessionInit<H> {
  /** `client` dialed the first link, `server` accepted it. */
  side: "client" | "server";
  /** This end's policy (the accepting side learns it from the Hello). */
  policy: Policy;
  /** The address dialed, or the peer's address. */
  remoteAddr: string;
  /** What the node knows this session by. */
  handle: H;
}
