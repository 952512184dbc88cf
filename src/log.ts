/**
 * The logger interface: one function, so any logging library can sit behind it.
 *
 * @module
 */

/** Severity of a log line. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Receives each log line the messenger writes. */
export type Logger = (level: LogLevel, message: string) => void;

/**
 * Default logger: warnings and errors to stderr, prefixed with `heartline`; debug and info
 * are dropped.
 *
 * @example
 * ```ts
 * import { consoleLogger } from "./log.ts";
 * consoleLogger("debug", "not shown");
 * ```
 */
export function consoleLogger(level: LogLevel, message: string): void {
  if (level === "warn") console.warn(`heartline: ${message}`);
  else if (level === "error") console.error(`heartline: ${message}`);
}
