import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { openDatabase } from '../../../src/db/client.js';
import { parseKeyring } from '../../../src/lib/secret-box.js';
import { startInstanceHeartbeat } from '../../../src/modules/instances/instance-registry.js';
import { createTestDatabase } from '../../helpers/database.js';
import { TEST_ENCRYPTION_KEYS } from '../../helpers/keys.js';

/**
 * Found by session 20's multi-instance review: without REDIS_URL each instance counts rate limits
 * in its own memory (docs/operations.md "Where the counters live"), so three instances let three
 * times the limits through, and nothing told the operator that several instances were running so.
 */

type Warning = { obj: object; msg: string };
const capture = () => {
  const warnings: Warning[] = [];
  return { warnings, log: { warn: (obj: object, msg: string) => warnings.push({ obj, msg }) } };
};

t.test('an instance counting rate limits in memory warns once other instances share its database', async (t) => {
  const { url } = await createTestDatabase(t);
  const database = openDatabase(url, { max: 3 });
  t.teardown(() => database.close());
  const keyring = parseKeyring(TEST_ENCRYPTION_KEYS);
  const registered = async (n: number) => {
    while ((await database.pool.query('SELECT count(*)::int AS n FROM service_instances')).rows[0].n < n) await sleep(20);
  };

  const first = capture();
  const a = startInstanceHeartbeat(database.pool, keyring, first.log, { localRateLimits: true });
  t.teardown(() => a.stop());
  await registered(1);
  await sleep(100);
  t.same(first.warnings, [], 'alone: nothing to warn about');

  const withRedis = capture();
  const b = startInstanceHeartbeat(database.pool, keyring, withRedis.log, { localRateLimits: false });
  t.teardown(() => b.stop());
  await registered(2);
  await sleep(100);
  t.same(withRedis.warnings, [], 'an instance whose limits are shared (REDIS_URL) does not warn');

  const second = capture();
  const c = startInstanceHeartbeat(database.pool, keyring, second.log, { localRateLimits: true });
  t.teardown(() => c.stop());
  await registered(3);
  await sleep(100);
  t.equal(second.warnings.length, 1, 'one beside others warns');
  t.same(second.warnings[0]?.obj, { otherInstances: 2 });
  t.match(second.warnings[0]?.msg, /REDIS_URL is unset.*set REDIS_URL on all of them/);
});
