import t from 'tap';
import { backoffSeconds, retrying } from '../../src/lib/retry.js';

t.test('retrying runs `tries` times in all, pausing twice as long each time, and throws the last error (mutation review, session 22)', async (t) => {
  const started: number[] = [];
  let n = 0;
  const err = await retrying(
    async () => {
      started.push(performance.now());
      throw new Error(`failure ${++n}`);
    },
    { tries: 3, firstDelayMs: 40 },
  ).catch((e: unknown) => e);
  t.equal(n, 3, 'three runs, no fourth');
  t.match(err, { message: 'failure 3' }, 'the last error');
  const [first, second, third] = started as [number, number, number];
  t.ok(second - first >= 35, `first pause about 40 ms (${(second - first).toFixed(0)})`);
  t.ok(third - second >= 75, `second pause about 80 ms (${(third - second).toFixed(0)})`);
});

t.test('retrying stops at once on an error `retryable` refuses, and retries any error by default (mutation review, session 22)', async (t) => {
  let runs = 0;
  const fatal = new Error('fatal');
  await t.rejects(
    retrying(
      async () => {
        runs++;
        throw fatal;
      },
      { tries: 5, firstDelayMs: 1, retryable: (e) => e !== fatal },
    ),
    fatal,
  );
  t.equal(runs, 1, 'not retried');

  let attempts = 0;
  const value = await retrying(
    async () => {
      if (++attempts < 3) throw new Error('transient');
      return 'done';
    },
    { tries: 3, firstDelayMs: 1 },
  );
  t.equal(value, 'done');
  t.equal(attempts, 3, 'retried without a `retryable`');
});

t.test('backoffSeconds: base after the first failure, doubling, capped (mutation review, session 22)', async (t) => {
  t.same([0, 1, 2, 3, 4, 5].map((f) => backoffSeconds(f, 60, 600)), [60, 60, 120, 240, 480, 600]);
  t.equal(backoffSeconds(10_000, 60, 3600), 3600, 'a huge failure count stays at the cap');
});
