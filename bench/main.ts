/**
 * `deno task bench [--json] [--quick] [--only name,...] [--processes | --in-process]`: heartline
 * against a baseline measured in the same run, on loopback. First the two-process rows
 * (`proc_*`: sender and receiver in separate processes, as a deployment runs them), then the
 * in-process rows (both ends in this process); `--processes` or `--in-process` runs one table.
 * Prints tables, or with `--json` one JSON object:
 * `{"benchmarks":[{"name","unit","value","baseline_value","ratio"}, ...]}`. Ratios are
 * oriented so that higher is better for heartline (throughput: value / baseline; latency:
 * baseline / value).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { tcpBenchmarks } from "./tcp_bench.ts";
import { wheelBenchmarks } from "./wheel_bench.ts";
import { healthBenchmarks } from "./health_bench.ts";
import { transportBenchmarks } from "./transport_bench.ts";
import { handshakeBenchmarks } from "./handshake_bench.ts";
import { procBenchmarks } from "./proc/suite.ts";
import type { BenchResult, BenchSuite } from "./_common.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    json: { type: "boolean", default: false },
    quick: { type: "boolean", default: false },
    only: { type: "string" },
    processes: { type: "boolean", default: false },
    "in-process": { type: "boolean", default: false },
  },
});

const inProcess: BenchSuite[] = [
  tcpBenchmarks,
  transportBenchmarks,
  wheelBenchmarks,
  healthBenchmarks,
  handshakeBenchmarks,
];
const tables: [string, BenchSuite[]][] = [];
if (!values["in-process"]) tables.push(["between two processes", [procBenchmarks]]);
if (!values.processes) tables.push(["both ends in one process", inProcess]);
const only = values.only?.split(",");
const results: BenchResult[] = [];
for (const [title, suites] of tables) {
  if (!values.json) console.error(`\n# ${title}`);
  for (const suite of suites) await runSuite(suite);
}

async function runSuite(suite: BenchSuite): Promise<void> {
  for (const result of await suite({ quick: values.quick!, only })) {
    results.push(result);
    if (!values.json) {
      console.error(
        `${result.name.padEnd(26)} ${fmt(result.value).padStart(12)} ${result.unit.padEnd(6)}` +
          ` baseline ${fmt(result.baseline_value).padStart(12)}  ratio ${result.ratio.toFixed(3)}` +
          (result.note ? `  (${result.note})` : ""),
      );
    }
  }
}
if (values.json) {
  console.log(JSON.stringify({
    benchmarks: results.map(({ name, unit, value, baseline_value, ratio }) => ({
      name,
      unit,
      value,
      baseline_value,
      ratio,
    })),
  }));
}

function fmt(n: number): string {
  if (n >= 1000) return Math.round(n).toLocaleString("en-US");
  return n.toPrecision(4);
}
