// The chaos harness (tests/chaos/): its rules on made-up logs, and a short seeded run of real
// node processes in network namespaces (as root; elsewhere, its refusal).

import "./_guard.ts";
import assert from "node:assert/strict";
import { analyse, type Fault, type Incarnation, passed, type Timed } from "./chaos/report.ts";
import { runDeno } from "./_helpers.ts";

/** An incarnation with records at the given times. */
function inc(node: string, records: Timed[], extra: Partial<Incarnation> = {}): Incarnation {
  const start = { e: "start", inc: 1, nonce: "x", t: 0 } as Timed;
  return { node, inc: 1, records: [start, ...records], crashed: false, ...extra };
}
const S = (to: string, seq: number, t = 10): Timed => ({ e: "S", k: "L", to, seq, t });
const R = (from: string, seq: number, t = 20, k: "L" | "Y" = "L"): Timed => ({
  e: "R",
  k,
  from,
  inc: 1,
  seq,
  t,
});
const end: Timed = { e: "end", t: 100_000 };
const run = (incarnations: Incarnation[], faults: Fault[] = []) =>
  analyse({
    seed: 1,
    seconds: 60,
    boundMs: 3000,
    nodes: ["a", "b"],
    incarnations,
    faults,
    stopAt: 90_000,
    recoveries: faults.map(() => 1000),
  });

Deno.test("chaos report: a lossless message neither delivered nor handed back is lost", () => {
  const sent = inc("a", [S("b", 1), S("b", 2), S("b", 3), end]);
  const r = run([sent, inc("b", [R("a", 1), R("a", 3), end])]);
  assert.equal(r.lost, 1);
  assert.equal(passed(r), false);
  const handedBack = inc("a", [S("b", 1), S("b", 2), { e: "U", k: "L", to: "b", seq: 2, t: 30 }]);
  const ok = run([handedBack, inc("b", [R("a", 1), end])]);
  assert.equal(ok.lost, 0);
  assert.equal(ok.lossless.returned, 1);
});

Deno.test("chaos report: duplicates and reordering are counted on both policies", () => {
  const r = run([
    inc("a", [S("b", 1), S("b", 2), end]),
    inc("b", [R("a", 2), R("a", 1), R("a", 1), R("a", 5, 20, "Y"), R("a", 4, 21, "Y"), end]),
  ]);
  assert.equal(r.duplicated, 1);
  assert.equal(r.reordered, 3, "1 after 2, 1 after 1, and lossy 4 after 5");
});

Deno.test("chaos report: a message that died with a killed process is not lost", () => {
  const killed = inc("a", [S("b", 1, 10)], { killedAt: 50 });
  const kill: Fault = { kind: "kill", node: "a", start: 50, end: 4000 };
  const r = run([killed, inc("b", [end])], [kill]);
  assert.equal(r.lost, 0);
  assert.equal(r.lossless.lost_to_restart, 1);
  assert.equal(r.remote_resets_expected, 1, "one other node meets the new incarnation");
});

Deno.test("chaos report: detection is timed from the fault; a down without one is false", () => {
  const partition: Fault = { kind: "partition", node: "a", start: 1000, end: 6000 };
  const down = (t: number): Timed => ({ e: "N", peer: "a", state: "down", reason: "silent", t });
  const r = run([inc("a", [end]), inc("b", [down(1800), down(40_000), end])], [partition]);
  assert.equal(r.detections, 1);
  assert.equal(r.detection_p50_ms, 800);
  assert.equal(r.false_downs, 1, "the down at 40 s had no fault");
  const missed = run([inc("a", [end]), inc("b", [end])], [partition]);
  assert.equal(missed.missed_detections, 1);
});

Deno.test("deno task chaos: a short seeded run keeps every promise and leaves no namespace", async () => {
  // Bounded: past 150 s the harness gets SIGTERM, removes its namespaces and exits.
  const out = await runDeno([
    ...["run", "--allow-run", "--allow-read", "--allow-write", "--allow-env", "--allow-sys"],
    ...["tests/chaos/main.ts", "--seconds", "40", "--nodes", "4", "--seed", "7", "--json"],
  ], 150_000);
  const { stdout, stderr } = out;
  if (out.code === 2 && Deno.env.get("HEARTLINE_REQUIRE_NETNS") !== "1") {
    // Not root, or namespaces cannot be made here: it must say so plainly.
    assert.match(stderr, /needs root|cannot create network namespaces|iproute2/);
    console.warn(`chaos harness unavailable here: ${stderr.trim()}`);
    return;
  }
  const last = stdout.trim().split("\n").at(-1) ?? "";
  assert.ok(last.startsWith('{"chaos":'), `the JSON line ends the output:\n${stdout}\n${stderr}`);
  const { chaos } = JSON.parse(last);
  const summary = `${stdout}\n${stderr.slice(-4000)}`;
  assert.equal(chaos.seed, 7);
  assert.equal(chaos.nodes, 4);
  assert.ok(chaos.sent > 1000 && chaos.delivered > 0, summary);
  for (const field of ["lost", "duplicated", "reordered", "false_downs", "crashes"]) {
    assert.equal(chaos[field], 0, `${field}:\n${summary}`);
  }
  assert.equal(chaos.unhandled_errors, 0, summary);
  assert.ok(chaos.detection_max_ms <= chaos.detection_bound_ms, summary);
  assert.equal(chaos.remote_resets, chaos.remote_resets_expected, summary);
  assert.equal(out.code, 0, summary);
  const netns = await new Deno.Command("ip", { args: ["netns", "list"], stdout: "piped" }).output();
  const left = new TextDecoder().decode(netns.stdout).split("\n")
    .filter((l) => l.startsWith(`hlc${out.pid}`));
  assert.deepEqual(left, [], "no namespace of the run is left");
});
