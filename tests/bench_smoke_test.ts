// The benchmarks run and print the JSON format the issues define (tiny sizes; the figures
// themselves belong to `deno task bench`, not to tests).

import "./_guard.ts";
import assert from "node:assert/strict";
import { runDeno } from "./_helpers.ts";

async function runJson(args: string[]) {
  const out = await runDeno([
    "run",
    "--unstable-net",
    "--allow-write=/tmp",
    "--allow-net=127.0.0.1",
    "--allow-env",
    "--allow-read",
    "--allow-run",
    "--allow-sys",
    "--v8-flags=--expose-gc",
    ...args,
  ], 240_000);
  assert.equal(out.code, 0, out.stderr);
  return JSON.parse(out.stdout) as {
    benchmarks: {
      name: string;
      unit: string;
      value: number;
      baseline_value: number;
      ratio: number;
    }[];
  };
}

Deno.test("deno task bench --json prints the benchmark rows", async () => {
  const { benchmarks } = await runJson([
    "bench/main.ts",
    "--json",
    "--quick",
    "--only",
    "tcp_oneway_64B,oob_frames",
  ]);
  assert.deepEqual(benchmarks.map((b) => b.name), [
    "tcp_oneway_64B",
    "tcp_oneway_64B_lossless",
    "oob_frames_per_second",
  ]);
  for (const b of benchmarks) {
    assert.ok(b.value > 0 && b.baseline_value > 0, JSON.stringify(b));
    assert.ok(
      Math.abs(
        b.ratio - (b.unit === "frames/s" ? b.baseline_value / b.value : b.value / b.baseline_value),
      ) < 1e-9,
    );
  }
  const oob = benchmarks.find((b) => b.name === "oob_frames_per_second")!;
  assert.equal(oob.value, 100, "one frame per connection per second");
  assert.equal(oob.ratio, 30);
});

Deno.test("deno task bench --processes --json runs both ends as separate processes", async () => {
  const { benchmarks } = await runJson([
    "bench/main.ts",
    "--json",
    "--quick",
    "--processes",
    "--only",
    "proc_oneway_64B,proc_pingpong,proc_workers,idle_conn_bytes",
  ]);
  assert.deepEqual(benchmarks.map((b) => b.name), [
    "proc_oneway_64B",
    "proc_rss_client_64B",
    "proc_cpu_client_64B",
    "proc_rss_server_64B",
    "proc_cpu_server_64B",
    "proc_oneway_64B_lossless",
    "proc_oneway_64B_batch",
    "proc_pingpong_64B_p50",
    "proc_pingpong_64B_p99",
    "proc_pingpong_64B_p999",
    "proc_pingpong_64B_js_path",
    "proc_workers_16conn_64B",
    "idle_conn_bytes",
    "idle_conn_bytes_node_sockets",
    "idle_conn_bytes_node_sockets_young_capped",
  ]);
  for (const b of benchmarks) {
    assert.ok(b.value > 0 && b.baseline_value > 0, JSON.stringify(b));
    const higherIsBetter = b.unit === "msg/s";
    const expected = higherIsBetter ? b.value / b.baseline_value : b.baseline_value / b.value;
    assert.ok(Math.abs(b.ratio - expected) < 1e-9, JSON.stringify(b));
  }
  for (
    const name of [
      "idle_conn_bytes",
      "idle_conn_bytes_node_sockets",
      "idle_conn_bytes_node_sockets_young_capped",
    ]
  ) {
    const idle = benchmarks.find((b) => b.name === name)!;
    assert.equal(idle.baseline_value, 16384, `${name}: the budget per idle connection`);
  }
});

Deno.test("deno task bench:cluster --json compares the two designs", async () => {
  const { benchmarks } = await runJson([
    "bench/cluster/main.ts",
    "--json",
    "--nodes",
    "4",
    "--users",
    "5",
    "--interval-ms",
    "200",
    "--window-s",
    "1",
  ]);
  const by = Object.fromEntries(benchmarks.map((b) => [b.name, b]));
  assert.deepEqual(Object.keys(by).sort(), [
    "cluster_ceph_budget_interval_ms",
    "cluster_cpu",
    "cluster_detect_ceph_budget_ms",
    "cluster_detect_ms",
    "cluster_false_downs",
    "cluster_heartbeat_bytes",
    "cluster_heartbeat_frames",
    "cluster_sockets",
    "cluster_timers",
  ]);
  assert.equal(by.cluster_sockets.value, 12); // 6 pairs, 2 ends
  assert.equal(by.cluster_sockets.ratio, 3);
  assert.equal(by.cluster_timers.value, 4);
  assert.ok(by.cluster_heartbeat_frames.ratio > 5, JSON.stringify(by.cluster_heartbeat_frames));
  assert.ok(by.cluster_detect_ms.value > 0 && by.cluster_detect_ms.baseline_value > 0);
  assert.equal(by.cluster_detect_ceph_budget_ms.baseline_value, 20_000, "Ceph's grace");
  assert.ok(by.cluster_detect_ceph_budget_ms.value > 0);
  assert.ok(by.cluster_ceph_budget_interval_ms.value >= 20);
  // A count, not a timing: how many there were is the benchmark's to report.
  assert.ok(Number.isInteger(by.cluster_false_downs.value) && by.cluster_false_downs.value >= 0);
});

Deno.test("deno task bench:cluster --netns runs each node as a process in its own namespace", async () => {
  const out = await runDeno([
    ...["run", "--allow-net=127.0.0.1", "--allow-env", "--allow-read", "--allow-run"],
    ...["--allow-sys", "--allow-write=docs", "bench/cluster/main.ts", "--json", "--netns"],
    ...["--nodes", "3", "--users", "5", "--interval-ms", "200", "--window-s", "1"],
    ...["--saturate-s", "2"],
  ], 240_000);
  const stderr = out.stderr;
  if (out.code === 2 && Deno.env.get("HEARTLINE_REQUIRE_NETNS") !== "1") {
    // Not root, or no namespaces here: it says so plainly (CI, as root, requires the run).
    assert.match(stderr, /needs root|cannot create network namespaces|iproute2/);
    return;
  }
  assert.equal(out.code, 0, stderr);
  const { benchmarks } = JSON.parse(out.stdout) as {
    benchmarks: { name: string; value: number }[];
  };
  const by = Object.fromEntries(benchmarks.map((b) => [b.name, b]));
  assert.equal(by.cluster_sockets.value, 6, "3 pairs, 2 ends, one process per node");
  assert.ok(by.cluster_heartbeat_frames.value > 0);
  assert.ok(by.cluster_detect_ceph_budget_ms.value > 0, "a stopped node was seen down");
  assert.ok(Number.isInteger(by.cluster_false_downs.value));
  assert.ok(by.cluster_saturated_max_phi.value >= 0, "phi was sampled under saturation");
  assert.ok(Number.isInteger(by.cluster_saturated_false_downs.value));
  const left = await new Deno.Command("ip", { args: ["netns", "list"], stdout: "piped" }).output();
  const mine = new TextDecoder().decode(left.stdout).split("\n")
    .filter((l) => l.startsWith(`hlc${out.pid}`));
  assert.deepEqual(mine, [], "no namespace of the run is left");
});
