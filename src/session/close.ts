/**
 * The orderly close of a session, a sub-state of `closing`: each side writes its queue, then
 * one Close frame; the session is closed once both Close frames have crossed, nothing is being
 * written and, on lossless policies, the peer has acknowledged every message (a closing side
 * keeps acknowledging until the end, so a message written just before the Close is known to
 * have arrived, or is handed back).
 *
 * @module
 */

import { encodeClose } from "../protocol/control.ts";
import { encodeFrame, Tag } from "../protocol/frame.ts";

/**
 * Progress of one orderly close.
 *
 * @example
 * ```ts
 * import { Close } from "./close.ts";
 * const c = new Close("bye", "local");
 * if (c.take(10) !== undefined) throw new Error("the queue goes first");
 * if (c.take(0) === undefined || c.take(0) !== undefined) throw new Error("one Close frame");
 * c.received = true;
 * if (!c.done(false)) throw new Error("both Close frames crossed");
 * ```
 */
export class Close {
  /** Our Close frame was handed to the writer. */
  sent = false;
  /** The peer's Close frame arrived. */
  received = false;

  /** A close for `reason`, started by this side or the peer. */
  constructor(readonly reason: string, readonly by: "local" | "peer") {}

  /** Whether our Close frame is due: not sent yet, and the queue (`queuedBytes`) written. */
  due(queuedBytes: number): boolean {
    return !this.sent && queuedBytes === 0;
  }

  /** Our Close frame, once, when it is due (then it counts as sent). */
  take(queuedBytes: number): Uint8Array | undefined {
    if (!this.due(queuedBytes)) return undefined;
    this.sent = true;
    return encodeFrame(Tag.Close, encodeClose(this.reason));
  }

  /**
   * Whether the close is complete, given whether the writer is still busy and how many
   * messages the peer has not acknowledged yet (always 0 on lossy policies).
   */
  done(writing: boolean, unacked = 0): boolean {
    return this.sent && this.received && !writing && unacked === 0;
  }
}
