/**
 * heartline for a web page: the messenger, its connections, policies, errors, out-of-band
 * producers and node events, with the WebSocket transport, and nothing that needs Deno (no TCP,
 * TLS or QUIC transport, no admin endpoint, no test helpers). `deno task bundle` builds it into
 * one ES module, `dist/heartline.browser.js`, that a page loads with
 * `<script type="module">`. A page dials a node's WebSocket endpoint (`serveNode()` in
 * `./admin.ts`, whose transport must list the page's origin in `allowedOrigins`) as a client;
 * it cannot listen. See docs/browser.md.
 *
 * @example
 * ```ts ignore
 * import { Messenger, WebSocketTransport } from "./dist/heartline.browser.js";
 * const messenger = new Messenger({ name: "page-1", transports: [new WebSocketTransport()] });
 * const conn = await messenger.connect("ws://127.0.0.1:8000/heartline", {
 *   policy: "lossyClient",
 * });
 * await conn.send(1, new TextEncoder().encode("hello"));
 * conn.registerOob("WatchPing", () => new Uint8Array([1]), { intervalMs: 1000 });
 * for await (const ev of messenger.watch()) console.log(ev.peer, ev.state);
 * ```
 *
 * @module
 */

export {
  type ConnectOptions,
  Messenger,
  type MessengerEvent,
  type MessengerHealth,
  type MessengerOptions,
  type TimerStats,
} from "./src/messenger.ts";
export {
  type CloseOptions,
  Connection,
  CONNECTION_TRANSITIONS,
  type ConnectionState,
  type ConnectionStats,
  type Message,
  type SendOptions,
  type SessionEvent,
  type UnsentMessage,
} from "./src/connection.ts";
export { type FaultAction, Policies, type Policy, type PolicyName } from "./src/policy.ts";
export {
  ConnectionClosedError,
  FrameError,
  type FrameErrorReason,
  HandshakeRefusedError,
  HeartlineError,
  QueueFullError,
  TimeoutError,
  TransportError,
  UnexpectedPeerError,
} from "./src/errors.ts";
export { PROTOCOL_VERSION } from "./src/protocol/frame.ts";
export { PRIORITIES, type Priority } from "./src/protocol/message.ts";
export type { HeartbeatSettings } from "./src/health/settings.ts";
export { type Clock, systemClock } from "./src/timer/clock.ts";
export type { Timer } from "./src/timer/timer_wheel.ts";
export { consoleLogger, type Logger, type LogLevel } from "./src/log.ts";
export type { Link, Transport } from "./transports/types.ts";
export {
  WebSocketTransport,
  WS_HIGH_WATER,
  WS_MAX_UNREAD,
  WS_PATH,
} from "./transports/websocket.ts";
export type { OobDelivery, OobHandler } from "./src/oob/service.ts";
export type { OobOptions, OobProducer, OobRegistration, OobStats } from "./src/oob/types.ts";
export { OOB_UNCHANGED } from "./src/oob/types.ts";
export type { Counters } from "./src/counters.ts";
export type { NodeEvent, PeerInfo, PeerState, WatchOptions } from "./src/health/health.ts";
export { type DetectorSettings, silenceToDownMs } from "./src/health/detector.ts";
