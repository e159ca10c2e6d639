import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { startPeriodicTask } from '../../src/lib/periodic-task.js';

const HOUR = 3_600_000;

t.test('each pass sets the delay to the next; a failing pass is reported and the loop goes on', async (t) => {
  const seen: string[] = [];
  let n = 0;
  const task = startPeriodicTask({
    firstDelayMs: 0,
    async pass() {
      n += 1;
      seen.push(`pass ${n}`);
      if (n === 2) throw new Error('database down');
      return n < 4 ? 1 : HOUR;
    },
    failed(err) {
      seen.push(`failed: ${(err as Error).message}`);
      return 1;
    },
  });
  t.teardown(() => task.stop());
  while (n < 4) await sleep(5);
  await sleep(30);
  t.same(seen, ['pass 1', 'pass 2', 'failed: database down', 'pass 3', 'pass 4'], 'after pass 4 the next is an hour away');
});

t.test('stop() waits for the pass in flight, which sees stopping(); nothing runs after it', async (t) => {
  let passes = 0;
  let sawStopping = false;
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const task = startPeriodicTask({
    firstDelayMs: 0,
    async pass(stopping) {
      passes += 1;
      await gate;
      sawStopping = stopping();
      return 0;
    },
    failed: () => 0,
  });
  while (passes === 0) await sleep(1);
  let stopped = false;
  const stopping = task.stop().then(() => (stopped = true));
  await sleep(20);
  t.notOk(stopped, 'stop() has not returned while the pass runs');
  release();
  await stopping;
  t.ok(sawStopping, 'the pass was told to stop');
  task.wake();
  await sleep(20);
  t.equal(passes, 1, 'neither the planned next pass nor wake() runs after stop()');
});

t.test('wake() runs a pass now when idle and is ignored while one runs', async (t) => {
  let passes = 0;
  let release: (() => void) | undefined;
  const task = startPeriodicTask({
    firstDelayMs: HOUR,
    async pass() {
      passes += 1;
      await new Promise<void>((resolve) => (release = resolve));
      return HOUR;
    },
    failed: () => HOUR,
  });
  t.teardown(async () => {
    release?.();
    await task.stop();
  });
  await sleep(20);
  t.equal(passes, 0, 'the first pass is an hour away');
  task.wake();
  await sleep(20);
  t.equal(passes, 1, 'woken');
  task.wake();
  task.wake();
  await sleep(20);
  t.equal(passes, 1, 'no second pass beside the running one');
  release?.();
  await sleep(20);
  t.equal(passes, 1, 'the next pass is where the finished one put it, an hour away');
});
