/**
 * Heartbeat settings: their defaults and validation. The wire type lives in
 * src/protocol/handshake.ts (the handshake carries the settings); this module fills in what a
 * user left out and rejects values that make no sense.
 *
 * @module
 */

import * as defaults from "../defaults.ts";
import type { HeartbeatSettings } from "../protocol/handshake.ts";
import { positive } from "../options.ts";

export type { HeartbeatSettings };

/**
 * Complete heartbeat settings from a partial set: defaults for what is missing, `RangeError`
 * or `TypeError` for what is wrong.
 *
 * @example
 * ```ts
 * import { resolveHeartbeat } from "./settings.ts";
 * const s = resolveHeartbeat({ intervalMs: 500 });
 * if (s.mode !== "global" || s.intervalMs !== 500) throw new Error("defaults");
 * ```
 */
export function resolveHeartbeat(h: Partial<HeartbeatSettings>): HeartbeatSettings {
  const settings: HeartbeatSettings = {
    mode: h.mode ?? "global",
    detector: h.detector ?? "phi",
    intervalMs: positive("heartbeat.intervalMs", h.intervalMs, defaults.HEARTBEAT_INTERVAL_MS),
    phiThreshold: positive("heartbeat.phiThreshold", h.phiThreshold, defaults.PHI_THRESHOLD),
    acceptablePauseMs: h.acceptablePauseMs ?? defaults.ACCEPTABLE_PAUSE_MS,
    minStdDevMs: positive("heartbeat.minStdDevMs", h.minStdDevMs, defaults.MIN_STD_DEV_MS),
    graceMs: positive("heartbeat.graceMs", h.graceMs, defaults.GRACE_MS),
  };
  if (settings.mode !== "global" && settings.mode !== "local") {
    throw new TypeError(`Unknown heartbeat mode: ${settings.mode}`);
  }
  if (settings.detector !== "phi" && settings.detector !== "grace") {
    throw new TypeError(`Unknown heartbeat detector: ${settings.detector}`);
  }
  if (!(settings.acceptablePauseMs >= 0) || !Number.isFinite(settings.acceptablePauseMs)) {
    throw new RangeError(`Option heartbeat.acceptablePauseMs must be >= 0: ${h.acceptablePauseMs}`);
  }
  return settings;
}
