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

  /** Starts one more instance's heartbeat and waits until its row is there; its warnings come back. */
  let running = 0;
  const instance = async (localRateLimits: boolean): Promise<Warning[]> => {
    const { warnings, log } = capture();
    const heartbeat = startInstanceHeartbeat(database.pool, keyring, log, { localRateLimits });
    t.teardown(() => heartbeat.stop());
    await registered(++running);
    await sleep(100);
    return warnings;
  };

  t.same(await instance(true), [], 'alone: nothing to warn about');
  t.same(await instance(false), [], 'an instance whose limits are shared (REDIS_URL) does not warn');
  const warnings = await instance(true);
  t.equal(warnings.length, 1, 'one beside others warns');
  t.same(warnings[0]?.obj, { otherInstances: 2 });
  t.match(warnings[0]?.msg, /REDIS_URL is unset.*set REDIS_URL on all of them/);
});
