/**
 * The API a web page and a Deno node share: everything `mod.ts` exports except the TCP and
 * TLS transports, which need Deno's sockets. `mod.ts` and `browser.ts` both re-export it,
 * so the two entry points cannot drift apart.
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
} from "./messenger.ts";
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
} from "./connection.ts";
export { type FaultAction, Policies, type Policy, type PolicyName } from "./policy.ts";
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
  UnwritableMessageError,
} from "./errors.ts";
export { PROTOCOL_VERSION } from "./protocol/frame.ts";
export { PRIORITIES, type Priority } from "./protocol/message.ts";
export type { HeartbeatSettings } from "./health/settings.ts";
export { type Clock, systemClock } from "./timer/clock.ts";
export {
  type EveryOptions,
  type Timer,
  TimerWheel,
  type TimerWheelOptions,
} from "./timer/timer_wheel.ts";
export { consoleLogger, type Logger, type LogLevel } from "./log.ts";
export type { Link, Listener, Transport } from "../transports/types.ts";
export {
  type AttachedListener,
  WebSocketTransport,
  WS_HIGH_WATER,
  WS_MAX_UNREAD,
  WS_PATH,
} from "../transports/websocket.ts";
export type { OobDelivery, OobHandler } from "./oob/service.ts";
export type { OobOptions, OobProducer, OobRegistration, OobStats } from "./oob/types.ts";
export { OOB_UNCHANGED } from "./oob/types.ts";
export type { Counters } from "./counters.ts";
export type { NodeEvent, PeerInfo, PeerState, WatchOptions } from "./health/health.ts";
export {
  type DetectorSettings,
  GraceDetector,
  PhiAccrualDetector,
  silenceToDownMs,
} from "./health/detector.ts";
