/**
 * `deno task fuzz [--inputs N] [--seed S] [--only frame,handshake,heartbeat,control]`: runs the
 * decoder fuzz properties (tests/fuzz/properties.ts) over N inputs in all (default 1,000,000),
 * split evenly, and prints inputs per second for each. A failure prints the seed and the
 * shrunk input, and exits 1.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { PROPERTIES } from "./properties.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    inputs: { type: "string", default: "1000000" },
    seed: { type: "string" },
    only: { type: "string" },
  },
});
const names = values.only?.split(",") ?? Object.keys(PROPERTIES);
const total = Number(values.inputs);
const seed = values.seed === undefined ? Date.now() % 0x7fff_ffff : Number(values.seed);
const each = Math.ceil(total / names.length);
console.log(`fuzz: ${total} inputs, seed ${seed}`);
let failed = false;
for (const name of names) {
  const check = PROPERTIES[name];
  if (!check) throw new TypeError(`Unknown property: ${name} (have ${Object.keys(PROPERTIES)})`);
  const start = performance.now();
  try {
    check({ numRuns: each, seed });
  } catch (error) {
    failed = true;
    console.error(`${name}: FAILED\n${(error as Error).message}`);
    continue;
  }
  const seconds = (performance.now() - start) / 1000;
  console.log(
    `${name.padEnd(10)} ${each} inputs in ${seconds.toFixed(1)} s: ${Math.round(each / seconds)}/s`,
  );
}
Deno.exit(failed ? 1 : 0);
