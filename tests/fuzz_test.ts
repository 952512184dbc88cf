// Fuzzing in CI: every decoder that reads a peer's bytes, a few thousand random and mutated
// inputs each (seeded; `deno task fuzz` runs a million). See tests/fuzz/properties.ts.

import "./_guard.ts";
import { PROPERTIES } from "./fuzz/properties.ts";

const RUNS = Number(Deno.env.get("HEARTLINE_FUZZ_RUNS") ?? 3000);
const SEED = Number(Deno.env.get("HEARTLINE_FUZZ_SEED") ?? 20261201);

for (const [name, check] of Object.entries(PROPERTIES)) {
  Deno.test(`fuzz: the ${name} decoders throw only typed errors on random and mutated input`, () => {
    check({ numRuns: RUNS, seed: SEED });
  });
}
