/**
 * heartline: a messaging layer for the nodes of a cluster. A `Messenger` per node, a
 * `Connection` per peer, over TCP, QUIC, WebSocket or in memory; every liveness signal rides
 * the data connection as coalesced out-of-band parts fired from one central timer wheel.
 *
 * @example
 * ```ts
 * import { Messenger } from "./mod.ts";
 * const a = new Messenger({ name: "a" });
 * const addr = await a.listen("tcp://127.0.0.1:0");
 * const b = new Messenger({ name: "b" });
 * const conn = await b.connect(addr);
 * await conn.send(7, new Uint8Array([1, 2, 3]), { priority: "high" });
 * for await (const m of a.messages()) {
 *   console.log(m.type, m.payload, m.connection.peerName);
 *   break;
 * }
 * await conn.close();
 * await a.close();
 * await b.close();
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
} from "./src/messenger.ts";
export {
  Connection,
  CONNECTION_TRANSITIONS,
  type ConnectionState,
  type ConnectionStats,
  type Message,
  type SendOptions,
  type SessionEvent,
  type UnsentMessage,
} from "./src/connection.ts";
export { Policies, type Policy, type PolicyName } from "./src/policy.ts";
export {
  ConnectionClosedError,
  FrameError,
  type FrameErrorReason,
  HandshakeRefusedError,
  TransportError,
} from "./src/errors.ts";
export { PRIORITIES, type Priority, PROTOCOL_VERSION } from "./src/protocol/frame.ts";
export type { HeartbeatSettings } from "./src/protocol/payloads.ts";
export { type Clock, ManualClock, systemClock } from "./src/timer/clock.ts";
export {
  type EveryOptions,
  type Timer,
  TimerWheel,
  type TimerWheelOptions,
} from "./src/timer/timer_wheel.ts";
export { consoleLogger, type Logger, type LogLevel } from "./src/log.ts";
export type { Link, Listener, Transport } from "./transports/types.ts";
export { TcpTransport } from "./transports/tcp.ts";
export { MemoryLink, MemoryTransport } from "./transports/memory.ts";
export {
  type AttachedListener,
  WebSocketTransport,
  WS_HIGH_WATER,
  WS_MAX_UNREAD,
  WS_PATH,
} from "./transports/websocket.ts";
export type {
  OobDelivery,
  OobHandler,
  OobOptions,
  OobProducer,
  OobRegistration,
  OobStats,
} from "./src/oob/oob.ts";
export {
  type AdminAppOptions,
  type AdminServer,
  createAdminApp,
  serveAdmin,
  type ServeAdminOptions,
} from "./src/admin/app.ts";
export { renderMetrics } from "./src/admin/metrics.ts";
export type { Counters } from "./src/counters.ts";
export type { NodeEvent, PeerInfo, PeerState, WatchOptions } from "./src/health/health.ts";
export {
  type DetectorSettings,
  GraceDetector,
  PhiAccrualDetector,
  silenceToDownMs,
} from "./src/health/detector.ts";
