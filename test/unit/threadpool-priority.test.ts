import { readdirSync } from 'node:fs';
import { getPriority } from 'node:os';
import t from 'tap';
import { lowerThreadpoolPriority } from '../../src/lib/threadpool-priority.js';

t.test('nice 0 changes nothing', async (t) => {
  t.same(await lowerThreadpoolPriority({ nice: 0, poolSize: 4 }), []);
});

t.test('lowers exactly the libuv pool threads, never the main thread', async (t) => {
  const poolSize = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
  const lowered = await lowerThreadpoolPriority({ nice: 5, poolSize });
  t.equal(lowered.length, poolSize, 'one tid per pool thread');
  t.notOk(lowered.includes(process.pid), 'not the main thread');
  for (const tid of lowered) t.equal(getPriority(tid), 5);
  t.equal(getPriority(process.pid), 0, 'the main thread keeps its priority');
  const others = readdirSync('/proc/self/task').map(Number).filter((tid) => !lowered.includes(tid));
  t.ok(others.every((tid) => getPriority(tid) === 0), 'every other thread keeps its priority');
});

t.test('a pool size that does not match: nothing is changed', async (t) => {
  t.same(await lowerThreadpoolPriority({ nice: 7, poolSize: 64 }), []);
});
