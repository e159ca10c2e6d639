import t from 'tap';
import { sha256Hex } from '../../../src/lib/tokens.js';
import { inviteUser, tokenFromLink } from '../../helpers/accounts.js';
import { createOrganization, signIn } from '../../helpers/factories.js';
import { openClient, waitForLockWaiters } from '../../helpers/row-locks.js';
import { adminWorld, auditOf, mailsTo } from '../organization/helpers.js';

const CSO_SECRET = 'cso-secret-for-suspension-tests-0123456789';
const CSO = `Basic ${Buffer.from(`cso:${CSO_SECRET}`).toString('base64')}`;

t.test('support suspends an organisation: everyone in it is blocked at once; reinstating brings back exactly those', async (t) => {
  const w = await adminWorld(t, { SERVICE_CLIENTS: `cso:${sha256Hex(CSO_SECRET)}` });
  const { request, app, adminA, adminB, support } = w;
  const jon = await w.member(w.orgA.id, { name: 'Jon Member' });
  const jonSession = await signIn(app, jon.user);
  const invite = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'ivy@alpha.test', name: 'Ivy Invited' } });
  t.equal(invite.status, 201);
  const ivyLink = tokenFromLink((await mailsTo(app, 'ivy@alpha.test'))[0]!.textBody, '/activate');
  const bob = await w.member(w.orgA.id, { name: 'Bob Blocked' });
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${bob.user.id}/block`, token: adminA.token })).status, 200);
  const mailsBefore = await app.ctx.db.mailOutbox.count();

  const suspended = await request({ method: 'POST', url: `/v1/support/organizations/${w.orgA.id}/suspend`, token: support.token, body: { reason: 'Contract ended 2026-11-30' } });
  t.equal(suspended.status, 200);
  t.match(suspended.body, { id: w.orgA.id, suspension: { at: w.clock.now().toISOString(), reason: 'Contract ended 2026-11-30' }, activeAdministratorCount: 0 });

  // Everyone is out at once: access tokens, refresh tokens, introspection, sign-in, links.
  t.equal((await request({ url: '/v1/me', token: adminA.token })).status, 401, "the administrator's session ended");
  t.equal((await request({ url: '/v1/auth/refresh', body: { refreshToken: jonSession.refreshToken } })).body.code, 'refresh_token_invalid');
  t.same((await request({ method: 'POST', url: '/v1/tokens/introspect', headers: { authorization: CSO }, body: { token: jonSession.accessToken } })).body, { active: false });
  const login = await request({ url: '/v1/auth/login', body: { email: jon.user.email, password: jon.password } });
  t.equal(login.body.code, 'account_blocked');
  t.match(login.body.contact, { administrators: [] }, 'whom to contact: support, the administrators are blocked too');
  t.equal((await request({ url: '/v1/activation/inspect', body: { token: ivyLink } })).body.code, 'account_blocked', 'the invitation stops working');
  t.equal(await app.ctx.db.mailOutbox.count(), mailsBefore, 'nobody is mailed');
  t.match(await auditOf(app, 'organization.suspended'), [
    { actorUserId: support.user.id, organizationId: w.orgA.id, details: { reason: 'Contract ended 2026-11-30', usersBlocked: 3, sessionsRevoked: 2 } },
  ]);
  t.match(await auditOf(app, 'user.blocked', jon.user.id), [{ actorUserId: support.user.id, details: { by: 'support', via: 'organization_suspended' } }], 'each block is audited too');
  t.match(await auditOf(app, 'user.blocked', adminA.user.id), [{ details: { linksWithdrawn: [{ userId: invite.body.id, purpose: 'ACTIVATION' }] } }], 'links members sent each other are withdrawn, as by a block');

  // While suspended: nobody is unblocked, invited or appointed; it is not suspended twice.
  for (const [what, method, url, body, code] of [
    ['unblock a member', 'POST', `/v1/support/users/${jon.user.id}/unblock`, undefined, 'organization_suspended'],
    ['appoint an administrator', 'POST', `/v1/support/organizations/${w.orgA.id}/administrators`, { email: 'new-admin@alpha.test', name: 'New Admin' }, 'organization_suspended'],
    ['suspend again', 'POST', `/v1/support/organizations/${w.orgA.id}/suspend`, { reason: 'again' }, 'organization_suspended'],
  ] as const) {
    const res = await request({ method, url, token: support.token, ...(body ? { body } : {}) });
    t.same([res.status, res.body.code], [409, code], what);
  }
  t.equal(await app.ctx.db.user.count({ where: { email: 'new-admin@alpha.test' } }), 0);
  t.equal((await request({ url: '/v1/me', token: adminB.token })).status, 200, 'other organisations are untouched');
  const listed = async (q: string) => (await request({ url: `/v1/support/organizations?${q}`, token: support.token })).body.items.map((o: { id: string }) => o.id);
  t.same(await listed('suspended=true'), [w.orgA.id], 'support lists the suspended organisations');
  t.same(await listed('suspended=false'), [w.orgB.id], '… and the others');
  const found = await request({ url: `/v1/support/users?email=${encodeURIComponent(jon.user.email)}`, token: support.token });
  t.match(found.body.items[0], { status: 'BLOCKED', blockedBySuspension: true, blockedBySupport: false }, 'support sees why the user is blocked');

  const reinstated = await request({ method: 'POST', url: `/v1/support/organizations/${w.orgA.id}/reinstate`, token: support.token });
  t.equal(reinstated.status, 200);
  t.match(reinstated.body, { suspension: null, activeAdministratorCount: 1 });
  t.match(await app.ctx.db.organization.findUniqueOrThrow({ where: { id: w.orgA.id } }), { suspendedAt: null, suspensionReason: null }, 'the reason goes with the suspension (mutation review, session 22)');
  const statusOf = async (id: string) => (await app.ctx.db.user.findUniqueOrThrow({ where: { id } })).status;
  t.equal(await statusOf(adminA.user.id), 'ACTIVE');
  t.equal(await statusOf(jon.user.id), 'ACTIVE');
  t.match((await request({ url: `/v1/support/users?email=${encodeURIComponent(jon.user.email)}`, token: support.token })).body.items[0], { blockedBySuspension: false, blockedBySupport: false });
  t.equal(await statusOf(invite.body.id), 'INVITED', 'never activated: invited again');
  t.equal(await statusOf(bob.user.id), 'BLOCKED', 'blocked before the suspension, on their own: stays blocked');
  t.equal((await mailsTo(app, jon.user.email)).at(-1)?.template, 'account_unblocked');
  t.equal((await mailsTo(app, 'ivy@alpha.test')).at(-1)?.template, 'activation', 'a new activation link');
  // Support walkthrough, session 31: the first link said "withdrawn, ask for a new one" though the
  // new one was in the inbox already.
  const oldLink = await request({ url: '/v1/activation/inspect', body: { token: ivyLink } });
  t.match([oldLink.status, oldLink.body.code, oldLink.body.linkState], [410, 'link_used', 'replaced'], 'the first link points to the newest e-mail');
  t.match(oldLink.body.detail, /newest e-mail/);
  t.match(await auditOf(app, 'organization.reinstated'), [{ actorUserId: support.user.id, organizationId: w.orgA.id, details: { usersUnblocked: 3 } }]);
  t.equal((await request({ url: '/v1/auth/login', body: { email: jon.user.email, password: jon.password } })).body.next, 'mfa', 'signs in again');

  const again = await request({ method: 'POST', url: `/v1/support/organizations/${w.orgA.id}/reinstate`, token: support.token });
  t.same([again.status, again.body.code], [409, 'organization_not_suspended']);
});

t.test('suspension: only support, only a real organisation, with a reason', async (t) => {
  const w = await adminWorld(t);
  const { request, support, adminA } = w;
  for (const [what, url, token, body, status, code] of [
    ['an administrator', `/v1/support/organizations/${w.orgA.id}/suspend`, adminA.token, { reason: 'x1' }, 403, 'forbidden'],
    ['an unknown organisation', '/v1/support/organizations/0190a0a0-0000-7000-8000-000000000000/suspend', support.token, { reason: 'x1' }, 404, 'organization_not_found'],
    ['no reason', `/v1/support/organizations/${w.orgA.id}/suspend`, support.token, {}, 400, 'validation_failed'],
    ['a blank reason', `/v1/support/organizations/${w.orgA.id}/suspend`, support.token, { reason: '   ' }, 400, 'validation_failed'],
    ['reinstating an organisation that is not suspended', `/v1/support/organizations/${w.orgA.id}/reinstate`, support.token, undefined, 409, 'organization_not_suspended'],
  ] as const) {
    const res = await request({ method: 'POST', url, token, ...(body ? { body } : {}) });
    t.same([res.status, res.body.code], [status, code], what);
  }
  t.equal((await w.app.ctx.db.organization.findUniqueOrThrow({ where: { id: w.orgA.id } })).suspendedAt, null);
  t.equal((await request({ url: '/v1/me', token: adminA.token })).status, 200);
});

t.test('an activation while the suspension waits for a member row: no deadlock, both take effect in order', async (t) => {
  // Blocking an administrator touches the links they sent; an activation locks its user row and
  // then that link. The suspension locks every user row first, so the two cannot wait on each other
  // (found by session 17's review: PostgreSQL aborted one of them with a deadlock, a 500).
  const w = await adminWorld(t);
  const { request, app, adminA, support, databaseUrl } = w;
  const member = await w.member(w.orgA.id); // id between the administrator's and the invitee's (UUIDv7)
  const invite = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'ivy@alpha.test', name: 'Ivy Invited' } });
  const ivyLink = tokenFromLink((await mailsTo(app, 'ivy@alpha.test'))[0]!.textBody, '/activate');
  const holder = await openClient(t, databaseUrl);
  const watcher = await openClient(t, databaseUrl);
  await holder.query('BEGIN');
  await holder.query('SELECT 1 FROM users WHERE id = $1::uuid FOR UPDATE', [member.user.id]);

  const suspension = request({ method: 'POST', url: `/v1/support/organizations/${w.orgA.id}/suspend`, token: support.token, body: { reason: 'Fraud' } });
  await waitForLockWaiters(watcher, 1);
  const activation = await request({ url: '/v1/activation', body: { token: ivyLink, password: 'Velvet orbit lantern 93!' } });
  t.equal(activation.status, 200, 'the activation, before the suspension reached the invitee, goes through');
  await holder.query('COMMIT');
  const suspended = await suspension;
  t.equal(suspended.status, 200, `the suspension too (${suspended.body.code ?? ''})`);
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: invite.body.id } })).status, 'BLOCKED', 'and it blocks the newly activated user');
});

t.test('a user blocked on their own during the suspension stays blocked when it is lifted', async (t) => {
  const w = await adminWorld(t);
  const { request, app, support } = w;
  const mallory = await w.member(w.orgA.id, { name: 'Mallory Fraud' });
  const jon = await w.member(w.orgA.id, { name: 'Jon Member' });
  t.equal((await request({ method: 'POST', url: `/v1/support/organizations/${w.orgA.id}/suspend`, token: support.token, body: { reason: 'Fraud by Mallory' } })).status, 200);
  const blocked = await request({ method: 'POST', url: `/v1/support/users/${mallory.user.id}/block`, token: support.token });
  t.equal(blocked.status, 200, 'a block on their own, on top of the suspension');
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${mallory.user.id}/block`, token: support.token })).body.code, 'already_blocked');
  t.equal((await request({ method: 'POST', url: `/v1/support/organizations/${w.orgA.id}/reinstate`, token: support.token })).status, 200);
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: mallory.user.id } })).status, 'BLOCKED', 'Mallory stays blocked');
  const byAdmin = await request({ method: 'POST', url: `/v1/organization/users/${mallory.user.id}/unblock`, token: await w.tokenFor(w.adminA.user) });
  t.same([byAdmin.status, byAdmin.body.code], [409, 'blocked_by_support'], 'and her administrator cannot lift a block support imposed');
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: jon.user.id } })).status, 'ACTIVE');
  t.match(await auditOf(app, 'user.unblocked', jon.user.id), [{ details: { by: 'support', status: 'ACTIVE', via: 'organization_reinstated' } }]);
  t.equal((await auditOf(app, 'user.unblocked', mallory.user.id)).length, 0);
});

t.test('suspending an organisation of more than 500 users audits the block of each one (mutation review, session 22)', async (t) => {
  const w = await adminWorld(t);
  // More rows than one audit statement takes (AUDIT_ROWS_PER_STATEMENT = 500).
  await w.app.ctx.db.user.createMany({
    data: Array.from({ length: 520 }, (_, i) => ({
      email: `m${String(i).padStart(3, '0')}@beta.test`,
      name: `Member ${i}`,
      organizationId: w.orgB.id,
      roles: ['USER' as const],
      status: 'ACTIVE' as const,
    })),
  });
  const suspended = await w.request({ method: 'POST', url: `/v1/support/organizations/${w.orgB.id}/suspend`, token: w.support.token, body: { reason: 'Contract ended' } });
  t.equal(suspended.status, 200);
  t.match(await auditOf(w.app, 'organization.suspended'), [{ details: { usersBlocked: 521 } }]);
  const blocked = await w.app.ctx.db.auditEvent.count({ where: { type: 'user.blocked', organizationId: w.orgB.id } });
  t.equal(blocked, 521, 'one user.blocked row for each of the 521 users');
});

t.test("an invitation renewed by the reinstatement sends the invitee to their organisation's administrator, who can send another (desk review, session 23)", async (t) => {
  const w = await adminWorld(t);
  const { request, app, support } = w;
  const gamma = await createOrganization(app.ctx.db, { name: 'Gamma Reseller' });
  // The invitee's id sorts before the administrator's: in id order the reinstatement would renew the
  // invitation while the administrator is still blocked.
  const ivy = await inviteUser(app, { organizationId: gamma.id, name: 'Ivy Invited', email: 'ivy@gamma.test' });
  await w.member(gamma.id, { name: 'Gus Admin', roles: ['USER', 'CUSTOMER_ADMIN'] });

  t.equal((await request({ method: 'POST', url: `/v1/support/organizations/${gamma.id}/suspend`, token: support.token, body: { reason: 'Credit stop' } })).status, 200);
  const reinstated = await request({ method: 'POST', url: `/v1/support/organizations/${gamma.id}/reinstate`, token: support.token });
  t.match(reinstated.body, { activeAdministratorCount: 1 });
  const renewed = (await mailsTo(app, ivy.user.email)).at(-1)!;
  t.equal(renewed.template, 'activation', 'a new activation link');
  t.match(renewed.textBody, "ask your organisation's administrator to send a new one", 'only administrators resend invitations');
  t.notMatch(renewed.textBody, app.ctx.config.supportContact);
});
