// Random identifiers: instance nonces and session ids.

/** `bytes` random bytes as lowercase hex (twice as many digits). */
export function randomHex(bytes: number): string {
  const b = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}
