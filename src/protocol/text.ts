/**
 * Text from a peer, made safe to print: a peer chooses its node name, its Close reason, its op
 * names and the values in a Refuse frame, and none of them may forge log lines or flood them.
 *
 * @module
 */

/** Longest text printed from a peer, in UTF-16 code units, before it is cut. */
export const MAX_PRINTED = 200;

/**
 * `value` as one line of plain text: control characters (line breaks, escapes, NUL, the
 * Unicode line and paragraph separators) become `\uXXXX`, and anything past `max` characters
 * is cut and counted.
 *
 * @example
 * ```ts
 * import { printable } from "./text.ts";
 * if (printable("bad\nINFO: forged") !== "bad\\u000aINFO: forged") throw new Error("escaped");
 * if (printable("x".repeat(300)).length > 230) throw new Error("cut");
 * ```
 */
export function printable(value: unknown, max = MAX_PRINTED): string {
  let text = String(value);
  const cut = text.length > max ? text.length - max : 0;
  if (cut > 0) text = text.slice(0, max);
  text = text.replace(
    // deno-lint-ignore no-control-regex
    /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
  return cut > 0 ? `${text}...(${cut} more)` : text;
}
