import t from 'tap';
import { currentTotp, signIn, wrongCode } from '../../helpers/factories.js';
import { SECURITY_EVENT_TYPES } from '../../../src/modules/me/security-events.js';
import { adminWorld } from '../organization/helpers.js';

/**
 * GET /v1/me/security-events: what happened to my account, newest first, with who did it; where it
 * came from only for what I did and for attempts without a sign-in.
 */

const NEW_PASSWORD = 'Marble tundra violin 27#';

t.test('my security activity: my sign-in, an attempt on my account, changes by my administrator and by support, my password change; nobody else\'s', async (t) => {
  const w = await adminWorld(t);
  const { request, app } = w;
  const mia = await w.member(w.orgA.id, { name: 'Mia Member', email: 'mia@alpha.test', termsAccepted: true, preferencesSet: true });
  const bob = await w.member(w.orgA.id, { email: 'bob@alpha.test' });
  const inject = (url: string, payload: object, remoteAddress: string, userAgent: string) =>
    app.inject({ method: 'POST', url, payload, remoteAddress, headers: { 'user-agent': userAgent } });

  t.equal((await inject('/v1/auth/login', { email: 'mia@alpha.test', password: 'not her password 123' }, '198.51.100.7', 'EvilBot/1.0')).statusCode, 401);
  t.equal((await inject('/v1/auth/login', { email: 'bob@alpha.test', password: 'not his password 123' }, '198.51.100.8', 'EvilBot/1.0')).statusCode, 401);
  // Someone who has her password, but not her phone: the code step names the account as actor, the page must not say "you".
  const stolen = await inject('/v1/auth/login', { email: 'mia@alpha.test', password: mia.password }, '198.51.100.66', 'EvilBot/2.0');
  t.equal(stolen.statusCode, 200);
  t.equal((await inject('/v1/auth/login/mfa', { challengeToken: stolen.json().challengeToken, code: wrongCode(app, mia.totpSecret!) }, '198.51.100.66', 'EvilBot/2.0')).statusCode, 400);
  const step = await inject('/v1/auth/login', { email: 'mia@alpha.test', password: mia.password }, '203.0.113.5', 'Firefox/140');
  t.equal(step.statusCode, 200);
  const signedIn = await inject('/v1/auth/login/mfa', { challengeToken: step.json().challengeToken, code: currentTotp(app, mia.totpSecret!) }, '203.0.113.5', 'Firefox/140');
  t.equal(signedIn.statusCode, 200);
  const token = signedIn.json().accessToken as string;

  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${mia.user.id}/password-reset`, token: w.adminA.token })).status, 200);
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${mia.user.id}/mfa-reset-request`, token: w.support.token })).status, 202);
  const changed = await request({ method: 'PUT', url: '/v1/me/password', token, body: { currentPassword: mia.password, newPassword: NEW_PASSWORD } });
  t.equal(changed.status, 204, JSON.stringify(changed.body));
  // An operator's command (the CLI writes no actor, and its details name the operator).
  await app.ctx.db.auditEvent.create({
    data: { type: 'user.unlocked', subjectUserId: mia.user.id, organizationId: w.orgA.id, userAgent: 'webshop-auth-cli', details: { by: 'cli', cli: { operator: 'root' } } },
  });

  const res = await request({ url: '/v1/me/security-events', token });
  t.equal(res.status, 200);
  t.equal(res.headers['cache-control'], 'no-store');
  type Row = { type: string; by: string | null; ip: string | null; userAgent: string | null; details: object };
  t.same(
    res.body.items.map((e: Row) => [e.type, e.by, e.ip, e.userAgent, e.details]),
    [
      ['user.unlocked', 'operator', null, null, {}],
      ['password.changed', 'you', '127.0.0.1', 'lightMyRequest', {}],
      ['mfa.reset_requested', 'support', null, null, {}],
      ['password.reset_requested', 'administrator', null, null, {}],
      ['login.mfa_succeeded', 'you', '203.0.113.5', 'Firefox/140', {}],
      ['login.mfa_failed', null, '198.51.100.66', 'EvilBot/2.0', { reason: 'invalid', factor: 'totp' }],
      ['login.password_failed', null, '198.51.100.7', 'EvilBot/1.0', { reason: 'wrong_password' }],
    ],
    "newest first; others' network details hidden; no session bookkeeping; nothing of Bob's",
  );
  t.equal(res.body.nextCursor, null);

  const first = await request({ url: '/v1/me/security-events?limit=4', token });
  t.equal(first.body.items.length, 4);
  const second = await request({ url: `/v1/me/security-events?limit=3&cursor=${first.body.nextCursor}`, token });
  t.same(
    [...first.body.items, ...second.body.items].map((e: { id: string }) => e.id),
    res.body.items.map((e: { id: string }) => e.id),
    'the pages follow each other without gaps or repeats',
  );
  t.equal(second.body.nextCursor, null);

  const bobs = await request({ url: '/v1/me/security-events', token: await w.tokenFor(bob.user) });
  t.same(bobs.body.items.map((e: { type: string; ip: string }) => [e.type, e.ip]), [['login.password_failed', '198.51.100.8']], "Bob sees his, not Mia's");

  for (const [label, url, code] of [
    ['limit 0', '/v1/me/security-events?limit=0', 'validation_failed'],
    ['an unknown parameter', '/v1/me/security-events?userId=' + bob.user.id, 'validation_failed'],
    ['a forged cursor', '/v1/me/security-events?cursor=bm90LWEtY3Vyc29y', 'invalid_cursor'],
  ] as const) {
    const bad = await request({ url, token });
    t.equal(bad.status, 400, label);
    t.equal(bad.body.code, code, label);
  }
  t.equal((await request({ url: '/v1/me/security-events' })).status, 401, 'signed in only');
});

t.test("who did it is what was recorded then: support's changes stay support's after that support user is erased, and their network details stay hidden from the organisation", async (t) => {
  const w = await adminWorld(t);
  const { request, app } = w;
  const mia = await w.member(w.orgA.id, { email: 'mia@alpha.test' });
  const colleague = await w.member(null, { roles: ['SUPPORT'], name: 'Sid Support' });
  const colleagueToken = await w.tokenFor(colleague.user);
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${mia.user.id}/block`, token: colleagueToken })).status, 200);
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${mia.user.id}/unblock`, token: colleagueToken })).status, 200);
  // The support employee leaves and is erased (as erase-user.test.ts shows, through the operator's command).
  await app.ctx.db.user.delete({ where: { id: colleague.user.id } });

  const mine = await request({ url: '/v1/me/security-events', token: await w.tokenFor(mia.user) });
  t.same(mine.body.items.map((e: { type: string; by: string; ip: string | null }) => [e.type, e.by, e.ip]), [
    ['user.unblocked', 'support', null],
    ['user.blocked', 'support', null],
  ]);
  const log = await request({ url: `/v1/organization/audit-events?userId=${mia.user.id}`, token: w.adminA.token });
  const blocked = log.body.items.find((e: { type: string }) => e.type === 'user.blocked');
  t.match(blocked, { actor: { id: colleague.user.id, name: null, email: null }, ip: null, userAgent: null }, 'still hidden from customers');
});

t.test('the view reads its own partial index: the same types as the code; saves that change nothing write no audit row', async (t) => {
  const w = await adminWorld(t);
  const [index] = await w.app.ctx.db.$queryRaw<{ indexdef: string }[]>`SELECT indexdef FROM pg_indexes WHERE indexname = 'audit_events_security'`;
  const indexed = [...index!.indexdef.matchAll(/'([a-z_.]+)'::text/g)].map((m) => m[1]).sort();
  t.same(indexed, [...SECURITY_EVENT_TYPES].sort(), 'the partial index lists the same types as the code');

  // Found by session 19's review: every save wrote a row, changed or not (a flood of them made
  // this view read a million rows).
  const me = await w.member(w.orgA.id, { preferencesSet: true });
  const token = await w.tokenFor(me.user);
  const saves = () => w.app.ctx.db.auditEvent.count({ where: { subjectUserId: me.user.id, type: 'user.preferences_changed' } });
  const save = (body: object) => w.request({ method: 'PATCH', url: '/v1/me/preferences', token, body });
  t.equal((await save({ newsletterOptIn: true })).status, 200);
  t.equal(await saves(), 1, 'a change is audited');
  for (let i = 0; i < 3; i++) t.equal((await save({ newsletterOptIn: true })).status, 200);
  t.equal(await saves(), 1, 'saving the same again writes nothing');
  t.equal((await save({ language: 'de' })).status, 200);
  t.equal(await saves(), 2);
});

t.test('my security activity is about my account: what I did to others as administrator or support is not in it (mutation review, session 20)', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, support } = w;
  const mia = await w.member(w.orgA.id);
  const inB = await w.member(w.orgB.id);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${mia.user.id}/sign-out`, token: adminA.token })).status, 200);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${mia.user.id}/block`, token: adminA.token })).status, 200);
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${inB.user.id}/sign-out`, token: support.token })).status, 200);
  for (const [who, token] of [['the administrator', adminA.token], ['support', support.token]] as const) {
    const res = await request({ url: '/v1/me/security-events', token });
    t.equal(res.status, 200, who);
    const types = res.body.items.map((e: { type: string }) => e.type);
    t.notOk(types.includes('user.signed_out'), `${who}: signing someone else out is not "you were signed out"`);
    t.notOk(types.includes('user.blocked'), `${who}: blocking someone else is not "the account was blocked"`);
  }
  // The people it happened to see it.
  const miaEvents = await w.app.ctx.db.auditEvent.count({ where: { subjectUserId: mia.user.id, type: { in: ['user.signed_out', 'user.blocked'] } } });
  t.equal(miaEvents, 2);
});

t.test("the system's doings are nobody's, shown with where they came from: a replayed refresh token, a sign-in lock with its end (mutation review, session 22)", async (t) => {
  const w = await adminWorld(t);
  const { request, app, clock, config } = w;
  const mia = await w.member(w.orgA.id, { email: 'mia@alpha.test' });
  const first = await signIn(app, mia.user);
  const refreshed = await request({ url: '/v1/auth/refresh', body: { refreshToken: first.refreshToken } });
  t.equal(refreshed.status, 200);
  clock.advance(config.refresh.reuseGraceSeconds + 1);
  const replayed = await app.inject({ method: 'POST', url: '/v1/auth/refresh', payload: { refreshToken: first.refreshToken }, remoteAddress: '198.51.100.9', headers: { 'user-agent': 'thief' } });
  t.equal(replayed.statusCode, 401);
  for (let i = 0; i < 10; i++) {
    await app.inject({ method: 'POST', url: '/v1/auth/login', payload: { email: 'mia@alpha.test', password: `not her password ${i}` }, remoteAddress: '198.51.100.7' });
  }
  const [lock] = await app.ctx.db.auditEvent.findMany({ where: { type: 'login.locked', subjectUserId: mia.user.id } });
  t.ok(lock, 'locked after 10 wrong passwords');

  const res = await request({ url: '/v1/me/security-events', token: await w.tokenFor(mia.user) });
  t.equal(res.status, 200);
  type Row = { type: string; by: string | null; ip: string | null; userAgent: string | null; details: Record<string, unknown> };
  const family = res.body.items.find((e: Row) => e.type === 'session.family_revoked');
  t.match(family, { by: null, ip: '198.51.100.9', userAgent: 'thief', details: {} }, 'the replay: nobody of the organisation did it, and it shows where it came from');
  const locked = res.body.items.find((e: Row) => e.type === 'login.locked');
  t.same(locked?.details, { until: (lock!.details as { until: unknown }).until }, 'until when sign-in is locked');
  t.equal(locked?.by, null);
});
