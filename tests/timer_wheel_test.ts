import "./_guard.ts";
import assert from "node:assert/strict";
import { ManualClock } from "../src/timer/clock.ts";
import { TimerWheel } from "../src/timer/timer_wheel.ts";

function setup(tickMs = 5) {
  const clock = new ManualClock(1000);
  const wheel = new TimerWheel({ clock, tickMs, onError: () => {} });
  return { clock, wheel };
}

Deno.test("TimerWheel.schedule() fires no earlier than due and within one tick", () => {
  const { clock, wheel } = setup(5);
  const fired: number[] = [];
  for (const delay of [0, 1, 4, 5, 6, 99, 100, 320, 321, 5000]) {
    wheel.schedule(delay, () => fired.push(clock.now() - 1000 - delay));
  }
  clock.advance(6000);
  assert.equal(fired.length, 10);
  for (const lateness of fired) assert.ok(lateness >= 0 && lateness <= 5, `late by ${lateness}`);
  assert.equal(wheel.size, 0);
});

Deno.test("TimerWheel cascades long timers down the levels and fires them on time", () => {
  const { clock, wheel } = setup(1);
  const delays = [64, 65, 4095, 4096, 4097, 262_144 + 17, 3_600_000, 86_400_000];
  const late = new Map<number, number>();
  for (const d of delays) wheel.schedule(d, () => late.set(d, clock.now() - 1000 - d));
  // Advance in uneven steps, like a real host waking late.
  let t = 0;
  while (t < 86_400_001) {
    const step = Math.min(86_400_001 - t, t < 300_000 ? 997 : 3_600_000);
    clock.advance(step);
    t += step;
  }
  assert.deepEqual([...late.keys()].sort((a, b) => a - b), delays);
  for (const [d, lateness] of late) {
    assert.ok(lateness >= 0 && lateness <= 1, `${d}: late by ${lateness}`);
  }
});

Deno.test("TimerWheel fires many random timers in due order", () => {
  const { clock, wheel } = setup(2);
  const order: number[] = [];
  const dues: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const d = Math.floor(Math.random() * 100_000);
    dues.push(d);
    wheel.schedule(d, () => order.push(d));
  }
  clock.advance(100_010);
  assert.equal(order.length, 2000);
  for (let i = 1; i < order.length; i++) {
    // Timers in the same 2 ms tick may fire in any order; across ticks, in due order.
    assert.ok(Math.ceil(order[i] / 2) >= Math.ceil(order[i - 1] / 2), `out of order at ${i}`);
  }
});

Deno.test("TimerWheel cancel() stops a timer that is due in the same tick", () => {
  const { clock, wheel } = setup(5);
  let fired = 0;
  // Same due time, so both sit in one slot; slots are FIFO, so the canceller runs first.
  const canceller = { victim: null as null | { cancel(): void } };
  wheel.schedule(50, () => {
    fired++;
    canceller.victim?.cancel();
  });
  canceller.victim = wheel.schedule(50, () => fired += 100);
  clock.advance(60);
  assert.equal(fired, 1);
  const t = wheel.schedule(10, () => fired = -1);
  assert.equal(t.active, true);
  t.cancel();
  assert.equal(t.active, false);
  assert.equal(wheel.size, 0);
  clock.advance(100);
  assert.equal(fired, 1);
});

Deno.test("TimerWheel.every() repeats on aligned phases so related intervals meet", () => {
  const { clock, wheel } = setup(5);
  const ticks: string[] = [];
  wheel.every(1000, () => ticks.push(`1s@${clock.now()}`));
  clock.advance(1700);
  wheel.every(5000, () => ticks.push(`5s@${clock.now()}`));
  clock.advance(10_000);
  const fives = ticks.filter((t) => t.startsWith("5s")).map((t) => t.split("@")[1]);
  const ones = ticks.filter((t) => t.startsWith("1s")).map((t) => t.split("@")[1]);
  assert.equal(fives.length, 2);
  for (const f of fives) assert.ok(ones.includes(f), `5 s fire at ${f} has a 1 s partner`);
  assert.equal(ones.length, 11);
});

Deno.test("TimerWheel skips periods missed while the host stalled instead of bursting", () => {
  // A host that never runs the wheel's timeout: time moves, nothing fires until advance().
  let now = 0;
  const stalled = { now: () => now, setTimeout: () => 0, clearTimeout: () => {} };
  const wheel = new TimerWheel({ clock: stalled, tickMs: 5 });
  let n = 0;
  wheel.every(100, () => n++);
  now = 1_050;
  wheel.advance();
  assert.equal(n, 1, "ten missed periods fire once, not ten times");
  assert.equal(wheel.lateFires, 1);
  now = 1_100;
  wheel.advance();
  assert.equal(n, 2, "the next period is on its normal phase");
});

Deno.test("TimerWheel sleeps while empty: no timeout is armed and none remains", () => {
  const { clock, wheel } = setup(5);
  assert.equal(wheel.armed, false);
  assert.equal(clock.pending, 0);
  const t = wheel.schedule(1000, () => {});
  assert.equal(wheel.armed, true);
  assert.equal(clock.pending, 1);
  t.cancel();
  clock.advance(2000);
  assert.equal(wheel.armed, false);
  assert.equal(clock.pending, 0);
});

Deno.test("TimerWheel wakes only when something is due, not every tick", () => {
  const clock = new ManualClock(0);
  let timeouts = 0;
  const counting = {
    now: () => clock.now(),
    setTimeout: (fn: () => void, ms: number) => {
      timeouts++;
      return clock.setTimeout(fn, ms);
    },
    clearTimeout: (h: unknown) => clock.clearTimeout(h),
  };
  const wheel = new TimerWheel({ clock: counting, tickMs: 1 });
  let fired = 0;
  wheel.every(1000, () => fired++);
  clock.advance(10_000);
  assert.equal(fired, 10);
  // 1 ms ticks over 10 s: a wheel that woke every tick would set 10,000 timeouts.
  assert.ok(timeouts <= 40, `set ${timeouts} timeouts`);
  wheel.close();
  assert.equal(clock.pending, 0);
});

Deno.test("TimerWheel contains callbacks that throw", () => {
  const clock = new ManualClock(0);
  const errors: unknown[] = [];
  const wheel = new TimerWheel({ clock, tickMs: 5, onError: (e) => errors.push(e) });
  let ok = 0;
  wheel.schedule(10, () => {
    throw new Error("boom");
  });
  wheel.schedule(10, () => ok++);
  clock.advance(20);
  assert.equal(ok, 1);
  assert.equal(errors.length, 1);
  assert.equal(wheel.errors, 1);
});

Deno.test("TimerWheel tick-end hooks run once per advance after all timers of it", () => {
  const { clock, wheel } = setup(5);
  const log: string[] = [];
  wheel.onTickEnd(() => log.push("end"));
  wheel.schedule(10, () => log.push("a"));
  wheel.schedule(10, () => log.push("b"));
  clock.advance(10);
  assert.deepEqual(log, ["a", "b", "end"]);
});

Deno.test("TimerWheel rejects bad arguments with RangeError", () => {
  assert.throws(() => new TimerWheel({ tickMs: 0 }), RangeError);
  const { wheel } = setup(5);
  assert.throws(() => wheel.every(1, () => {}), RangeError);
  wheel.close();
  assert.throws(() => wheel.schedule(1, () => {}), TypeError);
});

Deno.test("TimerWheel agrees with a naive model under random schedule, cancel and advance", () => {
  const { clock, wheel } = setup(4);
  type Entry = { due: number; firedAt?: number; cancelled: boolean; timer: { cancel(): void } };
  const entries: Entry[] = [];
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  for (let step = 0; step < 3000; step++) {
    const r = rand();
    if (r < 0.5) {
      const delay = Math.floor(rand() ** 3 * 2_000_000);
      const e: Entry = { due: clock.now() + delay, cancelled: false, timer: { cancel() {} } };
      e.timer = wheel.schedule(delay, () => e.firedAt = clock.now());
      entries.push(e);
    } else if (r < 0.7 && entries.length > 0) {
      const e = entries[Math.floor(rand() * entries.length)];
      if (e.firedAt === undefined) {
        e.cancelled = true;
        e.timer.cancel();
      }
    } else {
      clock.advance(Math.floor(rand() ** 2 * 50_000));
    }
  }
  clock.advance(2_100_000);
  for (const e of entries) {
    if (e.cancelled) assert.equal(e.firedAt, undefined);
    else {
      assert.ok(e.firedAt !== undefined, `timer due ${e.due} never fired`);
      assert.ok(e.firedAt >= e.due && e.firedAt <= e.due + 4, `due ${e.due} fired ${e.firedAt}`);
    }
  }
  assert.equal(wheel.size, 0);
});

Deno.test("TimerWheel periodic timers of one phase fire together; cancel mid-fire is honoured", () => {
  const { clock, wheel } = setup(5);
  const log: string[] = [];
  const timers: { cancel(): void }[] = [];
  for (let i = 0; i < 5; i++) {
    timers.push(wheel.every(1000, () => {
      log.push(`t${i}`);
      if (i === 1) timers[3].cancel(); // a later member, cancelled by an earlier one
      if (i === 2 && log.length < 10) wheel.every(1000, () => log.push("late-joiner"));
    }));
  }
  assert.equal(wheel.size, 5);
  clock.advance(1000);
  assert.deepEqual(log.sort(), ["t0", "t1", "t2", "t4"]);
  assert.equal(wheel.size, 5, "four left plus the one that joined during the fire");
  log.length = 0;
  clock.advance(1000);
  assert.ok(log.includes("late-joiner"));
  assert.ok(!log.includes("t3"));
  for (const t of timers) t.cancel();
  wheel.close();
  assert.equal(wheel.size, 0);
});

Deno.test("TimerWheel: cancelling every member of a group leaves nothing armed", () => {
  const { clock, wheel } = setup(5);
  const ts = Array.from({ length: 100 }, () => wheel.every(500, () => {}));
  const solo = wheel.every(500, () => {}, { aligned: false });
  assert.equal(wheel.size, 101);
  for (const t of ts) t.cancel();
  solo.cancel();
  assert.equal(wheel.size, 0);
  clock.advance(1000);
  assert.equal(wheel.armed, false);
  assert.equal(clock.pending, 0);
});

Deno.test("TimerWheel: aligned intervals meet in the same tick whatever the clock's epoch", () => {
  // A real clock starts at an arbitrary fraction (performance.now()): due times computed as
  // epoch + k * interval and turned back into ticks must not round into different ticks.
  for (const epoch of [123.456, 0.1, 98_765.4321, 1e9 + 0.7]) {
    const clock = new ManualClock(epoch);
    const wheel = new TimerWheel({ clock, tickMs: 5, onError: () => {} });
    const fires: string[] = [];
    let advance = 0;
    wheel.every(500, () => fires.push(`${advance}:half`));
    wheel.every(1000, () => fires.push(`${advance}:one`));
    for (advance = 1; advance <= 200_000 / 5; advance++) clock.advance(5);
    const byAdvance = new Map<string, string[]>();
    for (const f of fires) {
      const [at, what] = f.split(":");
      byAdvance.set(at, [...byAdvance.get(at) ?? [], what]);
    }
    const ones = [...byAdvance.values()].filter((w) => w.includes("one"));
    assert.equal(ones.length, 200, `epoch ${epoch}: 200 seconds`);
    for (const w of ones) assert.deepEqual(w.sort(), ["half", "one"], `epoch ${epoch}: together`);
    wheel.close();
  }
});
