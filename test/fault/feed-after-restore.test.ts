import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { openDatabase } from '../../src/db/client.js';
import { FEED_START, currentFeedEnd, readFeed } from '../../src/modules/events/event-feed.js';
import { sha256Hex } from '../../src/lib/tokens.js';
import { cli, cliEnv } from '../helpers/cli.js';
import { spendTransactionIds } from '../helpers/feed-reader.js';
import { adminWorld } from '../integration/organization/helpers.js';
import { PG_BIN, startPrivatePostgres } from './private-postgres.js';

/**
 * docs/operations.md "Backups" (found by the events review, session 31): a logical backup (pg_dump)
 * restored into another cluster — a new server, a managed PostgreSQL, a major-version move by dump —
 * starts that cluster's transaction counter low, while the restored audit rows and every reader's
 * cursor keep the old cluster's transaction ids. New events sorted before them, and GET /v1/events
 * ("each event comes once, none skipped") and the webhooks handed out nothing new, silently — the
 * erasures the runbook repeats after a restore among them. The service notices at start (the server
 * and every CLI command) and moves the feed's clock ahead.
 */
const SECRET = 'feed-client-secret-for-tests';
const BASIC = `Basic ${Buffer.from(`cso:${SECRET}`).toString('base64')}`;
const FEED_ENV = { SERVICE_CLIENTS: `cso:${sha256Hex(SECRET)}`, EVENT_FEED_CLIENTS: 'cso' };

t.test('after a pg_dump restore into another cluster, readers get the events written there, also readers ahead of the backup', async (t) => {
  const w = await adminWorld(t, FEED_ENV);
  const feed = async (cursor: string | null) => {
    const res = await w.request<{ items: { type: string }[]; nextCursor: string | null }>({
      url: `/v1/events${cursor ? `?cursor=${cursor}` : ''}`,
      headers: { authorization: BASIC },
    });
    t.equal(res.status, 200);
    return res.body;
  };
  /**
   * Reads to the end, the cursor after the last event: until every invitation written so far was
   * read and a page comes back empty (a transaction open elsewhere on the server holds the feed back a while).
   */
  const readToEnd = async () => {
    const { rows } = await w.app.ctx.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_events WHERE type = 'user.invited'`);
    let cursor: string | null = null;
    let invitations = 0;
    for (let i = 0; i < 500; i++) {
      const page = await feed(cursor);
      cursor = page.nextCursor;
      invitations += page.items.filter((e) => e.type === 'user.invited').length;
      if (cursor && page.items.length === 0 && invitations === rows[0]!.n) return cursor;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('the feed did not come to an end');
  };
  const invite = async (email: string) => {
    const res = await w.request({ method: 'POST', url: '/v1/organization/users', token: w.adminA.token, body: { email, name: 'Neu Person' } });
    t.equal(res.status, 201);
  };

  await invite('before-backup@alpha.test');
  const atBackup = await readToEnd();
  const beforeBackup = (await readFeed(w.app.ctx.pool, { cursor: FEED_START, limit: 1000 })).items.map((e) => e.type);
  t.ok(beforeBackup.includes('user.invited'));
  const dump = execFileSync(`${PG_BIN}/pg_dump`, ['-Fc', '-d', w.databaseUrl], { maxBuffer: 1 << 28 });
  // Events after the backup, read by a reader: they are lost with the old cluster, its cursor is not.
  // The old cluster goes on after the backup (other work, sign-ins): its transaction ids run ahead of the restored
  // events by more than the restored cluster's first few transactions (RESTORE_MARGIN is the room for them).
  await spendTransactionIds(w.app.ctx.pool, 300);
  await invite('after-backup@alpha.test');
  const aheadOfBackup = await readToEnd();
  t.not(aheadOfBackup, atBackup);

  const restoredUrl = await (await startPrivatePostgres(t)).createDatabase(`restored_${randomBytes(4).toString('hex')}`);
  execFileSync(`${PG_BIN}/pg_restore`, ['--no-owner', '-d', restoredUrl], { input: dump });
  const restored = openDatabase(restoredUrl, { max: 2 });
  t.teardown(() => restored.close());
  const eventsFromStart = async () => (await readFeed(restored.pool, { cursor: FEED_START, limit: 1000 })).items.map((e) => e.type);

  // The operator's first command on the restored database: the CLI opens it as the server does.
  const created = await cli(
    ['create-organization', '--customer-number', 'K-2002', '--name', 'Gamma Reseller', '--admin-email', 'gamma@gamma.test', '--admin-name', 'Gina Gamma'],
    { ...cliEnv(restoredUrl), LOG_LEVEL: 'info' },
  );
  t.equal(created.code, 0, created.stderr);
  t.match(created.stdout + created.stderr, /restored/i, 'the move of the feed clock is logged');

  for (const [cursor, who] of [
    [atBackup, 'a reader at the backup'],
    [aheadOfBackup, 'a reader ahead of the backup'],
  ] as const) {
    const page = await readFeed(restored.pool, { cursor, limit: 100 });
    t.same(
      page.items.map((e) => e.type),
      ['organization.created', 'user.invited'],
      `${who} gets what was written after the restore`,
    );
  }
  t.same(await eventsFromStart(), [...beforeBackup, 'organization.created', 'user.invited'], 'a new reader: the restored events, then the new ones, in order');

  // A webhook added now starts at the feed's end (webhook-delivery.ts): on the feed's clock, not before the restored events.
  t.same((await readFeed(restored.pool, { cursor: await currentFeedEnd(restored.pool), limit: 100 })).items, [], 'the end of the feed is after every event, restored or new');

  // A second start finds nothing to move: the clock moves once per restore.
  const shift = async () => (await restored.pool.query<{ shift: string }>('SELECT shift::text AS shift FROM feed_clock')).rows[0]?.shift;
  const before = await shift();
  const again = await cli(['list-webhooks'], { ...cliEnv(restoredUrl), LOG_LEVEL: 'info' });
  t.equal(again.code, 0, again.stderr);
  t.notMatch(again.stdout + again.stderr, /restored/i);
  t.equal(await shift(), before);
});
