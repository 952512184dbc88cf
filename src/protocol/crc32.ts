/**
 * CRC-32 (IEEE 802.3, zlib's polynomial), the checksum of Message frames flagged
 * `FLAG_CRC32` between peers that both accept it (docs/protocol.md). Deno and Node compute it
 * natively through `node:zlib`'s `crc32`, with the CPU's carry-less multiply: 20-80 GB/s here
 * against 1.5-1.8 GB/s for CRC-32C in TypeScript, which caps a 64 KiB stream. Where the
 * runtime has no `node:zlib` (a browser), the same checksum comes from tables.
 *
 * @module
 */

import { slicingCrc } from "./crc32c.ts";

/** CRC-32 from tables (browsers, and short inputs, where a native call costs more). */
const tableCrc32 = slicingCrc(0xedb88320);

type NativeCrc32 = (data: Uint8Array, value?: number) => number;

/** `node:zlib`'s crc32 if this runtime has one, found without a static import (browsers). */
function findNative(): NativeCrc32 | null {
  const process = (globalThis as {
    process?: { getBuiltinModule?: (id: string) => { crc32?: NativeCrc32 } | undefined };
  }).process;
  try {
    const crc32 = process?.getBuiltinModule?.("node:zlib")?.crc32;
    // Checked once against the standard check value before it is trusted.
    if (typeof crc32 === "function" && crc32(CHECK_INPUT) >>> 0 === 0xcbf43926) return crc32;
  } catch { /* no node:zlib here */ }
  return null;
}

const CHECK_INPUT = new TextEncoder().encode("123456789");
const native = findNative();

/** Inputs at least this long go to the native crc32: below, a view and a call cost more. */
const NATIVE_FROM_BYTES = 64;

/** Whether CRC-32 is computed natively in this runtime. */
export const nativeCrc32: boolean = native !== null;

/**
 * Continues a CRC-32 over `bytes[start, end)`. Start with `0` and pass the result of one call
 * as `crc` to the next to checksum several ranges as one.
 *
 * @example
 * ```ts
 * import { crc32 } from "./crc32.ts";
 * const crc = crc32(0, new TextEncoder().encode("123456789"));
 * if (crc !== 0xcbf43926) throw new Error("wrong crc");
 * ```
 */
export function crc32(crc: number, bytes: Uint8Array, start = 0, end = bytes.length): number {
  if (native !== null && end - start >= NATIVE_FROM_BYTES) {
    return native(start === 0 && end === bytes.length ? bytes : bytes.subarray(start, end), crc) >>>
      0;
  }
  return tableCrc32(crc, bytes, start, end);
}
