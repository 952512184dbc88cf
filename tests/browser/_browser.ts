// A real browser for the page tests: Debian's chromium, driven headless by playwright-core.
// CI installs chromium and sets HEARTLINE_REQUIRE_BROWSER=1, so a missing browser fails there;
// elsewhere the browser tests are skipped with a note.

import { type Browser, chromium } from "npm:playwright-core@1.64.1";

/** Where chromium is looked for: HEARTLINE_CHROMIUM, else Debian's path. */
export const CHROMIUM = Deno.env.get("HEARTLINE_CHROMIUM") ?? "/usr/bin/chromium";

/** Whether a browser test must run (CI), rather than be skipped when chromium is missing. */
export const REQUIRE_BROWSER = Deno.env.get("HEARTLINE_REQUIRE_BROWSER") === "1";

/** Where tests save their screenshots (made if missing). */
export const SCREENSHOT_DIR = Deno.env.get("HEARTLINE_SCREENSHOTS") ?? "/tmp/heartline-screenshots";

function hasChromium(): boolean {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
}

/** True when the browser tests should be ignored: no chromium here, and none required. */
export const NO_BROWSER = !hasChromium() && !REQUIRE_BROWSER;
if (NO_BROWSER) console.error(`browser tests skipped: no chromium at ${CHROMIUM}`);

/**
 * Launches headless chromium with the flags this closed network needs (no background
 * networking, no QUIC, no first-run work) and a fresh profile.
 */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    timeout: 30_000,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}
