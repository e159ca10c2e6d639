import type { Clock } from '../../src/lib/clock.js';

/** A clock that only moves when the test says so. */
export type FakeClock = Clock & { set(date: Date | number): void; advance(seconds: number): void };

export function fakeClock(start: Date | number = Date.UTC(2026, 10, 28, 9, 0, 0)): FakeClock {
  let now = typeof start === 'number' ? start : start.getTime();
  return {
    now: () => new Date(now),
    set: (date) => {
      now = typeof date === 'number' ? date : date.getTime();
    },
    advance: (seconds) => {
      now += seconds * 1000;
    },
  };
}
