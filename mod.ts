/**
 * heartline: a messaging layer for the nodes of a cluster. A `Messenger` per node, a
 * `Connection` per peer, over TCP, WebSocket or in memory (QUIC in `./quic.ts`); every
 * liveness signal rides the data connection as coalesced out-of-band parts fired from one
 * central timer wheel. The admin endpoint is in `./admin.ts`, test helpers (the memory
 * transport with fault injection, a manual clock) in `./testing.ts`, so importing this module
 * pulls in no HTTP framework and needs no unstable flag.
 *
 * @example
 * ```ts
 * import { Messenger } from "./mod.ts";
 * await using a = new Messenger({ name: "a" });
 * const addr = await a.listen("tcp://127.0.0.1:0");
 * await using b = new Messenger({ name: "b" });
 * const conn = await b.connect(addr);
 * await conn.send(7, new Uint8Array([1, 2, 3]), { priority: "high" });
 * for await (const m of a.messages()) {
 *   console.log(m.type, m.payload, m.connection.peerName);
 *   break;
 * }
 * ```
 *
 * @module
 */

export * from "./src/api.ts";
export { TcpTransport, type TcpTransportOptions } from "./transports/tcp.ts";
export { TlsTransport, type TlsTransportOptions } from "./transports/tls.ts";
