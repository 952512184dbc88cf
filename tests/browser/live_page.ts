// The live cluster page in a real browser (headless chromium via playwright-core): it lists
// every peer of a small cluster whose peers are separate processes, shows a killed peer down
// within the detection bound and its restart as `restarted`, and asks for the admin token.

import { deadline } from "../_helpers.ts";
import assert from "node:assert/strict";
import { launchBrowser, NO_BROWSER, SCREENSHOT_DIR } from "./_browser.ts";
import { Messenger, silenceToDownMs } from "../../mod.ts";
import { serveAdmin } from "../../admin.ts";
import { resolveHeartbeat } from "../../src/health/settings.ts";

// The fixture peer's settings (tests/fixtures/peer_node.ts): 100 ms heartbeats.
const HEARTBEAT = { intervalMs: 100, acceptablePauseMs: 200, minStdDevMs: 20 };
const SAMPLE_MS = 200;
const TOKEN = "page-test-token";

/** A peer process that dials `addr` as `name`; resolves once its session is open. */
async function startPeer(addr: string, name: string): Promise<Deno.ChildProcess> {
  const script = new URL("../fixtures/peer_node.ts", import.meta.url);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net=127.0.0.1", script.href, addr, name, "100"],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const first = await deadline(reader.read(), `peer ${name} to open its session`);
  reader.releaseLock();
  assert.match(first.value ?? "", /^open /, `peer ${name} printed ${first.value}`);
  return child;
}

async function stopPeer(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGKILL");
  } catch {
    // already gone
  }
  await child.status;
  await child.stdout.cancel().catch(() => {});
}

Deno.test({
  name: "the live page shows every peer, a killed one down within the bound, then restarted",
  ignore: NO_BROWSER,
  fn: async () => {
    const hub = new Messenger({ name: "hub", heartbeat: HEARTBEAT, logger: () => {} });
    const addr = await hub.listen("tcp://127.0.0.1:0");
    const admin = await serveAdmin(hub, { token: TOKEN, live: { sampleMs: SAMPLE_MS } });
    const peers = [await startPeer(addr, "bravo"), await startPeer(addr, "charlie")];
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      // The token travels in the fragment, which the browser never sends to the server.
      await page.goto(`${admin.url}/#token=${TOKEN}`, { timeout: 30_000 });
      for (const name of ["bravo", "charlie"]) {
        await page.waitForSelector(`#peers tr[data-peer="${name}"][data-state="up"]`, {
          timeout: 30_000,
        });
      }
      assert.equal(await page.textContent("#node"), "hub");
      assert.equal(await page.getAttribute("#feed", "data-state"), "live");
      assert.doesNotMatch(page.url(), /token/, "the token is dropped from the address bar");

      // Kill charlie: the page must show it down within the detection bound (plus a sample).
      const bound = silenceToDownMs(resolveHeartbeat(HEARTBEAT)) + SAMPLE_MS + 2000;
      const killedAt = performance.now();
      peers[1].kill("SIGKILL");
      await page.waitForSelector(`#peers tr[data-peer="charlie"][data-state="down"]`, {
        timeout: bound,
      });
      const shownMs = performance.now() - killedAt;
      assert.ok(shownMs <= bound, `shown down after ${shownMs} ms`);
      assert.ok(
        await page.$(`#events li[data-peer="charlie"][data-state="down"]`),
        "the down event is listed",
      );
      assert.ok(await page.$(`#peers tr[data-peer="bravo"][data-state="up"]`), "bravo stays up");

      // A new incarnation of charlie comes back marked `restarted`.
      await stopPeer(peers[1]);
      peers[1] = await startPeer(addr, "charlie");
      await page.waitForSelector(
        `#peers tr[data-peer="charlie"][data-state="up"][data-restarted="true"]`,
        { timeout: 30_000 },
      );
      const restartsCell = await page.textContent(`#peers tr[data-peer="charlie"] td:last-child`);
      assert.equal(restartsCell, "1");
      // The plots have drawn a series per peer.
      assert.equal(await page.locator("#chart-phi .u-legend .u-series").count(), 2);
      assert.ok(await page.$("#chart-economy canvas"), "the economy chart is drawn");

      await Deno.mkdir(SCREENSHOT_DIR, { recursive: true });
      const file = `${SCREENSHOT_DIR}/live-page.png`;
      await page.screenshot({ path: file, fullPage: true });
      assert.ok((await Deno.stat(file)).size > 10_000, "a screenshot was saved");
      assert.deepEqual(errors, [], "no script error on the page");
    } finally {
      await browser.close();
      for (const p of peers) await stopPeer(p);
      await hub.close();
    }
  },
});

Deno.test({
  name: "the live page asks for the admin token, refuses a wrong one and opens with the right one",
  ignore: NO_BROWSER,
  fn: async () => {
    await using hub = new Messenger({ name: "hub", logger: () => {} });
    const admin = await serveAdmin(hub, { token: TOKEN });
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      await page.goto(`${admin.url}/`, { timeout: 30_000 });
      await page.waitForSelector("#login:not([hidden])", { timeout: 30_000 });
      assert.equal(await page.isHidden("#main"), true, "no data without the token");
      await page.fill("#token", "wrong");
      await page.click("#login button");
      await page.waitForSelector("#login:not([hidden])", { timeout: 30_000 });
      await page.waitForSelector("#login-error:has-text('refused')", { timeout: 30_000 });
      await page.fill("#token", TOKEN);
      await page.click("#login button");
      await page.waitForSelector(`#feed[data-state="live"]`, { timeout: 30_000 });
      assert.equal(await page.textContent("#node"), "hub");
    } finally {
      await browser.close();
    }
  },
});
