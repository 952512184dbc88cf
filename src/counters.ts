/**
 * Messenger-wide counters, incremented on the hot paths (plain number fields, no allocation)
 * and rendered by the admin endpoint's `/metrics`.
 *
 * @module
 */

/** Counters one messenger keeps; cheap enough to stay on in production. */
export interface Counters {
  /** Frames written, indexed by tag. */
  framesSent: number[];
  /** Frames read, indexed by tag. */
  framesReceived: number[];
  /** Bytes written to links (banner and frames). */
  bytesSent: number;
  /** Bytes read from links. */
  bytesReceived: number;
  /** Data messages written, indexed by priority (0 high, 1 normal, 2 low); replays excluded. */
  messagesSent: number[];
  /** Data messages delivered, indexed by priority. */
  messagesReceived: number[];
  /** Lossless sessions resumed after a fault. */
  reconnects: number;
  /** Sessions ended by a fault (`reset` events). */
  resets: number;
  /** Sessions reset because the peer restarted or forgot the session. */
  remoteResets: number;
  /** Messages written again on resume. */
  replayed: number;
  /** Data frames (Message, Messages) written without a checksum (both ends protect integrity). */
  uncheckedFrames: number;
  /** Data frames (Message, Messages) written with CRC-32 (the peer accepts it), not CRC-32C. */
  crc32Frames: number;
  /** Accepted links closed at once: over `maxConnections` or `maxPendingHandshakes`. */
  linksRefused: number;
}

/** Fresh zeroed counters. */
export function newCounters(): Counters {
  return {
    framesSent: new Array(16).fill(0),
    framesReceived: new Array(16).fill(0),
    bytesSent: 0,
    bytesReceived: 0,
    messagesSent: [0, 0, 0],
    messagesReceived: [0, 0, 0],
    reconnects: 0,
    resets: 0,
    remoteResets: 0,
    replayed: 0,
    uncheckedFrames: 0,
    crc32Frames: 0,
    linksRefused: 0,
  };
}

/** A copy of `c` that later increments do not change. */
export function snapshotCounters(c: Counters): Counters {
  return {
    ...c,
    framesSent: [...c.framesSent],
    framesReceived: [...c.framesReceived],
    messagesSent: [...c.messagesSent],
    messagesReceived: [...c.messagesReceived],
  };
}
