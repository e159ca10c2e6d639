import t from 'tap';
import { decodeJwt } from 'jose';
import { sha256Hex } from '../../../src/lib/tokens.js';
import { signIn } from '../../helpers/factories.js';
import { adminWorld, auditOf } from '../organization/helpers.js';

const sid = (accessToken: string) => decodeJwt(accessToken).sid as string;
const CSO_SECRET = 'cso-secret-for-sign-out-tests-0123456789';
const CSO = `Basic ${Buffer.from(`cso:${CSO_SECRET}`).toString('base64')}`;

t.test('a user signs out every other device: the current session stays, the others and other users\' sessions behave as told', async (t) => {
  const w = await adminWorld(t);
  const { request, app } = w;
  const { user } = await w.member(w.orgA.id);
  const other = await w.member(w.orgA.id);
  const laptop = await signIn(app, user);
  const tablet = await signIn(app, user);
  const phone = await signIn(app, user);
  const othersSession = await signIn(app, other.user);
  // An already ended session is not ended (or audited) again.
  const old = await signIn(app, user);
  t.equal((await request({ url: '/v1/auth/logout', method: 'POST', token: old.accessToken })).status, 204);
  // Nor is one that ended by its idle timeout counted (it is marked, as instances' clocks differ).
  const idle = await signIn(app, user);
  await app.ctx.db.session.update({ where: { id: sid(idle.accessToken) }, data: { idleExpiresAt: w.clock.now() } });

  const res = await request({ method: 'DELETE', url: '/v1/me/sessions', token: phone.accessToken });
  t.equal(res.status, 200);
  t.same(res.body, { ended: 2 });
  for (const [name, ended] of [['laptop', laptop], ['tablet', tablet]] as const) {
    t.equal((await request({ url: '/v1/me', token: ended.accessToken })).body.code, 'token_invalid', `${name}: access token refused`);
    t.equal((await request({ url: '/v1/auth/refresh', body: { refreshToken: ended.refreshToken } })).body.code, 'refresh_token_invalid', `${name}: refresh refused`);
  }
  t.equal((await request({ url: '/v1/me', token: phone.accessToken })).status, 200, 'the current session lives');
  const refreshed = await request({ url: '/v1/auth/refresh', body: { refreshToken: phone.refreshToken } });
  t.equal(refreshed.status, 200, 'and refreshes');
  t.equal((await request({ url: '/v1/me', token: othersSession.accessToken })).status, 200, "another user's session lives");
  const listed = await request({ url: '/v1/me/sessions', token: refreshed.body.accessToken });
  t.same(listed.body.sessions.map((s: { id: string }) => s.id), [sid(phone.accessToken)], 'only the current session is left');

  const audits = await app.ctx.db.auditEvent.findMany({ where: { type: 'session.revoked', subjectUserId: user.id, details: { path: ['via'], equals: 'all_others' } } });
  t.same(audits.map((a) => (a.details as { sessionId: string }).sessionId).sort(), [sid(laptop.accessToken), sid(tablet.accessToken)].sort(), 'one audit row per ended session');
  t.ok(audits.every((a) => a.actorUserId === user.id && a.organizationId === w.orgA.id));
  t.match(await app.ctx.db.session.findUniqueOrThrow({ where: { id: sid(idle.accessToken) } }), { revokedReason: 'user_revoked' });
  t.equal((await app.ctx.db.session.findUniqueOrThrow({ where: { id: sid(old.accessToken) } })).revokedReason, 'logout', 'an ended session keeps why it ended');

  const again = await request({ method: 'DELETE', url: '/v1/me/sessions', token: refreshed.body.accessToken });
  t.same(again.body, { ended: 0 }, 'nothing left to end: 0, no error');
  t.equal((await request({ method: 'DELETE', url: '/v1/me/sessions' })).status, 401);
  t.equal((await request({ method: 'DELETE', url: '/v1/me/sessions', token: refreshed.body.accessToken, body: { all: true } })).status, 400, 'no body is taken');
});

t.test('an administrator (own organisation) or support signs a user out of every device without blocking', async (t) => {
  const w = await adminWorld(t, { SERVICE_CLIENTS: `cso:${sha256Hex(CSO_SECRET)}` });
  const { request, app, adminA, adminB, support } = w;
  const jon = await w.member(w.orgA.id);
  // A session that already ended by its idle timeout is not counted (but marked too: instances' clocks differ).
  const idle = await signIn(app, jon.user);
  await app.ctx.db.session.update({ where: { id: sid(idle.accessToken) }, data: { idleExpiresAt: w.clock.now() } });
  const first = await signIn(app, jon.user);
  const second = await signIn(app, jon.user);
  const bystander = await w.member(w.orgA.id);
  const bystanderSession = await signIn(app, bystander.user);

  const res = await request({ method: 'POST', url: `/v1/organization/users/${jon.user.id}/sign-out`, token: adminA.token });
  t.equal(res.status, 200);
  t.match(res.body, { id: jon.user.id, status: 'ACTIVE', mfa: { enrolled: true } }, 'the answer is the user, still active and enrolled');
  for (const ended of [first, second]) {
    t.equal((await request({ url: '/v1/me', token: ended.accessToken })).body.code, 'token_invalid');
    t.equal((await request({ url: '/v1/auth/refresh', body: { refreshToken: ended.refreshToken } })).body.code, 'refresh_token_invalid');
    const introspected = await request({
      method: 'POST',
      url: '/v1/tokens/introspect',
      headers: { authorization: CSO },
      body: { token: ended.accessToken },
    });
    t.same(introspected.body, { active: false }, 'introspection sees it at once');
  }
  t.equal((await request({ url: '/v1/me', token: bystanderSession.accessToken })).status, 200, "other users' sessions live");
  t.match((await auditOf(app, 'user.signed_out', jon.user.id))[0], {
    actorUserId: adminA.user.id,
    organizationId: w.orgA.id,
    details: { by: 'admin', sessionsRevoked: 2 },
  });
  t.equal(await app.ctx.db.mailOutbox.count({ where: { toAddress: jon.user.email, template: 'account_blocked' } }), 0, 'not a block: no block mail');
  t.match(await app.ctx.db.session.findUniqueOrThrow({ where: { id: sid(idle.accessToken) } }), { revokedReason: 'signed_out' }, 'the idle-expired session is marked ended too');

  // The user signs in again at once: nothing else changed.
  const back = await signIn(app, jon.user);
  t.equal((await request({ url: '/v1/me', token: back.accessToken })).status, 200);

  // Support, any organisation; 0 sessions is no error and is on record too.
  const inB = await w.member(w.orgB.id);
  const bySupport = await request({ method: 'POST', url: `/v1/support/users/${inB.user.id}/sign-out`, token: support.token });
  t.equal(bySupport.status, 200);
  t.match((await auditOf(app, 'user.signed_out', inB.user.id))[0], { actorUserId: support.user.id, details: { by: 'support', sessionsRevoked: 0 } });

  const staff = await w.member(null, { roles: ['SUPPORT'] });
  const staffSession = await signIn(app, staff.user);
  const plain = await w.tokenFor(bystander.user);
  for (const [who, token, id, area, status, code] of [
    ["another organisation's user", adminA.token, inB.user.id, 'organization', 404, 'user_not_found'],
    ['an unknown id', adminA.token, '0190a0a0-0000-7000-8000-000000000000', 'organization', 404, 'user_not_found'],
    ['oneself', adminA.token, adminA.user.id, 'organization', 409, 'self_service_required'],
    ['oneself (support)', support.token, support.user.id, 'support', 409, 'self_service_required'],
    ['a plain user', plain, jon.user.id, 'organization', 403, 'forbidden'],
    ['an administrator on the support route', adminB.token, inB.user.id, 'support', 403, 'forbidden'],
    ['support staff', support.token, staff.user.id, 'support', 403, 'support_staff_protected'],
  ] as const) {
    const refused = await request({ method: 'POST', url: `/v1/${area}/users/${id}/sign-out`, token });
    t.equal(refused.status, status, who);
    t.equal(refused.body.code, code, who);
  }
  t.equal((await request({ url: '/v1/me', token: staffSession.accessToken })).status, 200, 'support staff stay signed in');
  t.equal((await request({ url: '/v1/me', token: adminA.token })).status, 200, 'the refused self sign-out changed nothing');
  t.equal(await app.ctx.db.auditEvent.count({ where: { type: 'user.signed_out' } }), 2, 'refusals write no sign-out rows');
});

t.test("administrators (own organisation) and support see a user's live sessions; nobody else", async (t) => {
  const w = await adminWorld(t);
  const { request, app, adminA, support, clock } = w;
  const jon = await w.member(w.orgA.id);
  const laptop = await signIn(app, jon.user, ['pwd', 'otp'], { ip: '198.51.100.7', userAgent: 'Firefox on the laptop' });
  clock.advance(60);
  const phone = await signIn(app, jon.user, ['pwd', 'rec'], { ip: '198.51.100.8', userAgent: 'Safari on the phone' });
  const ended = await signIn(app, jon.user);
  t.equal((await request({ url: '/v1/auth/logout', method: 'POST', token: ended.accessToken })).status, 204);

  for (const [who, url, token] of [
    ['the administrator', `/v1/organization/users/${jon.user.id}/sessions`, adminA.token],
    ['support', `/v1/support/users/${jon.user.id}/sessions`, support.token],
  ] as const) {
    const res = await request({ url, token });
    t.equal(res.status, 200, who);
    t.match(res.body.sessions, [
      { id: sid(phone.accessToken), ip: '198.51.100.8', userAgent: 'Safari on the phone', amr: ['pwd', 'rec'], current: false },
      { id: sid(laptop.accessToken), ip: '198.51.100.7', userAgent: 'Firefox on the laptop', amr: ['pwd', 'otp'], current: false },
    ], `${who}: live sessions only, newest first`);
    t.equal(res.body.sessions.length, 2, who);
  }
  t.equal((await request({ url: `/v1/organization/users/${adminA.user.id}/sessions`, token: adminA.token })).body.sessions.length, 1, 'an administrator may look at their own');

  const other = await w.member(w.orgB.id);
  const staff = await w.member(null, { roles: ['SUPPORT'] });
  for (const [who, url, token, status, code] of [
    ["another organisation's user", `/v1/organization/users/${other.user.id}/sessions`, adminA.token, 404, 'user_not_found'],
    ['a plain user', `/v1/organization/users/${jon.user.id}/sessions`, await w.tokenFor(jon.user), 403, 'forbidden'],
    ['support staff', `/v1/support/users/${staff.user.id}/sessions`, support.token, 403, 'support_staff_protected'],
  ] as const) {
    const res = await request({ url, token });
    t.equal(res.status, status, who);
    t.equal(res.body.code, code, who);
  }

  // What the administrator saw is what the sign-out ends.
  const signOut = await request({ method: 'POST', url: `/v1/organization/users/${jon.user.id}/sign-out`, token: adminA.token });
  t.equal(signOut.status, 200);
  t.same((await request({ url: `/v1/organization/users/${jon.user.id}/sessions`, token: adminA.token })).body.sessions, [], 'none left');
});
