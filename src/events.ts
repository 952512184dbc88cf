/**
 * What a messenger reports: its events, its health summary, and a view of its timer wheel.
 *
 * @module
 */

import type { Connection, ConnectionState, SessionEvent, UnsentMessage } from "./connection.ts";
import type { LosslessEvent } from "./session/ports.ts";

/** Events a messenger reports, as a tagged union on `kind`. */
export type MessengerEvent =
  | {
    /** A connection this node dialed completed its handshake. */
    kind: "connect";
    connection: Connection;
  }
  | {
    /** A connection this node accepted completed its handshake. */
    kind: "accept";
    connection: Connection;
  }
  | {
    /** A session ended in order, by this side or the peer. */
    kind: "close";
    connection: Connection;
    by: "local" | "peer";
    reason: string;
  }
  | {
    /** A session ended by a fault; `unsent` holds the messages that were never written. */
    kind: "reset";
    connection: Connection;
    error: Error;
    unsent: UnsentMessage[];
  }
  | {
    /** A connection failed before its session opened (bad input, refusal, timeout). */
    kind: "error";
    connection: Connection;
    error: Error;
  }
  | SessionEvent;

/** What `GET /health` reports. */
export interface MessengerHealth {
  /** Node name. */
  name: string;
  /** Instance nonce. */
  nonce: string;
  /** `running` or `closing` or `closed`. */
  status: "running" | "closing" | "closed";
  /** Milliseconds since the messenger was created. */
  uptimeMs: number;
  /** Bound listener addresses. */
  listening: string[];
  /** Connections by state. */
  connections: Record<ConnectionState, number>;
}

/** A read-only view of the central timer wheel, for diagnostics and metrics. */
export interface TimerStats {
  /** Timers in the wheel. */
  readonly size: number;
  /** The wheel's tick (its accuracy bound), ms. */
  readonly tickMs: number;
  /** Timers fired since start. */
  readonly fired: number;
  /** Timers that fired more than two ticks late. */
  readonly lateFires: number;
  /** Whether the wheel's one host timeout is armed. */
  readonly armed: boolean;
}

/** The messenger event for what a lossless session reported. */
export function sessionEvent(connection: Connection, event: LosslessEvent): SessionEvent {
  switch (event.kind) {
    case "disconnect":
      return { kind: "disconnect", connection, error: event.error };
    case "resume":
      return { kind: "resume", connection, replayed: event.replayed };
    case "remote-reset": {
      const { unacked, reason } = event;
      return { kind: "remote-reset", connection, lost: unacked.length, unacked, reason };
    }
  }
}

/** Options of `messenger.messages()`. */
export interface MessagesOptions {
  /** Yield arrays of the messages that arrived together instead of one message at a time. */
  batch?: boolean;
  /** Most messages in one batch. Default 1024. */
  maxBatch?: number;
}
