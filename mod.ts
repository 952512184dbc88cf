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

export {
  type ConnectOptions,
  type MessagesOptions,
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
  type PeerSettings,
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
export {
  type EveryOptions,
  type Timer,
  TimerWheel,
  type TimerWheelOptions,
} from "./src/timer/timer_wheel.ts";
export { consoleLogger, type Logger, type LogLevel } from "./src/log.ts";
export type { Link, Listener, Transport } from "./transports/types.ts";
export { TcpTransport, type TcpTransportOptions } from "./transports/tcp.ts";
export { TlsTransport, type TlsTransportOptions } from "./transports/tls.ts";
export {
  type AttachedListener,
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
export {
  type DetectorSettings,
  GraceDetector,
  PhiAccrualDetector,
  silenceToDownMs,
} from "./src/health/detector.ts";
