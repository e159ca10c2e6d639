import t from 'tap';
import { pagedIds, type CursorPage } from '../../helpers/http.js';
import { adminWorld, auditOf, mailsTo } from './helpers.js';

const SECRET_PATTERN = /passwordHash|password_hash|\$argon2|secretCiphertext|codeHash|tokenHash/;

t.test('list: filters, text search, cursor pagination; no secrets in the representation', async (t) => {
  const w = await adminWorld(t);
  const { request, orgA, adminA } = w;
  await w.member(orgA.id, { name: 'Carla Invited', status: 'INVITED', email: 'carla@alpha.test' });
  await w.member(orgA.id, { name: 'Dieter Blocked', status: 'BLOCKED' });
  await w.member(orgA.id, { name: 'Erika NoMfa', withTotp: false });
  await w.member(orgA.id, { name: 'Frank Second Admin', roles: ['USER', 'CUSTOMER_ADMIN'] });
  await w.member(orgA.id, { name: 'Gina Plain', email: 'gina@ALPHA.test' });
  await w.member(w.orgB.id, { name: 'Zoe Other Org', email: 'zoe@beta.test' });

  const list = (query = '') => request({ url: `/v1/organization/users${query}`, token: adminA.token });

  const all = await list();
  t.equal(all.status, 200);
  t.same(
    all.body.items.map((u: { name: string }) => u.name),
    ['Alice Admin', 'Carla Invited', 'Dieter Blocked', 'Erika NoMfa', 'Frank Second Admin', 'Gina Plain'],
    'own organisation only, sorted by name',
  );
  t.equal(all.body.nextCursor, null);
  t.notMatch(all.raw, SECRET_PATTERN, 'no hashes or secrets');
  t.notMatch(all.raw, /Zoe|beta\.test/, 'nothing of the other organisation');

  const names = async (query: string) => (await list(query)).body.items.map((u: { name: string }) => u.name);
  t.same(await names('?status=INVITED'), ['Carla Invited']);
  t.same(await names('?status=BLOCKED'), ['Dieter Blocked']);
  t.same(await names('?mfa=not_enrolled'), ['Carla Invited', 'Erika NoMfa']);
  t.same(await names('?role=CUSTOMER_ADMIN'), ['Alice Admin', 'Frank Second Admin']);
  t.same(await names('?q=alpha.TEST'), ['Carla Invited', 'Gina Plain'], 'e-mail search is case-insensitive');
  t.same(await names('?q=second'), ['Frank Second Admin'], 'name search');
  t.same(await names('?q='), all.body.items.map((u: { name: string }) => u.name), 'an empty search box is no filter (was 400)');
  t.same(await names('?q=%20%20'), all.body.items.map((u: { name: string }) => u.name), 'nor is one with spaces only');
  t.same(await names('?q=zoe'), [], 'search never reaches other organisations');
  t.same(await names('?q=%25'), [], 'LIKE wildcards are literal');
  t.same(await names('?q=_'), [], 'LIKE wildcards are literal (_)');
  t.same(await names('?status=ACTIVE&mfa=enrolled&role=USER'), ['Alice Admin', 'Frank Second Admin', 'Gina Plain']);

  const { ids, pages } = await pagedIds(async (query) => {
    const res = await list(`?${query}`);
    t.equal(res.status, 200);
    t.ok(res.body.items.length <= 2);
    return res.body;
  }, 2);
  t.equal(pages, 3);
  t.same(ids, all.body.items.map((u: { id: string }) => u.id), 'pages cover the list exactly once');

  const bad = await list('?cursor=not-a-cursor');
  t.equal(bad.status, 400);
  t.equal(bad.body.code, 'invalid_cursor');
  t.equal((await list('?limit=0')).status, 400);
  t.equal((await list('?limit=101')).status, 400);
  t.equal((await list('?status=GONE')).status, 400);
  t.equal((await list('?organizationId=' + w.orgB.id)).status, 400, 'unknown query fields are rejected');
});

t.test('invite: INVITED user with activation mail; e-mail unique across organisations in any case', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, app } = w;
  const res = await request({
    method: 'POST',
    url: '/v1/organization/users',
    token: adminA.token,
    body: { email: 'New.Person@Alpha.test', name: 'New Person' },
  });
  t.equal(res.status, 201);
  t.equal(res.body.status, 'INVITED');
  t.same(res.body.roles, ['USER']);
  t.equal(res.body.organizationId, w.orgA.id);
  t.equal(res.body.mfa.enrolled, false);
  t.notMatch(res.raw, /token|link|activate/i, 'the activation link is never returned');

  const mails = await mailsTo(app, 'new.person@alpha.test');
  t.equal(mails.length, 1);
  t.equal(mails[0]!.template, 'activation');
  t.match(mails[0]!.textBody, 'https://shop.example.test/activate?token=');
  const [audit] = await auditOf(app, 'user.invited', res.body.id);
  t.equal(audit?.actorUserId, adminA.user.id);
  t.equal(audit?.organizationId, w.orgA.id);

  const admin = await request({
    method: 'POST',
    url: '/v1/organization/users',
    token: adminA.token,
    body: { email: 'second.admin@alpha.test', name: 'Second', roles: ['CUSTOMER_ADMIN'] },
  });
  t.equal(admin.status, 201);
  t.same(admin.body.roles, ['USER', 'CUSTOMER_ADMIN'], 'USER is always kept');

  // The same address, other letter case, from the other organisation: 409 without any detail.
  const dup = await request({
    method: 'POST',
    url: '/v1/organization/users',
    token: w.adminB.token,
    body: { email: 'NEW.PERSON@alpha.TEST', name: 'Somebody Else' },
  });
  t.equal(dup.status, 409);
  t.equal(dup.body.code, 'email_taken');
  t.notMatch(dup.raw, new RegExp(`${w.orgA.id}|Alpha|${res.body.id}`), 'never reveals which organisation');
  const dupSame = await request({
    method: 'POST',
    url: '/v1/organization/users',
    token: adminA.token,
    body: { email: w.adminB.user.email.toUpperCase(), name: 'Copy of Bob' },
  });
  t.equal(dupSame.status, 409);
  t.equal(dupSame.body.code, 'email_taken');
  t.equal(await app.ctx.db.user.count({ where: { name: { in: ['Somebody Else', 'Copy of Bob'] } } }), 0, 'nothing was created');
  t.equal((await mailsTo(app, 'new.person@alpha.test')).length, 1, 'no mail for a refused invitation');

  for (const body of [
    { email: 'x@alpha.test', name: 'X', roles: ['SUPPORT'] },
    { email: 'x@alpha.test', name: 'X', organizationId: w.orgB.id },
    { email: 'x@alpha.test', name: 'X', status: 'ACTIVE' },
    { email: 'not-an-email', name: 'X' },
    { email: 'x@alpha.test', name: '' },
  ]) {
    const bad = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body });
    t.equal(bad.status, 400, JSON.stringify(body));
    t.equal(bad.body.code, 'validation_failed');
  }
});

t.test('get one user; resend activation voids the old link', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, app, clock } = w;
  const invited = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'inv@alpha.test', name: 'Inv' } });
  const id = invited.body.id as string;

  const one = await request({ url: `/v1/organization/users/${id}`, token: adminA.token });
  t.equal(one.status, 200);
  t.same(one.body, invited.body);
  // What the admin screen needs to tell a fresh invitation from a lapsed one (session 13).
  const sentAt = clock.now();
  t.same(one.body.invitation, { sentAt: sentAt.toISOString(), expiresAt: new Date(sentAt.getTime() + 7 * 24 * 3600 * 1000).toISOString() });
  t.same(one.body.mfa, { enrolled: false, enrolledAt: null, pending: false });

  clock.advance(60);
  const resent = await request({ method: 'POST', url: `/v1/organization/users/${id}/activation-email`, token: adminA.token });
  t.equal(resent.status, 200);
  t.equal(resent.body.invitation.sentAt, clock.now().toISOString(), 'the link sent last');
  const flows = await app.ctx.db.flowToken.findMany({ where: { userId: id, purpose: 'ACTIVATION' }, orderBy: { createdAt: 'asc' } });
  t.same(flows.map((f) => f.state), ['VOIDED', 'PENDING'], 'only the newest link works');
  t.equal((await mailsTo(app, 'inv@alpha.test')).length, 2);
  t.equal((await auditOf(app, 'user.activation_resent', id)).length, 1);

  const active = await w.member(w.orgA.id);
  const again = await request({ method: 'POST', url: `/v1/organization/users/${active.user.id}/activation-email`, token: adminA.token });
  t.equal(again.status, 409);
  t.equal(again.body.code, 'already_activated');
  t.equal((await request({ url: `/v1/organization/users/${active.user.id}`, token: adminA.token })).body.invitation, null, 'active: no invitation');

  // A set-up started at the login but not confirmed: pending, not "never started".
  const starter = await w.member(w.orgA.id, { withTotp: false });
  const login = await request({ url: '/v1/auth/login', body: { email: starter.user.email, password: starter.password } });
  t.equal((await request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken: login.body.challengeToken } })).status, 200);
  const starting = await request({ url: `/v1/organization/users/${starter.user.id}`, token: adminA.token });
  t.same(starting.body.mfa, { enrolled: false, enrolledAt: null, pending: true });
});

t.test('block ends sessions and pending links, tells the user; unblock restores', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, app } = w;
  const victim = await w.member(w.orgA.id, { name: 'Vic Tim', email: 'vic@alpha.test' });
  const victimToken = await w.tokenFor(victim.user);
  t.equal((await request({ url: '/v1/me', token: victimToken })).status, 200);
  await app.ctx.db.flowToken.create({
    data: { userId: victim.user.id, purpose: 'LOGIN_CHALLENGE', tokenHash: 'x'.repeat(64), expiresAt: new Date(app.ctx.clock.now().getTime() + 60_000) },
  });

  const res = await request({ method: 'POST', url: `/v1/organization/users/${victim.user.id}/block`, token: adminA.token });
  t.equal(res.status, 200);
  t.equal(res.body.status, 'BLOCKED');
  t.ok(res.body.blockedAt);
  t.equal((await request({ url: '/v1/me', token: victimToken })).status, 401, 'the access token dies with its session');
  t.equal(await app.ctx.db.session.count({ where: { userId: victim.user.id, revokedAt: null } }), 0);
  t.equal(await app.ctx.db.flowToken.count({ where: { userId: victim.user.id, state: 'PENDING' } }), 0, 'pending challenges are void');
  const mails = await mailsTo(app, 'vic@alpha.test');
  t.same(mails.map((m) => m.template), ['account_blocked']);
  t.match(mails[0]!.textBody, 'Alice Admin', 'the mail names whom to contact');
  const [audit] = await auditOf(app, 'user.blocked', victim.user.id);
  t.equal(audit?.actorUserId, adminA.user.id);
  t.match(audit?.details, { by: 'admin', sessionsRevoked: 1 });

  const again = await request({ method: 'POST', url: `/v1/organization/users/${victim.user.id}/block`, token: adminA.token });
  t.equal(again.status, 409);
  t.equal(again.body.code, 'already_blocked');

  const login = await request({ method: 'POST', url: '/v1/auth/login', body: { email: 'vic@alpha.test', password: victim.password } });
  t.equal(login.status, 403);
  t.equal(login.body.code, 'account_blocked');

  const unblock = await request({ method: 'POST', url: `/v1/organization/users/${victim.user.id}/unblock`, token: adminA.token });
  t.equal(unblock.status, 200);
  t.equal(unblock.body.status, 'ACTIVE');
  t.equal(unblock.body.blockedAt, null);
  t.same((await mailsTo(app, 'vic@alpha.test')).map((m) => m.template), ['account_blocked', 'account_unblocked']);
  t.equal((await auditOf(app, 'user.unblocked', victim.user.id)).length, 1);
  const notBlocked = await request({ method: 'POST', url: `/v1/organization/users/${victim.user.id}/unblock`, token: adminA.token });
  t.equal(notBlocked.body.code, 'not_blocked');

  // A never-activated user goes back to INVITED.
  const inv = await w.member(w.orgA.id, { status: 'INVITED' });
  await request({ method: 'POST', url: `/v1/organization/users/${inv.user.id}/block`, token: adminA.token });
  const back = await request({ method: 'POST', url: `/v1/organization/users/${inv.user.id}/unblock`, token: adminA.token });
  t.equal(back.body.status, 'INVITED');

  const self = await request({ method: 'POST', url: `/v1/organization/users/${adminA.user.id}/block`, token: adminA.token });
  t.equal(self.status, 409);
  t.equal(self.body.code, 'self_action_not_allowed');
});

t.test('MFA reset by the admin: factor and codes gone, sessions ended, mail names the admin', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, app } = w;
  const u = await w.member(w.orgA.id, { email: 'lost.phone@alpha.test', recoveryCodes: 10 });
  const token = await w.tokenFor(u.user);

  const res = await request({ method: 'POST', url: `/v1/organization/users/${u.user.id}/mfa-reset`, token: adminA.token });
  t.equal(res.status, 200);
  t.equal(res.body.mfa.enrolled, false);
  t.equal(await app.ctx.db.totpFactor.count({ where: { userId: u.user.id } }), 0);
  t.equal(await app.ctx.db.recoveryCode.count({ where: { userId: u.user.id } }), 0);
  t.equal((await request({ url: '/v1/me', token })).status, 401);
  const [mail] = await mailsTo(app, 'lost.phone@alpha.test');
  t.equal(mail?.template, 'mfa_removed');
  t.match(mail?.textBody, "administrator Alice Admin reset the 2-step login");
  const [audit] = await auditOf(app, 'mfa.reset_by_admin', u.user.id);
  t.equal(audit?.actorUserId, adminA.user.id);
  t.equal(audit?.organizationId, w.orgA.id);

  const login = await request({ method: 'POST', url: '/v1/auth/login', body: { email: 'lost.phone@alpha.test', password: u.password } });
  t.equal(login.status, 200);
  t.equal(login.body.next, 'mfa_enrollment', 'the next login leads to enrolment');

  const again = await request({ method: 'POST', url: `/v1/organization/users/${u.user.id}/mfa-reset`, token: adminA.token });
  t.equal(again.status, 409);
  t.equal(again.body.code, 'mfa_not_enrolled');

  const self = await request({ method: 'POST', url: `/v1/organization/users/${adminA.user.id}/mfa-reset`, token: adminA.token });
  t.equal(self.status, 409);
  t.equal(self.body.code, 'self_service_required', 'admins use DELETE /v1/me/mfa (with their password) for themselves');
  t.equal(await app.ctx.db.totpFactor.count({ where: { userId: adminA.user.id } }), 1);
});

t.test('password-reset mail: the admin never sees a password or link', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, app } = w;
  const u = await w.member(w.orgA.id, { email: 'forgetful@alpha.test' });
  const res = await request({ method: 'POST', url: `/v1/organization/users/${u.user.id}/password-reset`, token: adminA.token });
  t.equal(res.status, 200);
  t.notMatch(res.raw, /token|reset-password|password"/i);
  const [mail] = await mailsTo(app, 'forgetful@alpha.test');
  t.equal(mail?.template, 'password_reset');
  t.match(mail?.textBody, 'https://shop.example.test/reset-password?token=');
  const [audit] = await auditOf(app, 'password.reset_requested', u.user.id);
  t.match(audit, { actorUserId: adminA.user.id, details: { by: 'admin' } });

  const inv = await w.member(w.orgA.id, { status: 'INVITED' });
  const notActive = await request({ method: 'POST', url: `/v1/organization/users/${inv.user.id}/password-reset`, token: adminA.token });
  t.equal(notActive.status, 409);
  t.equal(notActive.body.code, 'user_not_activated');
  const self = await request({ method: 'POST', url: `/v1/organization/users/${adminA.user.id}/password-reset`, token: adminA.token });
  t.equal(self.body.code, 'self_service_required');
});

t.test('roles: grant and revoke CUSTOMER_ADMIN; never SUPPORT; never one\'s own', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, app } = w;
  const u = await w.member(w.orgA.id);
  const put = (id: string, roles: string[], token = adminA.token) =>
    request({ method: 'PUT', url: `/v1/organization/users/${id}/roles`, token, body: { roles } });

  const promoted = await put(u.user.id, ['USER', 'CUSTOMER_ADMIN']);
  t.equal(promoted.status, 200);
  t.same(promoted.body.roles, ['USER', 'CUSTOMER_ADMIN']);
  const [audit] = await auditOf(app, 'user.roles_changed', u.user.id);
  t.match(audit?.details, { from: ['USER'], to: ['USER', 'CUSTOMER_ADMIN'] });

  const promotedToken = await w.tokenFor(u.user);
  const demoted = await put(u.user.id, ['USER']);
  t.equal(demoted.status, 200);
  t.same(demoted.body.roles, ['USER']);
  t.equal((await request({ url: '/v1/organization/users', token: promotedToken })).status, 401, "a demoted admin's sessions end");

  const support = await put(u.user.id, ['SUPPORT']);
  t.equal(support.status, 400, 'SUPPORT is not even a valid value here');
  const extra = await request({ method: 'PUT', url: `/v1/organization/users/${u.user.id}/roles`, token: adminA.token, body: { roles: ['USER'], organizationId: w.orgB.id } });
  t.equal(extra.status, 400);

  const own = await put(adminA.user.id, ['USER']);
  t.equal(own.status, 403);
  t.equal(own.body.code, 'own_roles_immutable');
  const ownSame = await put(adminA.user.id, ['USER', 'CUSTOMER_ADMIN']);
  t.equal(ownSame.body.code, 'own_roles_immutable');
  t.same((await app.ctx.db.user.findUniqueOrThrow({ where: { id: adminA.user.id } })).roles, ['USER', 'CUSTOMER_ADMIN']);
});

t.test('last administrator: two admins demoting each other at once leave exactly one', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, app } = w;
  const second = await w.member(w.orgA.id, { roles: ['USER', 'CUSTOMER_ADMIN'] });
  const secondToken = await w.tokenFor(second.user);
  const [a, b] = await Promise.all([
    request({ method: 'PUT', url: `/v1/organization/users/${second.user.id}/roles`, token: adminA.token, body: { roles: ['USER'] } }),
    request({ method: 'PUT', url: `/v1/organization/users/${adminA.user.id}/roles`, token: secondToken, body: { roles: ['USER'] } }),
  ]);
  t.equal([a.status, b.status].filter((s) => s === 200).length, 1, `exactly one demotion wins (${a.status}, ${b.status})`);
  const loser = a.status === 200 ? b : a;
  // The loser was demoted first: it is no administrator any more (403), or its session ended (401).
  t.ok([401, 403, 409].includes(loser.status), `loser: ${loser.status} ${loser.body.code}`);
  const admins = await app.ctx.db.user.count({ where: { organizationId: w.orgA.id, roles: { has: 'CUSTOMER_ADMIN' } } });
  t.equal(admins, 1, 'the organisation keeps one administrator');
});

t.test('pages through users of the same name: none skipped, none twice (mutation review, session 21)', async (t) => {
  const w = await adminWorld(t);
  for (let i = 0; i < 3; i++) await w.member(w.orgA.id, { name: 'Sam Same', email: `same${i}@alpha.test` });
  const all = await w.request({ url: '/v1/organization/users', token: w.adminA.token });
  t.equal(all.body.items.length, 4);
  const { ids } = await pagedIds(async (query) => {
    const res = await w.request<CursorPage>({ url: `/v1/organization/users?${query}`, token: w.adminA.token });
    t.equal(res.status, 200);
    return res.body;
  }, 2);
  t.same(ids, all.body.items.map((u: { id: string }) => u.id), 'every user once, in the order of the full list');
});

t.test('a page without limit holds 25 users; limit=100 is accepted (mutation review, session 22)', async (t) => {
  const w = await adminWorld(t);
  for (let i = 0; i < 25; i++) await w.member(w.orgA.id, { name: `Member ${String(i).padStart(2, '0')}`, email: `member${i}@alpha.test`, withTotp: false });
  const list = (query: string) => w.request<{ items: { id: string }[]; nextCursor: string | null }>({ url: `/v1/organization/users${query}`, token: w.adminA.token });
  const first = await list('');
  t.equal(first.status, 200);
  t.equal(first.body.items.length, 25, 'the default page size');
  t.type(first.body.nextCursor, 'string', 'the 26th user is on the next page');
  const second = await list(`?cursor=${encodeURIComponent(first.body.nextCursor!)}`);
  t.equal(second.body.items.length, 1);
  t.equal(second.body.nextCursor, null);
  const max = await list('?limit=100');
  t.equal(max.status, 200);
  t.equal(max.body.items.length, 26, 'the largest page takes them all');
  t.equal(max.body.nextCursor, null);
});
