import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { sha256Hex } from '../../src/lib/tokens.js';
import { EMAIL_UNDO_TTL_SECONDS } from '../../src/modules/email-change/email-change.service.js';
import { encodeCursor } from '../../src/modules/organization/pagination.js';
import { tokenFromLink } from '../helpers/accounts.js';
import { buildTestApp } from '../helpers/app.js';
import { createUser } from '../helpers/factories.js';
import { api } from '../helpers/http.js';
import { lastMail } from '../helpers/outbox.js';
import { adminWorld, type AdminWorld } from '../integration/organization/helpers.js';
import { moveTo, signedInMember, undo, undoLink } from '../integration/accounts/email-change-helpers.js';

/**
 * Mutation review of session 28's changes (the address held while its undo link lasts, the feed's
 * stop before a later release's event type, the reset link inspection, the field errors' caps):
 * what README / openapi / the code's documented contract promise, each pinned by a test that fails
 * when the promise is broken in src.
 */




const invite = async (w: AdminWorld, email: string) => w.request({ url: '/v1/organization/users', token: await w.tokenFor(w.adminA.user), body: { email, name: 'New Person' } });

// held-address.ts: the address stays the account's "while the undo link in the notice to it lasts".
// An undo link that no longer works (voided by the undo of an earlier move) holds nothing.
t.test('held address: an address whose undo link was voided by the undo of an earlier move is free again', async (t) => {
  const w = await adminWorld(t);
  const jon = await signedInMember(w, 'jon@alpha.test');
  await moveTo(w, jon.token, jon.password!, 'jon@second.test');
  await moveTo(w, jon.token, jon.password!, 'jon@third.test');
  const secondUndo = await undoLink(w, 'jon@second.test');
  const done = await undo(w, await undoLink(w, 'jon@alpha.test'));
  t.same([done.status, done.body.email], [200, 'jon@alpha.test'], 'the first address undoes both moves');
  t.equal((await undo(w, secondUndo)).status, 410, 'the undo link of the later move no longer works');
  const invited = await invite(w, 'jon@second.test');
  t.same([invited.status, invited.body.code], [201, undefined], 'so the address it would bring back is not held');
});

// users.email is citext: an address is kept as typed. The hold compares "in any letter case" (email-change-undo.test.ts),
// also when the address left was stored with capitals.
t.test('held address: an address left that was stored with capitals is held in any letter case', async (t) => {
  const w = await adminWorld(t);
  const jon = await signedInMember(w, 'Jon.Doe@Alpha.test');
  await moveTo(w, jon.token, jon.password!, 'jon@new.test');
  for (const email of ['jon.doe@alpha.test', 'Jon.Doe@Alpha.test']) {
    const invited = await invite(w, email);
    t.same([invited.status, invited.body.code], [409, 'email_taken'], email);
  }
});

// The hold ends when the undo link stops working: at its expiry instant (flow-tokens: expiresAt <= now is expired).
t.test('held address: the hold ends the instant the undo link expires, not a second later', async (t) => {
  const w = await adminWorld(t);
  const jon = await signedInMember(w, 'jon@alpha.test');
  await moveTo(w, jon.token, jon.password!, 'jon@new.test');
  const link = await undoLink(w, 'jon@alpha.test');
  w.clock.advance(EMAIL_UNDO_TTL_SECONDS - 1);
  t.same([(await invite(w, 'jon@alpha.test')).status], [409], 'held in the last second of the link');
  w.clock.advance(1);
  const late = await undo(w, link);
  t.same([late.status, late.body.code], [410, 'link_expired'], 'the link has expired');
  const invited = await invite(w, 'jon@alpha.test');
  t.same([invited.status, invited.body.code], [201, undefined], 'and the address is no longer held');
});

const SECRET = 'feed-client-secret-for-tests';
const BASIC = `Basic ${Buffer.from(`cso:${SECRET}`).toString('base64')}`;
const FEED_ENV = { SERVICE_CLIENTS: `cso:${sha256Hex(SECRET)}`, EVENT_FEED_CLIENTS: 'cso' };
type Page = { items: { id: string; type: string; userId: string | null }[]; nextCursor: string | null };
const feed = (w: AdminWorld, cursor: string | null, limit = 100) =>
  w.request<Page>({ url: `/v1/events?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, headers: { authorization: BASIC } });

/** Resolves once every audit row is older than every running transaction (a feed reader sees all of them). */
async function untilAllPastHorizon(w: AdminWorld) {
  for (let i = 0; i < 600; i++) {
    const [row] = await w.app.ctx.db.$queryRawUnsafe<{ seen: boolean }[]>(`SELECT coalesce(bool_and(txid < pg_snapshot_xmin(pg_current_snapshot())), true) AS seen FROM audit_events`);
    if (row?.seen) return;
    await sleep(50);
  }
  throw new Error('the audit events never passed the feed horizon');
}

/** Every page from `cursor` on, until an empty one. */
async function readAll(w: AdminWorld, cursor: string | null) {
  const items: Page['items'] = [];
  for (let i = 0; i < 50; i++) {
    const page = (await feed(w, cursor)).body;
    items.push(...page.items);
    if (page.items.length === 0) return { items, cursor: page.nextCursor };
    cursor = page.nextCursor;
  }
  throw new Error('the feed never ended');
}

async function laterEvent(w: AdminWorld, userId: string): Promise<string> {
  const [row] = await w.app.ctx.db.$queryRaw<{ cursor_key: string[] }[]>`
    INSERT INTO audit_events (id, type, subject_user_id, organization_id) VALUES (gen_random_uuid(), 'user.later_kind', ${userId}::uuid, ${w.orgA.id}::uuid)
    RETURNING ARRAY[txid::text, id::text] AS cursor_key`;
  return encodeCursor(row!.cursor_key);
}

const block = (w: AdminWorld, userId: string) => w.request({ method: 'POST', url: `/v1/organization/users/${userId}/block`, token: w.adminA.token });

// event-feed.ts readFeedEvents: "it hands out nothing from the first such event on".
t.test('feed: with two events of a later release between known ones, nothing after the first of them is handed out', async (t) => {
  const w = await adminWorld(t, FEED_ENV);
  await untilAllPastHorizon(w);
  const start = (await readAll(w, null)).cursor;
  const [a, b, c] = [await w.member(w.orgA.id, { name: 'Ann' }), await w.member(w.orgA.id, { name: 'Bert' }), await w.member(w.orgA.id, { name: 'Cleo' })];
  await w.app.ctx.db.$executeRaw`INSERT INTO feed_event_types (type) VALUES ('user.later_kind')`;
  t.equal((await block(w, a.user.id)).status, 200);
  await laterEvent(w, a.user.id);
  t.equal((await block(w, b.user.id)).status, 200);
  await laterEvent(w, b.user.id);
  t.equal((await block(w, c.user.id)).status, 200);
  await untilAllPastHorizon(w);
  const { items } = await readAll(w, start);
  t.same(items.map((e) => [e.type, e.userId]), [['user.blocked', a.user.id]], 'only what comes before the first later-type event');
});

// A consumer's cursor handed out by an instance of the later release may already be past such an
// event (that instance describes it): this instance goes on from the cursor, it stops only at a
// later-type event after it.
t.test('feed: a cursor already past a later release\'s event goes on from there', async (t) => {
  const w = await adminWorld(t, FEED_ENV);
  const a = await w.member(w.orgA.id, { name: 'Ann' });
  await w.app.ctx.db.$executeRaw`INSERT INTO feed_event_types (type) VALUES ('user.later_kind')`;
  const past = await laterEvent(w, a.user.id);
  t.equal((await block(w, a.user.id)).status, 200);
  await untilAllPastHorizon(w);
  const { items } = await readAll(w, past);
  t.same(items.map((e) => [e.type, e.userId]), [['user.blocked', a.user.id]], 'the known event after the cursor is handed out');
});

// openapi ResetLinkInfo.language: "The user's language: show the page in it".
t.test('reset link inspection: the language is the user\'s own, not the default', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app, { language: 'de' });
  await request({ url: '/v1/password/forgot', body: { email: user.email } });
  const token = tokenFromLink((await lastMail(app, { toAddress: user.email })).textBody, '/reset-password');
  const seen = await request({ url: '/v1/password/reset/inspect', body: { token } });
  t.same([seen.status, seen.body.language], [200, 'de']);
});

// validation-errors.ts unrecognized(): the first ten unknown keys named, "and N more" for the rest — also for one more.
t.test('validation_failed: eleven unknown query parameters name ten and say one more', async (t) => {
  const w = await adminWorld(t);
  const query = Array.from({ length: 11 }, (_, i) => `k${i}=1`).join('&');
  const res = await w.request({ method: 'GET', url: `/v1/organization/users?${query}`, token: w.adminA.token });
  t.equal(res.status, 400);
  t.match(res.body.errors, [{ path: 'querystring', code: 'unrecognized_keys', message: /"k9" and 1 more$/, keys: Array.from({ length: 10 }, (_, i) => `k${i}`) }]);
});
