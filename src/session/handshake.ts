/**
 * The handshake of one link, seen from a session in `handshaking`: the accepting side
 * processes a Hello (check, route, accept or refuse), the dialing side a Welcome (check, then
 * first open, resume or remote reset, as the session's sequence decides) or a Refuse.
 * See docs/protocol.md (Handshake) and docs/policies.md (resume and races).
 *
 * @module
 */

import { FrameError, HandshakeRefusedError } from "../errors.ts";
import { encodeFrame, Tag, type TagValue } from "../protocol/frame.ts";
import {
  checkHello,
  decodeHello,
  decodeRefusal,
  encodeJson,
  encodeRefusal,
  type Hello,
  type LocalTerms,
  refusalFromPeer,
} from "../protocol/handshake.ts";
import { type Policy, serverPolicyFor } from "../policy.ts";
import type { LocalNode, SessionPorts } from "./ports.ts";
import { newSessionId, type SessionSequence } from "./sequence.ts";
import type { LinkReader } from "./link_reader.ts";
import {
  checkHelloProof,
  checkWelcomeProof,
  decodeChallenge,
  encodeChallenge,
  type Keys,
  newChallenge,
  proveHello,
  proveWelcome,
} from "../protocol/auth.ts";
import { printable } from "../protocol/text.ts";

/** A Hello or Welcome frame. */
export function handshakeFrame(
  tag: typeof Tag.Hello | typeof Tag.Welcome,
  hello: Hello,
): Uint8Array {
  return encodeFrame(tag, encodeJson(hello));
}

/** This side's Hello (or the body of its Welcome) for a link. */
export function helloFor(
  local: LocalNode,
  policy: Policy,
  side: "client" | "server",
  seq: Pick<SessionSequence, "inSeq" | "peerNonce" | "id">,
): Hello {
  const hello: Hello = { ...local.hello(), policy: policy.name };
  if (!policy.lossy) {
    hello.inSeq = seq.inSeq;
    if (side === "client") hello.resumeNonce = seq.peerNonce;
    if (seq.id !== null) hello.session = seq.id;
  }
  return hello;
}

/** The session a handshake acts on, as the handshake needs it. */
export interface HandshakeTarget<S> {
  /** Which end dialed this link. */
  side(): "client" | "server";
  /** This end's policy. */
  policy(): Policy;
  /** The node's ports (local terms, routing). */
  readonly ports: Pick<SessionPorts<unknown, S>, "local" | "routing">;
  /** The session itself, as routing knows it. */
  readonly self: S;
  /** The session's identity and numbers. */
  readonly seq: SessionSequence;
  /** Whether a handshake completed on this session before (this is not its first link). */
  hasPeer(): boolean;
  /** This side's Hello (or Welcome body) for this link. */
  hello(): Hello;
  /** Queues a handshake frame ahead of everything else, and has it written. */
  queue(frame: Uint8Array): void;
  /** This link's handshake record: the accepting side's challenge, the dialing side's Hello. */
  link(): LinkReader["handshake"];
  /** Both ends of this link protect integrity: its frames skip checksums from now on. */
  skipChecksums(): void;
  /** What this end accepts, said in its Hello or Welcome (CRC-32 frames, Messages frames). */
  accepts(): Pick<Hello, "crc32" | "batch">;
  /** The peer's Hello or Welcome said what it accepts: write frames it can read. */
  peerAccepts(hello: Hello): void;
  /** Records the peer's Hello or Welcome of this link. */
  peerIs(hello: Hello): void;
  /** Refuse the peer: fail with `refusal` once the Refuse frame queued next is written. */
  refuse(refusal: HandshakeRefusedError): void;
  /** The link is open; `first` when the session itself just began (its `opened()` resolves). */
  open(first: boolean): void;
  /** The session resumed on this link. */
  resumed(): void;
  /** The session now talks to a new incarnation of its peer. */
  reincarnated(): void;
  /** The peer's incarnation or session is gone: hand back the unacknowledged, start over. */
  remoteReset(reason: string): void;
  /** Server: another session takes this link (a resume, or a restarted peer). */
  handOver(target: S, hello: Hello): void;
}

/** Processes one frame of a link in `handshaking`. Throws the typed error that ends it. */
export function processHandshakeFrame<S>(
  h: HandshakeTarget<S>,
  tag: TagValue,
  payload: Uint8Array,
): void {
  if (h.side() === "client" && tag === Tag.Refuse) {
    return processRefuse(payload, h.ports.local.terms());
  }
  if (h.side() === "client" && tag === Tag.Challenge && h.link().hello === null) {
    return processChallenge(h, decodeChallenge(payload));
  }
  const expected = h.side() === "server" ? Tag.Hello : Tag.Welcome;
  if (tag !== expected) {
    throw new FrameError("unexpected", `Unexpected frame tag ${tag} during handshake`);
  }
  const hello = decodeHello(payload);
  if (h.side() === "server") processHello(h, hello);
  else processWelcome(h, hello);
}

/** The accepting side's Challenge frame for a link, recorded with the link. */
export function challengeFrame(link: LinkReader["handshake"]): Uint8Array {
  link.challenge = newChallenge();
  return encodeFrame(Tag.Challenge, encodeChallenge(link.challenge));
}

/** Client: the accepting side's challenge arrived; the Hello answers it (with a proof). */
function processChallenge<S>(h: HandshakeTarget<S>, challenge: string): void {
  const hello: Hello = { ...h.hello(), challenge: newChallenge(), ...h.accepts() };
  if (maySkipChecksums(h)) hello.integrity = true;
  if (hello.session !== undefined) {
    hello.resumeProof = h.seq.resumeProof("hello", challenge, hello.challenge);
  }
  const keys = h.ports.local.keys();
  if (keys) hello.proof = proveHello(keys.own, challenge, hello);
  h.link().challenge = challenge;
  h.link().hello = hello;
  h.queue(handshakeFrame(Tag.Hello, hello));
}

/** Whether this end of the link protects integrity and this node lets it skip checksums. */
function maySkipChecksums<S>(h: HandshakeTarget<S>): boolean {
  return h.ports.local.skipsChecksums && h.link().integrity;
}

/**
 * Whether a peer's proof fits this node: both authenticate (and the proof checks against the
 * key of the name it claims) or neither does. Returns the refusal, or undefined.
 */
function authRefusal(
  keys: Keys | null,
  peer: Hello,
  valid: (key: string) => boolean,
): HandshakeRefusedError | undefined {
  if (!keys) {
    if (peer.proof === undefined) return undefined;
    return new HandshakeRefusedError("auth", "authentication differs: local none, peer a key");
  }
  const key = keys.keyFor(peer.name);
  if (key !== undefined && peer.proof !== undefined && valid(key)) return undefined;
  return new HandshakeRefusedError("auth", `authentication failed for ${printable(peer.name)}`);
}

/** Server: a Hello arrived. */
function processHello<S>(h: HandshakeTarget<S>, hello: Hello): void {
  const challenge = h.link().challenge ?? "";
  // Authentication first: a peer that cannot prove its name learns none of our settings.
  let refusal =
    authRefusal(h.ports.local.keys(), hello, (k) => checkHelloProof(k, challenge, hello)) ??
      checkHello(h.ports.local.terms(), hello);
  h.link().hello = hello;
  if (!refusal && !serverPolicyFor(hello.policy)) {
    refusal = policyMismatch(h.policy().name, hello.policy);
  }
  if (!refusal) {
    const target = h.ports.routing.route(hello, h.self, challenge);
    if (target instanceof HandshakeRefusedError) refusal = target;
    else if (target instanceof Error) throw target;
    else if (target !== h.self) return h.handOver(target, hello);
  }
  if (refusal) {
    h.refuse(refusal);
    return h.queue(encodeFrame(Tag.Refuse, encodeRefusal(refusal)));
  }
  acceptNew(h, hello);
}

/** Server: a new session begins; a lossless one gets its id. */
function acceptNew<S>(h: HandshakeTarget<S>, hello: Hello): void {
  h.peerIs(hello);
  h.seq.peerNonce = hello.nonce;
  const lossless = !h.policy().lossy;
  if (lossless) beginSession(h, hello); // the Welcome carries its id, and inSeq (0)
  queueWelcome(h, lossless ? { ...h.hello(), resumed: false } : h.hello());
  h.open(true);
}

/**
 * Server: a lossless session begins (or begins anew) on this link: a new id, and the resume
 * secret both ends derive from the link's challenges (and the dialing side's key).
 */
function beginSession<S>(h: HandshakeTarget<S>, hello: Hello): void {
  const local = h.ports.local, id = newSessionId();
  h.seq.id = id;
  h.seq.began(local.keys()?.keyFor(hello.name) ?? "", {
    serverChallenge: h.link().challenge ?? "",
    hello,
    server: { name: local.name, nonce: local.nonce },
    session: id,
  });
}

/** Queues a Welcome, with this node's proof when it authenticates. */
function queueWelcome<S>(h: HandshakeTarget<S>, welcome: Hello): void {
  const keys = h.ports.local.keys(), { challenge, hello } = h.link();
  if (welcome.resumed === true) {
    welcome.resumeProof = h.seq.resumeProof("welcome", challenge ?? "", hello?.challenge);
  }
  const unchecked = hello?.integrity === true && maySkipChecksums(h);
  if (unchecked) welcome.integrity = true;
  Object.assign(welcome, h.accepts());
  if (hello) h.peerAccepts(hello);
  if (keys && challenge && hello) welcome.proof = proveWelcome(keys.own, challenge, hello, welcome);
  h.queue(handshakeFrame(Tag.Welcome, welcome));
  if (unchecked) h.skipChecksums(); // the peer sends none before it has read the Welcome
}

/** Client: a Welcome arrived. */
function processWelcome<S>(h: HandshakeTarget<S>, hello: Hello): void {
  const refusal = checkHello(h.ports.local.terms(), hello);
  if (refusal) throw refusal;
  if (serverPolicyFor(h.policy().name)?.name !== hello.policy) {
    throw policyMismatch(h.policy().name, hello.policy);
  }
  const { challenge, hello: ours } = h.link();
  const unproven = authRefusal(
    h.ports.local.keys(),
    hello,
    (key) => challenge !== null && ours !== null && checkWelcomeProof(key, challenge, ours, hello),
  );
  if (unproven) throw unproven;
  if (ours?.integrity === true && hello.integrity === true) h.skipChecksums();
  h.peerAccepts(hello);
  const first = !h.hasPeer();
  const decision = h.seq.decideWelcome(hello, challenge ?? "", ours?.challenge);
  if (decision.kind === "unproven") {
    throw new HandshakeRefusedError(
      "auth",
      `${printable(hello.name)} claims to resume the session but does not prove its secret`,
    );
  }
  if (decision.kind === "resume") {
    const lie = h.seq.checkClaim(hello, "Welcome");
    if (lie) throw lie;
  }
  h.peerIs(hello);
  if (decision.kind === "resume") h.seq.resumeFrom(hello.inSeq ?? 0);
  if (decision.kind === "reset") h.remoteReset(decision.reason);
  h.seq.peerNonce = hello.nonce;
  h.seq.id = hello.session ?? null;
  if (decision.kind !== "resume" && hello.session !== undefined && ours !== null) {
    h.seq.began(h.ports.local.keys()?.own ?? "", {
      serverChallenge: challenge ?? "",
      hello: ours,
      server: { name: hello.name, nonce: hello.nonce },
      session: hello.session,
    });
  }
  h.open(first);
  if (decision.kind === "resume") h.resumed();
  else if (decision.kind === "reset" && decision.reason === "peer restarted") h.reincarnated();
}

/**
 * Server: a Hello that another session's link carried now joins this session (which has
 * taken the link): it resumes, or, when the peer restarted or lost the session, the session
 * starts over with a new id and the unacknowledged are handed back.
 */
export function processAdoptedHello<S>(h: HandshakeTarget<S>, hello: Hello): void {
  const decision = h.seq.decideAdopt(hello, h.ports.local.nonce, h.link().challenge ?? "");
  if (decision.kind === "resume") {
    h.seq.resumeFrom(hello.inSeq ?? 0);
  } else {
    h.remoteReset(decision.reason);
    beginSession(h, hello); // a new session starts on this link
  }
  h.peerIs(hello);
  h.seq.peerNonce = hello.nonce;
  const resumed = decision.kind === "resume";
  queueWelcome(h, { ...h.hello(), resumed });
  h.open(false);
  if (resumed) h.resumed();
  else if (decision.reason === "peer restarted") h.reincarnated();
}

/** Client: the peer refused us. */
function processRefuse(payload: Uint8Array, ours: LocalTerms): never {
  const refusal = decodeRefusal(payload);
  if (refusal.field === "race") {
    // Lost a dial race: the peer's own dial carries the session (see docs/policies.md).
    throw new HandshakeRefusedError("race", `Dial race lost to ${printable(refusal.peer)}`, {
      peer: refusal.peer,
    });
  }
  throw refusalFromPeer(refusal, ours);
}

function policyMismatch(local: string, peer: string): HandshakeRefusedError {
  return new HandshakeRefusedError("policy", `policy does not fit: local ${local}, peer ${peer}`, {
    local,
    peer,
  });
}
