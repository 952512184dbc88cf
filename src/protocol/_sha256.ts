// SHA-256, HMAC-SHA-256 (RFC 2104) and HKDF-SHA-256 (RFC 5869) for the handshake's proofs,
// from @noble/hashes (audited, maintained, no dependencies). They must be synchronous (a proof
// is checked on the read path before the frames pipelined behind a Hello are looked at), which
// rules out Web Crypto, and they must run in a browser, which rules out `node:crypto`; noble
// is plain JavaScript that bundles into the browser build. tests/protocol_test.ts checks this
// wrapper against `node:crypto` and the RFC vectors.

import { sha256 as nobleSha256 } from "npm:@noble/hashes@2.4.0/sha2.js";
import { hmac } from "npm:@noble/hashes@2.4.0/hmac.js";
import { hkdf } from "npm:@noble/hashes@2.4.0/hkdf.js";

const encoder = new TextEncoder();

function bytesOf(input: string | Uint8Array): Uint8Array {
  return typeof input === "string" ? encoder.encode(input) : input;
}

/** SHA-256 of the concatenated `parts` (strings as UTF-8). */
export function sha256(...parts: (string | Uint8Array)[]): Uint8Array {
  const h = nobleSha256.create();
  for (const part of parts) h.update(bytesOf(part));
  return h.digest();
}

/** HMAC-SHA-256 of `data` under `key` (strings as UTF-8). */
export function hmacSha256(key: string | Uint8Array, data: string | Uint8Array): Uint8Array {
  return hmac(nobleSha256, bytesOf(key), bytesOf(data));
}

/** HKDF-SHA-256 (extract, then expand to `length` bytes), as `node:crypto`'s `hkdfSync`. */
export function hkdfSha256(
  ikm: string | Uint8Array,
  salt: string | Uint8Array,
  info: string | Uint8Array,
  length: number,
): Uint8Array {
  if (length > 255 * 32) throw new RangeError(`HKDF length too large: ${length}`);
  return hkdf(nobleSha256, bytesOf(ikm), bytesOf(salt), bytesOf(info), length);
}

/** Lowercase hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Whether `a` and `b` hold the same bytes, in time that depends only on their lengths. */
export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}
