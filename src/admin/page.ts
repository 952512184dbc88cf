/**
 * The live cluster page's files, served by the admin app from the package itself (no CDN, no
 * build step): the HTML, its script and style, and uPlot, pinned.
 *
 * @module
 */

import type { Context } from "npm:hono@4";
import indexHtml from "./page/index.html" with { type: "text" };
import pageJs from "./page/page.js" with { type: "text" };
import pageCss from "./page/page.css" with { type: "text" };
import uplotJs from "npm:uplot@1.6.32/dist/uPlot.iife.min.js" with { type: "text" };
import uplotCss from "npm:uplot@1.6.32/dist/uPlot.min.css" with { type: "text" };

const ASSETS: Record<string, [body: string, type: string]> = {
  "index.html": [indexHtml, "text/html; charset=utf-8"],
  "page.js": [pageJs, "text/javascript; charset=utf-8"],
  "page.css": [pageCss, "text/css; charset=utf-8"],
  "uplot.js": [uplotJs, "text/javascript; charset=utf-8"],
  "uplot.css": [uplotCss, "text/css; charset=utf-8"],
};

/** Answers with one of the page's files, or 404. */
export function pageAsset(c: Context, file: string): Response {
  const asset = Object.hasOwn(ASSETS, file) ? ASSETS[file] : undefined;
  if (!asset) return c.json({ error: "not found", path: c.req.path }, 404);
  c.header("content-type", asset[1]);
  c.header("x-content-type-options", "nosniff");
  // Only the page's own files run; no other page may frame it.
  c.header("content-security-policy", "default-src 'self'; frame-ancestors 'none'");
  c.header("cache-control", "no-cache");
  return c.body(asset[0]);
}
