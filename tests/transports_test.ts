// The conformance suite on every transport.

import "./_guard.ts";
import { TcpTransport, TlsTransport, WebSocketTransport } from "../mod.ts";
import { MemoryTransport } from "../testing.ts";
import { QuicTransport } from "../transports/quic.ts";
import { testCerts } from "../examples/_dev_certs.ts";
import { runTransportSuite } from "./transport_suite.ts";

runTransportSuite("tcp", () =>
  Promise.resolve({
    transport: new TcpTransport(),
    listenAddr: "tcp://127.0.0.1:0",
    readBackpressure: true,
  }));

runTransportSuite("mem", () =>
  Promise.resolve({
    transport: new MemoryTransport(),
    listenAddr: "mem://suite",
    readBackpressure: true,
  }));

runTransportSuite("quic", async () => {
  const certs = await testCerts();
  return {
    transport: new QuicTransport({ cert: certs.cert, key: certs.key, caCerts: [certs.caCert] }),
    listenAddr: "quic://127.0.0.1:0",
    readBackpressure: true,
  };
});

runTransportSuite("tls", async () => {
  const certs = await testCerts();
  return {
    transport: new TlsTransport({ cert: certs.cert, key: certs.key, caCerts: [certs.caCert] }),
    listenAddr: "tls://127.0.0.1:0",
    readBackpressure: true,
  };
});

runTransportSuite("ws", () =>
  Promise.resolve({
    transport: new WebSocketTransport({ maxUnreadBytes: 4 * 1024 * 1024 }),
    listenAddr: "ws://127.0.0.1:0/heartline",
    readBackpressure: false,
  }));
