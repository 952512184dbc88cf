/**
 * The handshake of one link, seen from a session in `handshaking`: the accepting side
 * processes a Hello (check, route, accept or refuse), the dialing side a Welcome or a Refuse.
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
  refusalFromPeer,
} from "../protocol/handshake.ts";
import { type Policy, serverPolicyFor } from "../policy.ts";
import type { LocalNode, SessionPorts } from "./ports.ts";

/** A Hello or Welcome frame. */
export function handshakeFrame(
  tag: typeof Tag.Hello | typeof Tag.Welcome,
  hello: Hello,
): Uint8Array {
  return encodeFrame(tag, encodeJson(hello));
}

/** What this side's Hello says about its session, for resume. */
export interface ResumeFacts {
  /** Highest sequence received. */
  inSeq: number;
  /** The peer incarnation the session belongs to, or null before the first handshake. */
  resumeNonce: string | null;
  /** The session's id (chosen by the side that accepted its first link), or null. */
  session: string | null;
}

/** This side's Hello (or the body of its Welcome) for a link. */
export function helloFor(
  local: LocalNode,
  policy: Policy,
  side: "client" | "server",
  facts: ResumeFacts,
): Hello {
  const hello: Hello = { ...local.hello(), policy: policy.name };
  if (!policy.lossy) {
    hello.inSeq = facts.inSeq;
    if (side === "client") hello.resumeNonce = facts.resumeNonce;
    if (facts.session !== null) hello.session = facts.session;
  }
  return hello;
}

/** The session a handshake acts on, as the handshake needs it. */
export interface HandshakeTarget<S> {
  /** Which end dialed this link. */
  readonly side: "client" | "server";
  /** This end's policy. */
  readonly policy: Policy;
  /** The node's ports (local terms, routing). */
  readonly ports: Pick<SessionPorts<unknown, S>, "local" | "routing">;
  /** The session itself, as routing knows it. */
  readonly self: S;
  /** Refuse the peer: queue this Refuse frame, then fail with `refusal` once it is written. */
  refuse(refusal: HandshakeRefusedError, frame: Uint8Array): void;
  /** Server: a new session was accepted. */
  accept(hello: Hello): void;
  /** Client: the Welcome arrived. */
  welcomed(hello: Hello): void;
  /** Server: another session takes this link (a resume, or a restarted peer). */
  handOver(target: S, hello: Hello): void;
}

/** Processes one frame of a link in `handshaking`. Throws the typed error that ends it. */
export function processHandshakeFrame<S>(
  h: HandshakeTarget<S>,
  tag: TagValue,
  payload: Uint8Array,
): void {
  if (h.side === "client" && tag === Tag.Refuse) return processRefuse(payload);
  const expected = h.side === "server" ? Tag.Hello : Tag.Welcome;
  if (tag !== expected) {
    throw new FrameError("unexpected", `Unexpected frame tag ${tag} during handshake`);
  }
  const hello = decodeHello(payload);
  if (h.side === "server") processHello(h, hello);
  else processWelcome(h, hello);
}

/** Server: a Hello arrived. */
function processHello<S>(h: HandshakeTarget<S>, hello: Hello): void {
  let refusal = checkHello(h.ports.local.terms(), hello);
  if (!refusal && !serverPolicyFor(hello.policy)) {
    refusal = policyMismatch(h.policy.name, hello.policy);
  }
  if (!refusal) {
    const target = h.ports.routing.route(hello, h.self);
    if (target instanceof HandshakeRefusedError) refusal = target;
    else if (target instanceof Error) throw target;
    else if (target !== h.self) return h.handOver(target, hello);
  }
  if (refusal) return h.refuse(refusal, encodeFrame(Tag.Refuse, encodeRefusal(refusal)));
  h.accept(hello);
}

/** Client: a Welcome arrived. */
function processWelcome<S>(h: HandshakeTarget<S>, hello: Hello): void {
  const refusal = checkHello(h.ports.local.terms(), hello);
  if (refusal) throw refusal;
  if (serverPolicyFor(h.policy.name)?.name !== hello.policy) {
    throw policyMismatch(h.policy.name, hello.policy);
  }
  h.welcomed(hello);
}

/** Client: the peer refused us. */
function processRefuse(payload: Uint8Array): never {
  const refusal = decodeRefusal(payload);
  if (refusal.field === "race") {
    // Lost a dial race: the peer's own dial carries the session (see docs/policies.md).
    throw new HandshakeRefusedError("race", `Dial race lost to ${refusal.peer}`, {
      peer: refusal.peer,
    });
  }
  throw refusalFromPeer(refusal);
}

function policyMismatch(local: string, peer: string): HandshakeRefusedError {
  return new HandshakeRefusedError("policy", `policy does not fit: local ${local}, peer ${peer}`, {
    local,
    peer,
  });
}
