import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { sha256Hex } from '../../../src/lib/tokens.js';
import { challengeFor, enrolAtLogin } from '../mfa/helpers.js';
import { adminWorld, type AdminWorld } from '../organization/helpers.js';

/**
 * GET /v1/service/users/{id} and /v1/service/organizations/{id}: what the event feed's ids stand
 * for, for the service clients that may read the feed, and for no one else.
 */

const SECRET = 'directory-client-secret-for-tests';
const basic = (id: string, secret = SECRET) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
const ENV = { SERVICE_CLIENTS: `cso:${sha256Hex(SECRET)},shop:${sha256Hex(SECRET)}:webshop`, EVENT_FEED_CLIENTS: 'cso' };

type Body = Record<string, unknown> & { code?: string };
const read = (w: AdminWorld, path: string, authorization = basic('cso')) =>
  w.request<Body>({ url: `/v1/service/${path}`, headers: { authorization } });

t.test("a feed client reads a user's current state: only what a copy needs, changes as the user changes, gone once erased", async (t) => {
  const w = await adminWorld(t, ENV);
  const member = await w.member(w.orgA.id, { name: 'Mia Member', email: 'mia@alpha.test' });

  const res = await read(w, `users/${member.user.id}`);
  t.equal(res.status, 200);
  t.equal(res.headers['cache-control'], 'no-store');
  t.same(Object.keys(res.body).sort(), ['createdAt', 'email', 'id', 'language', 'mfaEnrolled', 'name', 'newsletterOptIn', 'organizationId', 'roles', 'status'].sort(), 'no locks, links or secrets');
  t.match(res.body, { id: member.user.id, organizationId: w.orgA.id, email: 'mia@alpha.test', name: 'Mia Member', status: 'ACTIVE', roles: ['USER'], mfaEnrolled: true, newsletterOptIn: false });

  const block = await w.request({ method: 'POST', url: `/v1/organization/users/${member.user.id}/block`, token: w.adminA.token });
  t.equal(block.status, 200);
  t.equal((await read(w, `users/${member.user.id}`)).body.status, 'BLOCKED', 'the state now, not a copy');

  const invited = await w.member(w.orgA.id, { name: 'Ivo Invited', status: 'INVITED' });
  t.match((await read(w, `users/${invited.user.id}`)).body, { status: 'INVITED', mfaEnrolled: false });
  t.match((await read(w, `users/${w.support.user.id}`)).body, { organizationId: null, roles: ['SUPPORT'] }, 'support staff have no organisation');

  t.equal((await w.request({ method: 'POST', url: `/v1/organization/users/${member.user.id}/erase`, token: w.adminA.token })).status, 204);
  const erased = await read(w, `users/${member.user.id}`);
  t.equal(erased.status, 404);
  t.equal(erased.body.code, 'user_not_found');
  const never = await read(w, 'users/0190a0a0-0000-7000-8000-000000000000');
  t.same([never.status, never.body.code], [404, 'user_not_found'], 'an id that never existed answers alike');
});

t.test("a feed client reads an organisation's current state, suspension without its reason", async (t) => {
  const w = await adminWorld(t, ENV);
  const res = await read(w, `organizations/${w.orgB.id}`);
  t.equal(res.status, 200);
  t.same(Object.keys(res.body).sort(), ['createdAt', 'customerNumber', 'id', 'language', 'name', 'suspendedAt']);
  t.match(res.body, { id: w.orgB.id, name: 'Beta Reseller', suspendedAt: null });

  const suspend = await w.request({ method: 'POST', url: `/v1/support/organizations/${w.orgB.id}/suspend`, token: w.support.token, body: { reason: 'Credit stop 4711' } });
  t.equal(suspend.status, 200);
  const suspended = await read(w, `organizations/${w.orgB.id}`);
  t.match(suspended.body.suspendedAt, /^\d{4}-\d\d-\d\dT/);
  t.notMatch(JSON.stringify(suspended.body), /Credit stop/, 'the reason is support\'s note');

  const none = await read(w, 'organizations/0190a0a0-0000-7000-8000-000000000000');
  t.same([none.status, none.body.code], [404, 'organization_not_found']);
});

t.test('only the service clients listed in EVENT_FEED_CLIENTS may read; users, other clients and bad ids are refused', async (t) => {
  const w = await adminWorld(t, ENV);
  const path = `users/${w.adminA.user.id}`;
  for (const [label, authorization] of [
    ['no credentials', undefined],
    ['a wrong secret', basic('cso', 'wrong')],
    ['a user\'s access token, even support\'s', `Bearer ${w.support.token}`],
  ] as const) {
    const res = await w.request<Body>({ url: `/v1/service/${path}`, headers: authorization ? { authorization } : {} });
    t.equal(res.status, 401, label);
    t.match(res.headers['www-authenticate'], /^Basic /, label);
  }
  for (const target of [path, `organizations/${w.orgA.id}`]) {
    const other = await read(w, target, basic('shop'));
    t.same([other.status, other.body.code], [403, 'event_feed_not_allowed'], `an introspection-only client: ${target}`);
  }
  const bad = await read(w, 'users/not-a-uuid');
  t.same([bad.status, bad.body.code], [400, 'validation_failed']);
  const query = await read(w, `${path}?fields=passwordHash`);
  t.same([query.status, query.body.code], [400, 'validation_failed'], 'no query parameters');
});

t.test('a copy kept in step by the feed learns of every field it reads: new preferences and a new authenticator are events too', async (t) => {
  const w = await adminWorld(t, ENV);
  const start = (await w.request<{ nextCursor: string | null }>({ url: '/v1/events', headers: { authorization: basic('cso') } })).body.nextCursor;
  const member = await w.member(w.orgA.id, { name: 'Nina New', withTotp: false });
  t.match((await read(w, `users/${member.user.id}`)).body, { mfaEnrolled: false, newsletterOptIn: false, language: null });

  const { tokens } = await enrolAtLogin(t, w.app, w.request, await challengeFor(w.app, member.user.id, 'mfa_enrollment'));
  const saved = await w.request({ method: 'PATCH', url: '/v1/me/preferences', token: tokens.accessToken, body: { newsletterOptIn: true, language: 'de' } });
  t.equal(saved.status, 200);

  // Other test files' open transactions may hold the feed back for a moment.
  const types: string[] = [];
  let cursor = start;
  for (let i = 0; i < 600 && types.length < 2; i++) {
    const page = await w.request<{ items: { type: string; userId: string | null }[]; nextCursor: string | null }>({
      url: `/v1/events${cursor ? `?cursor=${cursor}` : ''}`,
      headers: { authorization: basic('cso') },
    });
    types.push(...page.body.items.filter((e) => e.userId === member.user.id).map((e) => e.type));
    cursor = page.body.nextCursor;
    if (types.length < 2) await sleep(50);
  }
  t.same(types, ['mfa.enrolled', 'user.preferences_changed'], 'each change the directory shows is in the feed');
  t.match((await read(w, `users/${member.user.id}`)).body, { mfaEnrolled: true, newsletterOptIn: true, language: 'de' });
});
