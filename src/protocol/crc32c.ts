/**
 * CRC-32C (Castagnoli), the checksum of every frame. Slice-by-8 tables, pure TypeScript: a
 * frame is checksummed on the hot path, so this avoids a call into native code per frame and
 * a dependency for about forty lines.
 *
 * @module
 */

const POLY = 0x82f63b78;
const [T0, T1, T2, T3, T4, T5, T6, T7] = buildTables();

function buildTables(): Uint32Array[] {
  const tables = Array.from({ length: 8 }, () => new Uint32Array(256));
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    tables[0][n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    for (let t = 1; t < 8; t++) {
      const prev = tables[t - 1][n];
      tables[t][n] = ((prev >>> 8) ^ tables[0][prev & 0xff]) >>> 0;
    }
  }
  return tables;
}

/**
 * Continues a CRC-32C over `bytes[start, end)`. Start with `0` and pass the result of one call
 * as `crc` to the next to checksum several ranges as one.
 *
 * @example
 * ```ts
 * import { crc32c } from "./crc32c.ts";
 * const crc = crc32c(0, new TextEncoder().encode("123456789"));
 * if (crc !== 0xe3069283) throw new Error("wrong crc");
 * ```
 */
export function crc32c(crc: number, bytes: Uint8Array, start = 0, end = bytes.length): number {
  let c = ~crc >>> 0;
  let i = start;
  const end8 = end - ((end - start) & 7);
  while (i < end8) {
    c ^= bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
    c = T7[c & 0xff] ^ T6[(c >>> 8) & 0xff] ^ T5[(c >>> 16) & 0xff] ^ T4[c >>> 24] ^
      T3[bytes[i + 4]] ^ T2[bytes[i + 5]] ^ T1[bytes[i + 6]] ^ T0[bytes[i + 7]];
    i += 8;
  }
  while (i < end) c = T0[(c ^ bytes[i++]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}
