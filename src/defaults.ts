/**
 * Every default in one place, so each is visible and documented.
 *
 * @module
 */

/** Largest frame payload accepted or sent: 16 MiB. */
export const MAX_FRAME_BYTES = 16 * 1024 * 1024;
/**
 * Bytes of messages a connection queues before `send()` waits: 256 KiB, one of the writer's
 * largest batches (one batch is written while the next is queued). A deeper queue does not
 * write faster; it holds more messages alive, and what is alive when the young generation is
 * collected makes V8 grow it. At 64-byte bodies (100 bytes each as counted, with preamble and
 * header), 1 MiB (10,500 messages) left a sender 30 MB more resident than 256 KiB, and 8 MiB
 * 60 MB more than 1 MiB (docs/benchmarks.md).
 */
export const MAX_QUEUE_BYTES = 256 * 1024;
/** Received messages of one connection waiting for `messages()` before it stops reading. */
export const MAX_INBOUND_MESSAGES = 10_000;
/** Bytes of bodies of one connection waiting for `messages()` before it stops reading: 8 MiB. */
export const MAX_INBOUND_BYTES = 8 * 1024 * 1024;
/** Time a new link has to complete its handshake: 5 s. */
export const HANDSHAKE_TIMEOUT_MS = 5_000;
/** Time an orderly close waits for the peer's Close before cutting the link: 5 s. */
export const CLOSE_TIMEOUT_MS = 5_000;
/** Heartbeat interval: 1 s. */
export const HEARTBEAT_INTERVAL_MS = 1_000;
/** Phi at which a peer is declared down (Akka's default). */
export const PHI_THRESHOLD = 8;
/** Silence tolerated beyond the mean interval before phi rises: 2 s. */
export const ACCEPTABLE_PAUSE_MS = 2_000;
/** Floor of the interval deviation in the phi detector: 100 ms. */
export const MIN_STD_DEV_MS = 100;
/** Silence after which the grace detector declares a peer down: 5 s. */
export const GRACE_MS = 5_000;
/** How long a refused handshake blocks redialing the same address: 60 s. */
export const REFUSED_RETRY_MS = 60_000;
/** Cluster id used when none is given. */
export const CLUSTER = "heartline";
/** Admin endpoint host: loopback only unless told otherwise. */
export const ADMIN_HOSTNAME = "127.0.0.1";
/** Lossless policies: replay buffer limit: 8 MiB. */
export const MAX_UNACKED_BYTES = 8 * 1024 * 1024;
/** `statefulServer`: how long a session waits in standby for its client: 30 s. */
export const SESSION_TIMEOUT_MS = 30_000;
/** `losslessClient`: first reconnect delay: 50 ms (doubling per try, with jitter). */
export const RECONNECT_BASE_MS = 50;
/** `losslessClient`: longest reconnect delay: 5 s. */
export const RECONNECT_MAX_MS = 5_000;
/** Connections a messenger holds at most (accepted and dialed); more are closed on accept. */
export const MAX_CONNECTIONS = 16_384;
/** Accepted links still in their handshake at most; more are closed on accept. */
export const MAX_PENDING_HANDSHAKES = 256;
/** A connection whose link carried nothing (not even a heartbeat) this long is lost: 60 s. */
export const IDLE_TIMEOUT_MS = 60_000;
