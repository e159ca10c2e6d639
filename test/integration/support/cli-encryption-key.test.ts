import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import t from 'tap';
import { buildApp } from '../../../src/app.js';
import { openDatabase } from '../../../src/db/client.js';
import { generateKey, parseKeyring } from '../../../src/lib/secret-box.js';
import { buildTestApp, type TestApp } from '../../helpers/app.js';
import { cli, cliEnv } from '../../helpers/cli.js';
import { createUser } from '../../helpers/factories.js';

/**
 * `rotate-encryption-key` against running servers (found by session 14's review of secrets at rest):
 * run with a key the servers do not hold (step 1 of the rotation skipped, a wrong env file), it
 * re-sealed every TOTP secret and signing key under it — every TOTP login then failed with 500 and
 * no instance could load its signing key until they got the key. Every running instance now
 * records the key ids it holds (service_instances, a heartbeat), and the command refuses while one
 * lacks its current key.
 */

type Row = { id: string; hostname: string; pid: number; encryption_key_ids: string[]; current_encryption_key_id: string; seen_at: Date };
const instances = (test: TestApp) => test.app.ctx.pool.query<Row>('SELECT * FROM service_instances ORDER BY started_at').then((r) => r.rows);

/** The app's first heartbeat is written right after it is ready. */
async function heartbeatOf(test: TestApp): Promise<Row[]> {
  for (let i = 0; i < 100; i++) {
    const rows = await instances(test);
    if (rows.length > 0) return rows;
    await sleep(20);
  }
  throw new Error('no heartbeat');
}

const factorKey = async (test: TestApp, userId: string) =>
  (await test.app.ctx.db.totpFactor.findFirstOrThrow({ where: { userId, status: 'ACTIVE' } })).encryptionKeyId;
const rotationAudits = (test: TestApp) => test.app.ctx.db.auditEvent.findMany({ where: { type: 'encryption_key.rotated' } });

t.test('refused while a running instance lacks the new key; --force goes ahead and is audited as such', async (t) => {
  const test = await buildTestApp(t);
  const { user } = await createUser(test.app.ctx.db, test.app);
  const [row, ...others] = await heartbeatOf(test);
  t.same(others, []);
  t.match(row, { hostname: hostname(), pid: process.pid, encryption_key_ids: ['test-1'], current_encryption_key_id: 'test-1' }, 'the instance says which keys it holds');

  const env = cliEnv(test.databaseUrl);
  const withNext = { ...env, ENCRYPTION_KEYS: `${env.ENCRYPTION_KEYS},next-1:${generateKey()}` };
  const refused = await cli(['rotate-encryption-key'], withNext);
  t.equal(refused.code, 1, refused.stderr);
  t.match(refused.stderr, /refused: 1 running server instance\(s\) do not seal under key next-1/);
  t.match(refused.stderr, new RegExp(`${hostname()} \\(pid ${process.pid}, .*\\): does not hold next-1 \\(holds test-1\\)`), 'names the instance');
  t.equal(refused.stdout, '');
  t.equal(await factorKey(test, user.id), 'test-1', 'nothing re-sealed');
  t.same(await rotationAudits(test), [], 'nothing audited: nothing happened');

  const forced = await cli(['rotate-encryption-key', '--force', '--reason', 'OPS-9 instance is being retired'], withNext);
  t.equal(forced.code, 0, forced.stderr);
  t.match(forced.stderr, /--force: sealing under next-1, which 1 running instance\(s\) do not seal under/);
  t.equal(await factorKey(test, user.id), 'next-1');
  const [audit] = await rotationAudits(test);
  t.match(audit?.details, { currentKeyId: 'next-1', forcedPastInstances: 1, cli: { reason: 'OPS-9 instance is being retired' } });
});

t.test('with the servers’ key it runs; instances gone (shut down, or silent for long) do not count', async (t) => {
  const test = await buildTestApp(t);
  await heartbeatOf(test);
  const env = cliEnv(test.databaseUrl);

  // A second instance on the same database, shut down cleanly: its row goes with it.
  const database = openDatabase(test.databaseUrl, { max: 2 });
  const second = await buildApp({ config: test.config, database, keyring: parseKeyring(env.ENCRYPTION_KEYS!), logger: pino({ level: 'silent' }) });
  await second.ready();
  for (let i = 0; i < 100 && (await instances(test)).length < 2; i++) await sleep(20);
  t.equal((await instances(test)).length, 2, 'two instances running');
  await second.close();
  await database.close();
  t.equal((await instances(test)).length, 1, 'a clean shutdown removes its row');

  // One that died without shutting down, last seen five minutes ago, with an old keyring.
  await test.app.ctx.pool.query(
    `INSERT INTO service_instances (id, hostname, pid, started_at, seen_at, encryption_key_ids, current_encryption_key_id)
     VALUES (gen_random_uuid(), 'crashed-host', 1, now() - interval '1 hour', now() - interval '5 minutes', ARRAY['old-0'], 'old-0')`,
  );
  const run = await cli(['rotate-encryption-key'], env);
  t.equal(run.code, 0, run.stderr);
  t.match(run.stderr, /^1 running server instance\(s\) seal under key test-1$/m);
  t.match(JSON.parse(run.stdout), { currentKeyId: 'test-1', failures: [] });
  const [audit] = await rotationAudits(test);
  t.notOk((audit?.details as { forcedPastInstances?: number }).forcedPastInstances, 'not forced');
});

t.test('an instance that holds the new key but still seals under the old one (ENCRYPTION_KEY_CURRENT: step 2 missed) also refuses it', async (t) => {
  const test = await buildTestApp(t);
  await heartbeatOf(test);
  const env = cliEnv(test.databaseUrl);
  const keys = `${env.ENCRYPTION_KEYS},next-1:${generateKey()}`;
  // A second instance after step 1 only: both keys, the old one still current.
  const database = openDatabase(test.databaseUrl, { max: 2 });
  const lagging = await buildApp({ config: test.config, database, keyring: parseKeyring(keys, 'test-1'), logger: pino({ level: 'silent' }) });
  await lagging.ready();
  t.teardown(async () => {
    await lagging.close();
    await database.close();
  });
  for (let i = 0; i < 100 && (await instances(test)).length < 2; i++) await sleep(20);

  const run = await cli(['rotate-encryption-key'], { ...env, ENCRYPTION_KEYS: keys });
  t.equal(run.code, 1, run.stderr);
  t.match(run.stderr, /refused: 2 running server instance\(s\) do not seal under key next-1/);
  t.match(run.stderr, /holds next-1 but seals under test-1 \(ENCRYPTION_KEY_CURRENT\)/, 'says what the lagging one lacks');
  t.match(run.stderr, /does not hold next-1 \(holds test-1\)/, 'and the one without the key');
  t.same(await rotationAudits(test), []);
});

t.test('a command that queues mail under a key none of the running servers holds is refused, nothing written (newcomer review, session 25)', async (t) => {
  const test = await buildTestApp(t);
  await heartbeatOf(test);
  const env = cliEnv(test.databaseUrl);
  const foreign = { ...env, ENCRYPTION_KEYS: `other-1:${generateKey()}` };
  const mailsBefore = await test.app.ctx.db.mailOutbox.count();

  const created = await cli(['create-support-user', '--email', 'ops@shop.test', '--name', 'Olga Ops'], foreign);
  t.equal(created.code, 78, created.stderr);
  t.match(created.stderr, /refused: none of the 1 running server instance\(s\) holds encryption key other-1/);
  t.match(created.stderr, /does not hold other-1 \(holds test-1\)/, 'names the instance and what it holds');
  t.equal(created.stdout, '', 'no link printed');
  t.equal(await test.app.ctx.db.user.count({ where: { email: 'ops@shop.test' } }), 0, 'no user');
  t.equal(await test.app.ctx.db.mailOutbox.count(), mailsBefore, 'no mail the servers could not open');

  const organization = await cli(['create-organization', '--customer-number', 'K-7', '--name', 'Kappa AG', '--admin-email', 'k@kappa.test', '--admin-name', 'Kai Kappa'], foreign);
  t.equal(organization.code, 78, organization.stderr);
  t.equal(await test.app.ctx.db.organization.count({ where: { customerNumber: 'K-7' } }), 0);

  // Reading and deleting seal nothing: they run with any key.
  t.equal((await cli(['list-support-users'], foreign)).code, 0);
  t.equal((await cli(['purge-ended'], foreign)).code, 0);

  const withServersKey = await cli(['create-support-user', '--email', 'ops@shop.test', '--name', 'Olga Ops'], env);
  t.equal(withServersKey.code, 0, withServersKey.stderr);
  t.equal(await test.app.ctx.db.mailOutbox.count(), mailsBefore + 1, 'mailed');
});
