import t from 'tap';
import { LOCKOUT_THRESHOLD, lockoutSeconds, secondsUntil } from '../../src/lib/lockout.js';

t.test('the lock schedule: 15 minutes, doubling, capped at 24 hours (mutation review, session 22)', async (t) => {
  t.equal(LOCKOUT_THRESHOLD, 10);
  t.same([0, 1, 2, 3, 4, 5, 6, 7, 8, 20, 1000].map(lockoutSeconds), [900, 1800, 3600, 7200, 14400, 28800, 57600, 86400, 86400, 86400, 86400]);
  t.equal(lockoutSeconds(-3), 900, 'a negative count is the first lock');
});

t.test('Retry-After of a running lock is rounded up and never 0 (mutation review, session 22)', async (t) => {
  const now = new Date('2026-01-01T00:00:00.000Z');
  const after = (ms: number) => new Date(now.getTime() + ms);
  t.equal(secondsUntil(after(900_000), now), 900);
  t.equal(secondsUntil(after(899_001), now), 900, 'a part second counts as a whole one');
  t.equal(secondsUntil(after(200), now), 1, 'less than a second left: 1, not 0');
  t.equal(secondsUntil(after(0), now), 1, 'ending now: 1');
  t.equal(secondsUntil(after(-5_000), now), 1, 'already over: still 1, never 0 or negative');
});
