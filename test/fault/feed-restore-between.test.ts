import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { openDatabase } from '../../src/db/client.js';
import { readFeed } from '../../src/modules/events/event-feed.js';
import { cli, cliEnv } from '../helpers/cli.js';
import { readFeedUntil, spendTransactionIds } from '../helpers/feed-reader.js';
import { adminWorld } from '../integration/organization/helpers.js';
import { PG_BIN, startPrivatePostgres } from './private-postgres.js';

/**
 * Found by the attacker's read of session 31: a logical backup restored into a cluster whose
 * transaction counter is past the backup's newest event but behind where a reader had read on the
 * old cluster (a server in use, a managed PostgreSQL) looked like no restore at all — the newest
 * event older than the next transaction — and that reader skipped every event written there until
 * the new counter passed its cursor. The service records the cluster's system identifier when it
 * starts, and a database found in another cluster moves the feed's clock.
 */
t.test('a restore into a cluster whose counter lies between the backup and a reader: the reader gets the new events', async (t) => {
  const w = await adminWorld(t);
  const pool = w.app.ctx.pool;
  const invite = async (email: string) =>
    t.equal((await w.request({ method: 'POST', url: '/v1/organization/users', token: w.adminA.token, body: { email, name: 'Neu Person' } })).status, 201);
  // The service ran on this database (every server and CLI start records the cluster).
  t.equal((await cli(['list-webhooks'], cliEnv(w.databaseUrl))).code, 0);
  await invite('before-backup@alpha.test');
  const dump = execFileSync(`${PG_BIN}/pg_dump`, ['-Fc', '-d', w.databaseUrl], { maxBuffer: 1 << 28 });
  const newest = BigInt((await pool.query<{ m: string }>('SELECT max(txid)::text AS m FROM audit_events')).rows[0]!.m);
  // The old cluster goes on; a reader reads an event the restore will not have.
  await spendTransactionIds(pool, 2000);
  await invite('after-backup@alpha.test');
  const invitations = (await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_events WHERE type = 'user.invited'`)).rows[0]!.n;
  // Until the last invitation is read.
  const { cursor, read } = await readFeedUntil(pool, 'user.invited', invitations, 500);
  t.equal(read, invitations, 'the reader read past the backup');

  // The new cluster counts on from just past the backup's newest event.
  const cluster = await startPrivatePostgres(t, { nextXid: newest + 20n });
  const restoredUrl = await cluster.createDatabase(`restored_${randomBytes(4).toString('hex')}`);
  execFileSync(`${PG_BIN}/pg_restore`, ['--no-owner', '--single-transaction', '-d', restoredUrl], { input: dump });
  const created = await cli(
    ['create-organization', '--customer-number', 'K-2002', '--name', 'Gamma Reseller', '--admin-email', 'gamma@gamma.test', '--admin-name', 'Gina Gamma'],
    { ...cliEnv(restoredUrl), LOG_LEVEL: 'info' },
  );
  t.equal(created.code, 0, created.stderr);
  t.match(created.stdout + created.stderr, /another PostgreSQL cluster/, 'the move is logged with its reason');

  const restored = openDatabase(restoredUrl, { max: 2 });
  t.teardown(() => restored.close());
  const page = await readFeed(restored.pool, { cursor, limit: 100 });
  t.same(page.items.map((e) => e.type), ['organization.created', 'user.invited'], 'the reader ahead of the backup gets what was written after the restore');
});
