// The raw baselines' own protocol, shared by the in-process and two-process benchmarks: 4-byte
// big-endian length, then the body, over a Deno connection.

/** Writes all of `data`. */
export async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let at = 0;
  while (at < data.length) at += await conn.write(data.subarray(at));
}

/**
 * Reads `count` length-prefixed messages from `conn`, calling `onMessage` with each body (a view
 * valid during the call) and `onRead`, if given, as each read completes; throws on an early end.
 */
export async function readFrames(
  conn: Deno.Conn,
  count: number,
  onMessage: (body: Uint8Array) => void | Promise<void>,
  onRead?: () => void,
): Promise<void> {
  const buf = new Uint8Array(256 * 1024);
  let pending = new Uint8Array(0);
  let got = 0;
  while (got < count) {
    const n = await conn.read(buf);
    onRead?.();
    if (n === null) throw new Error(`raw reader: early end after ${got}`);
    let data = buf.subarray(0, n);
    if (pending.length) {
      const joined = new Uint8Array(pending.length + n);
      joined.set(pending);
      joined.set(data, pending.length);
      data = joined;
    }
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    let at = 0;
    while (data.length - at >= 4 && got < count) {
      const len = view.getUint32(at);
      if (data.length - at - 4 < len) break;
      // Await only a callback that returns a promise: an await per message would slow the
      // baseline by a microtask each.
      const wait = onMessage(data.subarray(at + 4, at + 4 + len));
      if (wait) await wait;
      at += 4 + len;
      got++;
    }
    pending = data.slice(at);
  }
}
