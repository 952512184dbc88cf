/**
 * CRC-32C (Castagnoli), the checksum of every frame. Slice-by-16 tables, pure TypeScript: a
 * frame is checksummed on the hot path, so this avoids a call into native code per frame and
 * a dependency for about fifty lines. About 1.5 GB/s for 1 KiB and larger inputs here.
 *
 * @module
 */

/**
 * Makes a slice-by-16 CRC-32 over the reflected polynomial `poly`: `(crc, bytes, start, end)`
 * continues a checksum over `bytes[start, end)` (start with 0, pass one result to the next
 * call to checksum several ranges as one).
 */
export function slicingCrc(
  poly: number,
): (crc: number, bytes: Uint8Array, start?: number, end?: number) => number {
  const [T0, T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11, T12, T13, T14, T15] = buildTables(
    poly,
  );
  return (crc: number, bytes: Uint8Array, start = 0, end = bytes.length): number => {
    const b = bytes;
    let c = ~crc >>> 0;
    let i = start;
    const end16 = end - ((end - start) & 15);
    while (i < end16) {
      c ^= b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24);
      c = T15[c & 0xff] ^ T14[(c >>> 8) & 0xff] ^ T13[(c >>> 16) & 0xff] ^ T12[c >>> 24] ^
        T11[b[i + 4]] ^ T10[b[i + 5]] ^ T9[b[i + 6]] ^ T8[b[i + 7]] ^
        T7[b[i + 8]] ^ T6[b[i + 9]] ^ T5[b[i + 10]] ^ T4[b[i + 11]] ^
        T3[b[i + 12]] ^ T2[b[i + 13]] ^ T1[b[i + 14]] ^ T0[b[i + 15]];
      i += 16;
    }
    if (end - i >= 8) {
      c ^= b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24);
      c = T7[c & 0xff] ^ T6[(c >>> 8) & 0xff] ^ T5[(c >>> 16) & 0xff] ^ T4[c >>> 24] ^
        T3[b[i + 4]] ^ T2[b[i + 5]] ^ T1[b[i + 6]] ^ T0[b[i + 7]];
      i += 8;
    }
    while (i < end) c = T0[(c ^ b[i++]) & 0xff] ^ (c >>> 8);
    return ~c >>> 0;
  };
}

function buildTables(poly: number): Uint32Array[] {
  const tables = Array.from({ length: 16 }, () => new Uint32Array(256));
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ poly : c >>> 1;
    tables[0][n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    for (let t = 1; t < 16; t++) {
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
export const crc32c: (crc: number, bytes: Uint8Array, start?: number, end?: number) => number =
  slicingCrc(0x82f63b78);
