import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { sha256Hex } from '../../../src/lib/tokens.js';
import { FEED_EVENT_TYPES } from '../../../src/modules/events/event-feed.js';
import { encodeCursor } from '../../../src/modules/organization/pagination.js';
import { openClient } from '../../helpers/row-locks.js';
import { adminWorld, type AdminWorld } from '../organization/helpers.js';

/**
 * GET /v1/events: users and organisations that changed, for the service clients allowed to read it,
 * in transaction order, ids only; a change that commits late is never skipped by a reader's cursor.
 */

const SECRET = 'feed-client-secret-for-tests';
const BASIC = `Basic ${Buffer.from(`cso:${SECRET}`).toString('base64')}`;
type Page = { items: { id: string; type: string; userId: string | null; organizationId: string | null }[]; nextCursor: string | null };

const OTHER = `Basic ${Buffer.from(`shop:${SECRET}`).toString('base64')}`;
const FEED_ENV = { SERVICE_CLIENTS: `cso:${sha256Hex(SECRET)},shop:${sha256Hex(SECRET)}:webshop`, EVENT_FEED_CLIENTS: 'cso' };

const feed = async (w: AdminWorld, query = '') => w.request<Page>({ url: `/v1/events${query}`, headers: { authorization: BASIC } });

/**
 * Polls from `cursor` until `count` events arrived: a transaction open anywhere on the test server
 * (other test files run beside this one) holds the feed back until it ends.
 */
async function collect(w: AdminWorld, count: number, cursor: string | null = null) {
  const items: Page['items'] = [];
  for (let i = 0; i < 600 && items.length < count; i++) {
    const res = await feed(w, cursor ? `?cursor=${cursor}` : '');
    items.push(...res.body.items);
    cursor = res.body.nextCursor;
    if (items.length < count) await sleep(50);
  }
  return { items, cursor };
}

t.test('the feed hands out changes of users and organisations in order, ids only, each once; sign-ins and reads are not in it', async (t) => {
  const w = await adminWorld(t, FEED_ENV);
  const { request, adminA, support, app } = w;
  const leaver = await w.member(w.orgA.id, { name: 'Lena Leaver', email: 'lena@alpha.test' });
  // What happened before (the world's users were written directly) is not what this test follows.
  const before = await feed(w);

  const invited = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'neu@alpha.test', name: 'Neu' } });
  t.equal(invited.status, 201);
  await w.tokenFor(leaver.user); // a sign-in: not in the feed
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${leaver.user.id}/block`, token: adminA.token })).status, 200);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${leaver.user.id}/erase`, token: adminA.token })).status, 204);
  t.equal((await request({ method: 'POST', url: `/v1/support/organizations/${w.orgB.id}/suspend`, token: support.token, body: { reason: 'Contract ended' } })).status, 200);

  const { items, cursor } = await collect(w, 5, before.body.nextCursor);
  const relevant = items.filter((e) => e.organizationId === w.orgA.id || e.organizationId === w.orgB.id);
  t.same(
    relevant.map((e) => [e.type, e.userId]),
    [
      ['user.invited', invited.body.id],
      ['user.blocked', leaver.user.id],
      ['user.erased', leaver.user.id],
      ['user.blocked', w.adminB.user.id],
      ['organization.suspended', null],
    ],
    'in transaction order (within one, as written), ids only',
  );
  t.notMatch(JSON.stringify(items), /lena|Leaver|neu@|Contract ended/i, 'no names, addresses or reasons');

  // Polling on: nothing new, the same cursor back.
  const idle = await feed(w, `?cursor=${cursor}`);
  t.same(idle.body, { items: [], nextCursor: cursor });

  // Page by page: the same events, none twice.
  const pages: string[] = [];
  let next: string | null = before.body.nextCursor;
  for (let i = 0; i < 10; i++) {
    const res = await feed(w, `?limit=2${next ? `&cursor=${next}` : ''}`);
    pages.push(...res.body.items.map((e) => e.id));
    if (res.body.items.length === 0) break;
    next = res.body.nextCursor;
  }
  t.same(pages, items.map((e) => e.id), 'pages of two give the same sequence');
  t.equal(new Set(pages).size, pages.length);

  // The index covers exactly the feed's types (the sign-in path's rows cost it nothing).
  const [index] = await app.ctx.db.$queryRaw<{ indexdef: string }[]>`SELECT indexdef FROM pg_indexes WHERE indexname = 'audit_events_feed'`;
  const indexed = [...index!.indexdef.matchAll(/'([a-z_.]+)'::text/g)].map((m) => m[1]).sort();
  t.same(indexed, [...FEED_EVENT_TYPES].sort(), 'the partial index lists the same types as the code');
  const listed = await app.ctx.db.$queryRaw<{ type: string }[]>`SELECT type FROM feed_event_types ORDER BY type`;
  t.same(listed.map((r) => r.type), [...FEED_EVENT_TYPES].sort(), 'the table feed_event_types lists the same types as the code');
});

/** Resolves once every audit row of `user` of this type is older than every running transaction (a feed reader would see it). */
async function untilPastHorizon(w: AdminWorld, userId: string, type: string) {
  for (let i = 0; i < 600; i++) {
    const [row] = await w.app.ctx.db.$queryRawUnsafe<{ seen: boolean }[]>(
      `SELECT bool_and(txid < pg_snapshot_xmin(pg_current_snapshot())) AS seen FROM audit_events WHERE subject_user_id = $1::uuid AND type = $2`,
      userId,
      type,
    );
    if (row?.seen) return;
    await sleep(50);
  }
  throw new Error(`${type} of ${userId} never passed the feed's horizon`);
}

t.test('during a rolling upgrade, an instance stops the feed before an event of a type only the later release knows: its cursor never moves past it', async (t) => {
  const w = await adminWorld(t, FEED_ENV);
  const { request, adminA, app } = w;
  const { cursor: start } = await collect(w, 0, (await feed(w)).body.nextCursor);
  const first = await w.member(w.orgA.id, { name: 'First' });
  const later = await w.member(w.orgA.id, { name: 'Later' });
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${first.user.id}/block`, token: adminA.token })).status, 200);
  // The later release's migration adds its type to the feed; one of its instances writes such an event...
  await app.ctx.db.$executeRaw`INSERT INTO feed_event_types (type) VALUES ('user.later_kind')`;
  await app.ctx.db.$executeRaw`INSERT INTO audit_events (id, type, subject_user_id, organization_id) VALUES (gen_random_uuid(), 'user.later_kind', ${first.user.id}::uuid, ${w.orgA.id}::uuid)`;
  // ...and then this release writes one it knows.
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${later.user.id}/block`, token: adminA.token })).status, 200);
  await untilPastHorizon(w, later.user.id, 'user.blocked');

  const { items, cursor } = await collect(w, 1, start);
  t.same(items.map((e) => [e.type, e.userId]), [['user.blocked', first.user.id]], 'the events before it, not the later type, and nothing after it');
  const again = await feed(w, `?cursor=${cursor}`);
  t.same(again.body, { items: [], nextCursor: cursor }, 'polling on: the cursor stays before the event it cannot describe (an instance of the later release hands it out)');
  const paged = await feed(w, `?limit=1${start ? `&cursor=${start}` : ''}`);
  t.same(paged.body.items.map((e) => e.userId), [first.user.id], 'page by page the same');

  // A type this release knows that the table does not list (an older release's rows) does not stop it.
  await app.ctx.db.$executeRaw`DELETE FROM feed_event_types WHERE type = 'user.later_kind'`;
  const after = await collect(w, 1, cursor);
  t.same(after.items.map((e) => [e.type, e.userId]), [['user.blocked', later.user.id]], 'once no later type is listed, the feed goes on');
});

t.test('a change whose transaction started first but commits last is not skipped: the feed waits for it', async (t) => {
  const w = await adminWorld(t, FEED_ENV);
  const { request, adminA } = w;
  const slow = await w.member(w.orgA.id, { name: 'Slow' });
  const fast = await w.member(w.orgA.id, { name: 'Fast' });
  const { cursor: start } = await collect(w, 0, (await feed(w)).body.nextCursor);

  // A transaction writes an event (it has its transaction id now) and stays open...
  const client = await openClient(t, w.databaseUrl);
  await client.query('BEGIN');
  await client.query(
    `INSERT INTO audit_events (id, type, subject_user_id, organization_id, details) VALUES (gen_random_uuid(), 'user.renamed', $1, $2, '{}')`,
    [slow.user.id, w.orgA.id],
  );
  // ...while a later one commits.
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${fast.user.id}/block`, token: adminA.token })).status, 200);

  const held = await feed(w, start ? `?cursor=${start}` : '');
  t.same(held.body.items, [], 'nothing after the open transaction is handed out yet');
  t.equal(held.body.nextCursor, start, 'the cursor stays');

  await client.query('COMMIT');
  const { items } = await collect(w, 2, start);
  t.same(items.map((e) => [e.type, e.userId]), [
    ['user.renamed', slow.user.id],
    ['user.blocked', fast.user.id],
  ], 'both, the one that started first first');
});

t.test('the feed is for service clients only; bad cursors and parameters are refused', async (t) => {
  const w = await adminWorld(t, FEED_ENV);
  t.equal((await w.request({ url: '/v1/events' })).status, 401, 'anonymous');
  t.equal((await w.request({ url: '/v1/events', token: w.support.token })).status, 401, 'a user (even support) is no service client');
  t.equal((await w.request({ url: '/v1/events', headers: { authorization: `Basic ${Buffer.from('cso:wrong').toString('base64')}` } })).status, 401);
  const other = await w.request({ url: '/v1/events', headers: { authorization: OTHER } });
  t.equal(other.status, 403, 'a service client not in EVENT_FEED_CLIENTS (introspection only)');
  t.equal(other.body.code, 'event_feed_not_allowed');
  for (const [label, query, code] of [
    ['a forged cursor', `?cursor=${encodeCursor(['x1', '0190a0a0-0000-7000-8000-000000000000'])}`, 'invalid_cursor'],
    ['a transaction id out of range', `?cursor=${encodeCursor(['18446744073709551616', '0190a0a0-0000-7000-8000-000000000000'])}`, 'invalid_cursor'],
    ['not a cursor', '?cursor=bm90LWEtY3Vyc29y', 'invalid_cursor'],
    ['limit 0', '?limit=0', 'validation_failed'],
    ['an unknown parameter', '?type=user.blocked', 'validation_failed'],
  ] as const) {
    const res = await feed(w, query);
    t.equal(res.status, 400, label);
    t.equal(res.body && (res.body as unknown as { code: string }).code, code, label);
  }
  // A cursor past the feed's horizon comes from before the database went back in time (a physical
  // restore): refused, saying what to do, not answered with nothing for ever (attacker's read, session 31).
  const ahead = await feed(w, `?cursor=${encodeCursor(['18446744073709551000', '0190a0a0-0000-7000-8000-000000000000'])}`);
  const problem = ahead.body as unknown as { code: string; detail: string };
  t.same([ahead.status, problem.code], [409, 'feed_cursor_ahead']);
  t.match(problem.detail, /restored to an earlier point.*without a cursor/);
});

t.test('transaction ids are ordered as numbers, not as text: a page boundary at 999 → 1000 skips and repeats nothing', async (t) => {
  const w = await adminWorld(t, FEED_ENV);
  const u = await w.member(w.orgA.id);
  // Rows of long-finished transactions (below any real one of the test server), across a power of ten.
  for (const txid of ['998', '999', '1000', '1001']) {
    await w.app.ctx.db.$executeRawUnsafe(
      `INSERT INTO audit_events (id, type, subject_user_id, organization_id, details, txid) VALUES (gen_random_uuid(), 'user.blocked', $1, $2, $3, $4::xid8)`,
      u.user.id,
      w.orgA.id,
      JSON.stringify({ n: txid }),
      txid,
    );
  }
  const ids = async () =>
    (await w.app.ctx.db.$queryRaw<{ id: string }[]>`SELECT id FROM audit_events WHERE txid < '2000'::xid8 ORDER BY txid`).map((r) => r.id);
  const expected = await ids();
  t.equal(expected.length, 4);

  const byTwo: string[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 2; i++) {
    const res: { body: Page } = await feed(w, `?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
    byTwo.push(...res.body.items.map((e) => e.id));
    cursor = res.body.nextCursor;
  }
  t.same(byTwo, expected, 'pages of two: 998, 999 | 1000, 1001');
  const all = (await feed(w, '?limit=100')).body.items.map((e) => e.id);
  t.same(all.slice(0, 4), expected, 'one page: the same order');
  t.equal(new Set(all).size, all.length, 'nothing twice');
});
