/**
 * Authentication in the handshake: a node proves its name with a key (HMAC-SHA-256 over a
 * transcript that binds both fresh challenges, both names, both instance nonces, the policy and
 * the settings). The accepting side sends a Challenge frame right after its banner; the dialing
 * side answers with a Hello that carries its own challenge and its proof; the Welcome carries
 * the accepting side's proof over both challenges. See docs/protocol.md (Authentication).
 *
 * A lossless session's resume needs a secret that only its two ends hold: both derive it with
 * HKDF-SHA-256 when the session begins (from the dialing side's key, when the nodes
 * authenticate, and the link's two fresh challenges, which travel on that link only), and a
 * resuming Hello and its Welcome each carry an HMAC of the new link's challenges under it.
 * The instance nonces, which are public, never suffice.
 *
 * HMAC and HKDF come from `_sha256.ts`, plain TypeScript that runs in Deno and in a browser
 * alike (synchronous, so that a proof is checked on the read path before the frames pipelined
 * behind the Hello are looked at); proofs are compared in constant time.
 *
 * @module
 */

import { FrameError } from "../errors.ts";
import type { Hello } from "./handshake.ts";
import { hkdfSha256, hmacSha256, timingSafeEqual, toHex } from "./_sha256.ts";

/** Bytes of a challenge (sent as hex). */
export const CHALLENGE_BYTES = 16;

/** Keys a node authenticates with: its own, and those it checks peers against. */
export interface Keys {
  /** The key this node proves its own name with. */
  readonly own: string;
  /** The key node `name` must prove its name with, or undefined if it may not join. */
  keyFor(name: string): string | undefined;
}

/** A fresh random challenge: 32 hex digits. */
export function newChallenge(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(CHALLENGE_BYTES));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The Challenge frame's payload. */
export function encodeChallenge(challenge: string): Uint8Array {
  return new TextEncoder().encode(challenge);
}

/** Decodes a Challenge payload: 32 hex digits. */
export function decodeChallenge(payload: Uint8Array): string {
  const text = new TextDecoder().decode(payload);
  if (!/^[0-9a-f]{32}$/.test(text)) {
    throw new FrameError("malformed", "Challenge is not 32 hex digits");
  }
  return text;
}

/** What the dialing side signs: both challenges and everything its Hello claims. */
function helloTranscript(serverChallenge: string, hello: Hello): string {
  return JSON.stringify([
    "heartline/1 hello",
    serverChallenge,
    hello.challenge,
    hello.name,
    hello.nonce,
    hello.policy,
    hello.cluster,
    hello.heartbeat,
    hello.session ?? null,
    hello.inSeq ?? null,
  ]);
}

/** What the accepting side signs: both challenges, both names and nonces, and its answer. */
function welcomeTranscript(serverChallenge: string, hello: Hello, welcome: Hello): string {
  return JSON.stringify([
    "heartline/1 welcome",
    serverChallenge,
    hello.challenge,
    hello.name,
    hello.nonce,
    welcome.name,
    welcome.nonce,
    welcome.policy,
    welcome.session ?? null,
    welcome.resumed ?? null,
    welcome.inSeq ?? null,
  ]);
}

function mac(key: string, text: string): string {
  return toHex(hmacSha256(key, text));
}

/** Whether `proof` is `expected`, in constant time. */
function same(proof: unknown, expected: string): boolean {
  if (typeof proof !== "string" || proof.length !== expected.length) return false;
  return timingSafeEqual(new TextEncoder().encode(proof), new TextEncoder().encode(expected));
}

/** The dialing side's proof for its Hello (which carries its own challenge). */
export function proveHello(key: string, serverChallenge: string, hello: Hello): string {
  return mac(key, helloTranscript(serverChallenge, hello));
}

/** Whether a Hello proves its name with `key`. */
export function checkHelloProof(key: string, serverChallenge: string, hello: Hello): boolean {
  return same(hello.proof, proveHello(key, serverChallenge, hello));
}

/** The accepting side's proof for its Welcome. */
export function proveWelcome(
  key: string,
  serverChallenge: string,
  hello: Hello,
  welcome: Hello,
): string {
  return mac(key, welcomeTranscript(serverChallenge, hello, welcome));
}

/** Whether a Welcome proves the accepting side's name with `key`. */
export function checkWelcomeProof(
  key: string,
  serverChallenge: string,
  hello: Hello,
  welcome: Hello,
): boolean {
  return same(welcome.proof, proveWelcome(key, serverChallenge, hello, welcome));
}

/** Bytes of a session's resume secret. */
export const RESUME_SECRET_BYTES = 32;

/** Where a session begins: the link's challenges, the dialing side's Hello and the session. */
export interface SessionOrigin {
  /** The accepting side's challenge on the link the session began on. */
  readonly serverChallenge: string;
  /** The dialing side's Hello on that link (its name, nonce and challenge). */
  readonly hello: Hello;
  /** The accepting side's name and nonce. */
  readonly server: { readonly name: string; readonly nonce: string };
  /** The session's id. */
  readonly session: string;
}

/**
 * The resume secret of a session, derived when it begins (HKDF-SHA-256). `dialerKey` is the
 * dialing side's key when the nodes authenticate ("" when they do not: then the secret rests
 * on the challenges, which only the link's two ends saw).
 */
export function deriveResumeSecret(dialerKey: string, origin: SessionOrigin): Uint8Array {
  const salt = `${origin.serverChallenge}:${origin.hello.challenge ?? ""}`;
  const info = JSON.stringify([
    "heartline/1 resume",
    origin.hello.name,
    origin.hello.nonce,
    origin.server.name,
    origin.server.nonce,
    origin.session,
  ]);
  return hkdfSha256(dialerKey, salt, info, RESUME_SECRET_BYTES);
}

/** A resume proof: HMAC of a new link's two challenges and the session under its secret. */
export function proveResume(
  secret: Uint8Array,
  side: "hello" | "welcome",
  serverChallenge: string,
  clientChallenge: string | undefined,
  session: string,
): string {
  const text = JSON.stringify([
    `heartline/1 resume ${side}`,
    serverChallenge,
    clientChallenge ?? "",
    session,
  ]);
  return toHex(hmacSha256(secret, text));
}

/** Whether `proof` proves the resume secret for this link. */
export function checkResumeProof(
  proof: unknown,
  secret: Uint8Array,
  side: "hello" | "welcome",
  serverChallenge: string,
  clientChallenge: string | undefined,
  session: string,
): boolean {
  return same(proof, proveResume(secret, side, serverChallenge, clientChallenge, session));
}
