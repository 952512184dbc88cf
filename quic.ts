/**
 * The QUIC transport (`quic://host:port`), on Deno's QUIC endpoint. A separate entry point
 * because it needs `--unstable-net` and TLS certificates; `mod.ts` stays free of both.
 *
 * @example
 * ```ts ignore
 * import { Messenger } from "./mod.ts";
 * import { QuicTransport } from "./quic.ts";
 * const m = new Messenger({ transports: [new QuicTransport({ caCerts: [caPem] })] });
 * ```
 *
 * @module
 */

export { QUIC_ALPN, QuicTransport, type QuicTransportOptions } from "./transports/quic.ts";
