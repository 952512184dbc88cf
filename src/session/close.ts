/**
 * The orderly close of a session, a sub-state of `closing`: each side writes its queue, then
 * one Close frame; the session is closed once both Close frames have crossed and nothing is
 * being written.
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
 * c.sent = true;
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

  /** Our Close frame. */
  frame(): Uint8Array {
    return encodeFrame(Tag.Close, encodeClose(this.reason));
  }

  /** Whether the close is complete, given whether the writer is still busy. */
  done(writing: boolean): boolean {
    return this.sent && this.received && !writing;
  }
}
