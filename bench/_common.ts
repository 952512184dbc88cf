// Shared types and helpers for the benchmarks.

/** One benchmark row, in the JSON format of `deno task bench --json`. */
export interface BenchResult {
  name: string;
  unit: string;
  value: number;
  baseline_value: number;
  /** Higher is better for heartline. */
  ratio: number;
  /** Free text shown in the table only. */
  note?: string;
}

/** Options every suite receives. */
export interface BenchOptions {
  /** Smaller counts, for a smoke run. */
  quick: boolean;
  /** Only these benchmark names (all when undefined). */
  only?: string[];
}

/** A suite returns its rows. */
export type BenchSuite = (options: BenchOptions) => Promise<BenchResult[]>;

/** Whether `name` was asked for. */
export function wanted(options: BenchOptions, name: string): boolean {
  return !options.only || options.only.some((o) => name.startsWith(o));
}

/** The median of a list of numbers. */
export function median(xs: number[]): number {
  return percentile(xs, 50);
}

/** The p-th percentile (nearest rank) of a list of numbers. */
export function percentile(xs: number[], p: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}
