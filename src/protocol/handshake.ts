/**
 * Handshake payloads of protocol v1: the Hello/Welcome JSON body and the Refuse body, their
 * codecs, and {@linkcode checkHello}, which decides whether two nodes can talk. Pure functions;
 * imports nothing above src/protocol/.
 *
 * @module
 */

import { FrameError, HandshakeRefusedError } from "../errors.ts";
import { PROTOCOL_VERSION } from "./frame.ts";
import { printable } from "./text.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Largest handshake payload accepted, whatever the frame limit: 16 KiB. */
export const MAX_HANDSHAKE_BYTES = 16 * 1024;

/** Longest node name accepted, in characters. */
export const MAX_NAME = 255;

/** Longest session id accepted, in characters. */
export const MAX_SESSION_ID = 64;

/** Listen addresses a Hello may list; more are ignored. */
export const MAX_LISTENING = 16;

/**
 * Heartbeat settings that every node of a cluster must agree on: the handshake carries them
 * and refuses a peer whose values differ, naming the field.
 */
export interface HeartbeatSettings {
  /** `global`: one heartbeat per peer shared by all subscribers; `local`: one per subscriber. */
  mode: "global" | "local";
  /** `phi` (phi accrual, the default) or `grace` (down after a fixed silence). */
  detector: "phi" | "grace";
  /** Expected interval between heartbeats, ms. */
  intervalMs: number;
  /** Phi at or above which a peer is down (phi mode). Akka uses 8. */
  phiThreshold: number;
  /** Silence tolerated on top of the mean interval before phi rises (phi mode), ms. */
  acceptablePauseMs: number;
  /** Floor of the standard deviation of intervals (phi mode), ms. */
  minStdDevMs: number;
  /** Silence after which a peer is down (grace mode), ms. */
  graceMs: number;
}

/** The fields of {@linkcode HeartbeatSettings}, in the order the handshake checks them. */
export const HEARTBEAT_FIELDS = [
  "mode",
  "intervalMs",
  "detector",
  "phiThreshold",
  "acceptablePauseMs",
  "minStdDevMs",
  "graceMs",
] as const;

/** The JSON body of a Hello or Welcome frame. */
export interface Hello {
  /** Protocol version. */
  version: number;
  /** Node name of the sender. */
  name: string;
  /** Random per-process instance nonce: a new value means the peer restarted. */
  nonce: string;
  /** Connection policy the sender uses for this connection. */
  policy: string;
  /** Cluster id; peers of different clusters refuse each other. */
  cluster: string;
  /** Heartbeat settings. */
  heartbeat: HeartbeatSettings;
  /** Lossless policies: the highest sequence the sender has received in the session. */
  inSeq?: number;
  /** Lossless client: the nonce of the server incarnation it has a session with, or null. */
  resumeNonce?: string | null;
  /**
   * Lossless: the session's id. A Welcome names the session the link now carries; a dialing
   * side's Hello names the session it wants to resume (absent before its first Welcome).
   */
  session?: string;
  /** Hello: the dialing side's fresh challenge (32 hex digits). */
  challenge?: string;
  /** With authentication: the sender's HMAC proof of its name over the handshake transcript. */
  proof?: string;
  /**
   * Lossless resume: the dialing side's (in its Hello) or the accepting side's (in a Welcome
   * with `resumed: true`) proof that it holds the session's resume secret.
   */
  resumeProof?: string;
  /**
   * The sender's end of this link protects integrity (TLS, QUIC) and it accepts frames without
   * checksums: when both Hello and Welcome say so, Message frames skip them from then on.
   */
  integrity?: boolean;
  /**
   * The sender accepts Message frames checksummed with CRC-32 (`FLAG_CRC32`): the other end
   * may send them from then on. Absent in nodes older than the flag, which get CRC-32C.
   */
  crc32?: boolean;
  /**
   * The sender accepts Messages frames (many small messages under one preamble and checksum)
   * with payloads of up to this many bytes: the other end may send them from then on. Absent
   * in nodes older than the frame, which get a Message frame per message.
   */
  batch?: number;
  /** Welcome to a lossless client: whether its session was resumed (always present). */
  resumed?: boolean;
  /** Addresses the sender listens on (lets a peer tell which of its dials go to the sender). */
  listening?: string[];
}

/** The JSON body of a Refuse frame. */
export interface Refusal {
  /** The setting that differs. */
  field: string;
  /** Human-readable explanation, from the refusing side's point of view. */
  message: string;
  /** The refusing side's value, when the refusal is about differing values. */
  local?: unknown;
  /** The refused side's value, as the refusing side received it. */
  peer?: unknown;
}

/** Encodes a JSON control payload (hello, welcome, refuse). */
export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

function parseJson(payload: Uint8Array, what: string): Record<string, unknown> {
  if (payload.length > MAX_HANDSHAKE_BYTES) {
    throw new FrameError("oversize", `${what} too large: ${payload.length} bytes`);
  }
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(payload));
  } catch (cause) {
    throw new FrameError("malformed", `${what} is not valid JSON`, { cause });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new FrameError("malformed", `${what} is not a JSON object`);
  }
  return value as Record<string, unknown>;
}

function str(obj: Record<string, unknown>, key: string, what: string): string {
  const value = obj[key];
  if (typeof value !== "string") {
    throw new FrameError("malformed", `${what} field ${key} is not a string`);
  }
  return value;
}

function num(obj: Record<string, unknown>, key: string, what: string): number {
  const value = obj[key];
  if (typeof value !== "number" || !Number.isFinite(value)) {
    throw new FrameError("malformed", `${what} field ${key} is not a number`);
  }
  return value;
}

function decodeHeartbeatSettings(value: unknown): HeartbeatSettings {
  if (typeof value !== "object" || value === null) {
    throw new FrameError("malformed", "Hello field heartbeat is not an object");
  }
  const heartbeat = value as Record<string, unknown>;
  const what = "Hello heartbeat";
  const mode = str(heartbeat, "mode", what);
  if (mode !== "global" && mode !== "local") {
    throw new FrameError("malformed", `Hello heartbeat mode is unknown: ${mode}`);
  }
  const detector = str(heartbeat, "detector", what);
  if (detector !== "phi" && detector !== "grace") {
    throw new FrameError("malformed", `Hello heartbeat detector is unknown: ${detector}`);
  }
  return {
    mode,
    detector,
    intervalMs: num(heartbeat, "intervalMs", what),
    phiThreshold: num(heartbeat, "phiThreshold", what),
    acceptablePauseMs: num(heartbeat, "acceptablePauseMs", what),
    minStdDevMs: num(heartbeat, "minStdDevMs", what),
    graceMs: num(heartbeat, "graceMs", what),
  };
}

/**
 * Decodes and validates a Hello/Welcome payload.
 *
 * @example
 * ```ts
 * import { decodeHello, encodeJson } from "./handshake.ts";
 * import { FrameError } from "../errors.ts";
 * try {
 *   decodeHello(encodeJson({ version: 1 }));
 *   throw new Error("accepted a hello without a name");
 * } catch (e) {
 *   if (!(e instanceof FrameError)) throw e;
 * }
 * ```
 */
export function decodeHello(payload: Uint8Array): Hello {
  const obj = parseJson(payload, "Hello");
  const hello: Hello = {
    version: num(obj, "version", "Hello"),
    name: str(obj, "name", "Hello"),
    nonce: str(obj, "nonce", "Hello"),
    policy: str(obj, "policy", "Hello"),
    cluster: str(obj, "cluster", "Hello"),
    heartbeat: decodeHeartbeatSettings(obj.heartbeat),
  };
  if (hello.name.length === 0 || hello.name.length > MAX_NAME) {
    throw new FrameError("malformed", `Hello field name must be 1 to ${MAX_NAME} characters`);
  }
  if (obj.inSeq !== undefined) {
    const inSeq = num(obj, "inSeq", "Hello");
    if (!Number.isSafeInteger(inSeq) || inSeq < 0) {
      throw new FrameError("malformed", `Hello field inSeq is not a sequence number: ${inSeq}`);
    }
    hello.inSeq = inSeq;
  }
  if (obj.resumeNonce !== undefined && obj.resumeNonce !== null) {
    hello.resumeNonce = str(obj, "resumeNonce", "Hello");
  }
  if (obj.session !== undefined) {
    const session = str(obj, "session", "Hello");
    if (session.length > MAX_SESSION_ID) {
      throw new FrameError("malformed", `Hello field session is too long: ${session.length}`);
    }
    hello.session = session;
  }
  for (const key of ["challenge", "proof", "resumeProof"] as const) {
    if (obj[key] === undefined) continue;
    const value = str(obj, key, "Hello");
    if (!/^[0-9a-f]{1,128}$/.test(value)) {
      throw new FrameError("malformed", `Hello field ${key} is not hex`);
    }
    hello[key] = value;
  }
  if (obj.listening !== undefined) {
    if (!Array.isArray(obj.listening) || obj.listening.some((a) => typeof a !== "string")) {
      throw new FrameError("malformed", "Hello field listening is not a list of strings");
    }
    hello.listening = (obj.listening as string[]).slice(0, MAX_LISTENING);
  }
  if (obj.batch !== undefined) {
    const batch = obj.batch;
    if (typeof batch !== "number" || !Number.isInteger(batch) || batch < 0 || batch > 2 ** 31) {
      throw new FrameError("malformed", "Hello field batch is not a byte count");
    }
    hello.batch = batch;
  }
  for (const key of ["resumed", "integrity", "crc32"] as const) {
    if (obj[key] === undefined) continue;
    if (typeof obj[key] !== "boolean") {
      throw new FrameError("malformed", `Hello field ${key} is not a boolean`);
    }
    hello[key] = obj[key];
  }
  return hello;
}

/**
 * Fields whose value a Refuse frame never carries: anyone who reaches a listener may send a
 * Hello, and the cluster id is not theirs to learn.
 */
export const UNDISCLOSED_FIELDS: ReadonlySet<string> = new Set(["cluster"]);

/** Encodes a Refuse payload from the refusal error this side raised. */
export function encodeRefusal(error: HandshakeRefusedError): Uint8Array {
  if (UNDISCLOSED_FIELDS.has(error.field)) {
    return encodeJson({ field: error.field, message: `${error.field} differs` });
  }
  const refusal: Refusal = { field: error.field, message: error.message };
  if ("local" in error) {
    refusal.local = error.local;
    refusal.peer = error.peer;
  }
  return encodeJson(refusal);
}

/** Decodes a Refuse payload. */
export function decodeRefusal(payload: Uint8Array): Refusal {
  const obj = parseJson(payload, "Refusal");
  const refusal: Refusal = {
    field: str(obj, "field", "Refusal"),
    message: str(obj, "message", "Refusal"),
  };
  if ("local" in obj && "peer" in obj) {
    refusal.local = obj.local;
    refusal.peer = obj.peer;
  }
  return refusal;
}

/**
 * The refusal a peer sent, as this side sees it: the peer's `local` is our `peer` value and
 * the other way round. For an undisclosed field, `ours` (this side's own value) is named and
 * the peer's is not.
 */
export function refusalFromPeer(refusal: Refusal, ours?: LocalTerms): HandshakeRefusedError {
  if (UNDISCLOSED_FIELDS.has(refusal.field) && ours && refusal.field in ours) {
    const local = ours[refusal.field as keyof LocalTerms];
    return new HandshakeRefusedError(
      refusal.field,
      `${refusal.field} differs: local ${local}, peer not disclosed (refused by peer)`,
      { local, peer: undefined },
    );
  }
  if ("local" in refusal) {
    return new HandshakeRefusedError(
      refusal.field,
      `${printable(refusal.field)} differs: local ${printable(refusal.peer)}, peer ${
        printable(refusal.local)
      } (refused by peer)`,
      { local: refusal.peer, peer: refusal.local },
    );
  }
  return new HandshakeRefusedError(refusal.field, `Peer refused: ${printable(refusal.message)}`);
}

/** What this node requires of every peer: checked against each Hello and Welcome. */
export interface LocalTerms {
  /** The cluster id. */
  cluster: string;
  /** The heartbeat settings. */
  heartbeat: HeartbeatSettings;
}

/**
 * Whether a peer's Hello (or Welcome) fits this node: same protocol version, cluster and
 * heartbeat settings. Returns the refusal naming the first field that differs, with both
 * values, or `undefined` to accept. Policies are checked by the session, which knows its own.
 *
 * @example
 * ```ts
 * import { checkHello, type Hello } from "./handshake.ts";
 * const heartbeat = {
 *   mode: "global", detector: "phi", intervalMs: 1000, phiThreshold: 8,
 *   acceptablePauseMs: 2000, minStdDevMs: 100, graceMs: 5000,
 * } as const;
 * const peer: Hello = {
 *   version: 1, name: "b", nonce: "00", policy: "lossyClient", cluster: "other",
 *   heartbeat,
 * };
 * const refusal = checkHello({ cluster: "heartline", heartbeat }, peer);
 * if (refusal?.field !== "cluster") throw new Error("expected a cluster refusal");
 * ```
 */
export function checkHello(local: LocalTerms, peer: Hello): HandshakeRefusedError | undefined {
  const differs = (field: string, mine: unknown, theirs: unknown) =>
    new HandshakeRefusedError(field, `${field} differs: local ${mine}, peer ${theirs}`, {
      local: mine,
      peer: theirs,
    });
  if (peer.version !== PROTOCOL_VERSION) {
    return differs("version", PROTOCOL_VERSION, peer.version);
  }
  if (peer.cluster !== local.cluster) return differs("cluster", local.cluster, peer.cluster);
  for (const field of HEARTBEAT_FIELDS) {
    if (peer.heartbeat[field] !== local.heartbeat[field]) {
      return differs(`heartbeat.${field}`, local.heartbeat[field], peer.heartbeat[field]);
    }
  }
  return undefined;
}
