import t from 'tap';
import { openDatabase } from '../../src/db/client.js';
import { readFeed } from '../../src/modules/events/event-feed.js';
import { cli, cliEnv } from '../helpers/cli.js';
import { readFeedUntil, spendTransactionIds } from '../helpers/feed-reader.js';
import { startPrivatePostgres } from './private-postgres.js';

/**
 * Found by the attacker's second read of session 31: a physical backup (a copy of the data
 * directory; the same holds for a base backup restored with point-in-time recovery to a moment
 * before the failure) keeps the cluster's system identifier, but its transaction counter is the
 * one of the moment it was taken. A reader that read events written after that moment holds a
 * cursor ahead of the restored counter: every event written after the restore sorted before its
 * cursor, and it got nothing, silently. Such a cursor is refused now (409 feed_cursor_ahead, saying
 * what to do), and a reader that starts again without a cursor gets everything, the new events too.
 */
t.test('after a physical backup is restored, a reader that read past the backup is told so (feed_cursor_ahead) and gets the new events when it reads again', async (t) => {
  const cluster = await startPrivatePostgres(t, { nextXid: 5_000_000n });
  const url = await cluster.createDatabase('physical');
  const env = { ...cliEnv(url), LOG_LEVEL: 'info' };
  const migrated = await cli(['migrate'], env);
  t.equal(migrated.code, 0, migrated.stderr);
  const org = (n: number) =>
    cli(['create-organization', '--customer-number', `K-${n}`, '--name', `Org ${n}`, '--admin-email', `a${n}@org${n}.test`, '--admin-name', `Admin ${n}`], env);
  t.equal((await org(1001)).code, 0);

  // The physical backup: the data directory copied with the server stopped.
  await cluster.stop();
  await cluster.runAsOwner('cp', ['-a', cluster.dataDir, `${cluster.dataDir}.backup`]);
  await cluster.start();

  // The service goes on: transactions, another organisation, a reader reads it.
  let db = openDatabase(url, { max: 2 });
  await spendTransactionIds(db.pool, 3000);
  t.equal((await org(1002)).code, 0);
  const { cursor, read } = await readFeedUntil(db.pool, 'organization.created', 2, 200);
  t.equal(read, 2, 'the reader read past the backup');
  await db.close();

  // Disaster: the backup is restored.
  await cluster.stop('immediate');
  await cluster.runAsOwner('rm', ['-rf', cluster.dataDir]);
  await cluster.runAsOwner('mv', [`${cluster.dataDir}.backup`, cluster.dataDir]);
  await cluster.start();

  const after = await org(1003);
  t.equal(after.code, 0, after.stderr);
  db = openDatabase(url, { max: 2 });
  t.teardown(() => db.close());
  await t.rejects(readFeed(db.pool, { cursor, limit: 100 }), { code: 'feed_cursor_ahead', status: 409 }, 'the cursor from before the restore is refused, not answered with nothing');
  const again = await readFeed(db.pool, { limit: 100 });
  t.same(
    again.items.filter((e) => e.type === 'organization.created').length,
    2,
    'read again without a cursor: the restored organisation and the one created after the restore',
  );
});
