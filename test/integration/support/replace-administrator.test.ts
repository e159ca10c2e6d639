import t from 'tap';
import { sha256Hex } from '../../../src/lib/tokens.js';
import { signIn } from '../../helpers/factories.js';
import { adminWorld, auditOf, mailsTo, type AdminWorld } from '../organization/helpers.js';

/**
 * Support replaces an organisation's only active administrator (left the company, compromised):
 * `POST /v1/support/organizations/{id}/administrators` with `replacing` appoints the successor and
 * blocks the replaced administrator in one transaction, so the organisation is never without one.
 */

const CSO_SECRET = 'cso-secret-0123456789abcdef';
const env = { SERVICE_CLIENTS: `cso:${sha256Hex(CSO_SECRET)}` };
const basic = `Basic ${Buffer.from(`cso:${CSO_SECRET}`).toString('base64')}`;

const appointIn = (w: AdminWorld, orgId: string, body: object, token = w.support.token) =>
  w.request({ method: 'POST', url: `/v1/support/organizations/${orgId}/administrators`, token, body });

const stored = (w: AdminWorld, id: string) => w.app.ctx.db.user.findUniqueOrThrow({ where: { id } });

t.test('support appoints a member replacing the sole active administrator: successor in, old administrator blocked', async (t) => {
  const w = await adminWorld(t, env);
  const { request, support, app, adminA } = w;
  const alice = await signIn(app, adminA.user);
  const mia = await w.member(w.orgA.id, { name: 'Mia Member', email: 'mia@alpha.test' });

  // Without `replacing` nothing changed: Alice is the last administrator and still active.
  const block = await request({ method: 'POST', url: `/v1/support/users/${adminA.user.id}/block`, token: support.token });
  t.match({ status: block.status, code: block.body.code }, { status: 409, code: 'last_administrator' });
  const plain = await appointIn(w, w.orgA.id, { userId: mia.user.id });
  t.match({ status: plain.status, code: plain.body.code }, { status: 409, code: 'administrator_exists' });

  const res = await appointIn(w, w.orgA.id, { userId: mia.user.id, replacing: adminA.user.id });
  t.equal(res.status, 200);
  t.match(res.body, { id: mia.user.id, status: 'ACTIVE', roles: ['USER', 'CUSTOMER_ADMIN'] });

  const org = await request({ url: `/v1/support/organizations/${w.orgA.id}`, token: support.token });
  t.equal(org.body.activeAdministratorCount, 1);
  t.match(org.body.users.find((u: { id: string }) => u.id === adminA.user.id), { status: 'BLOCKED', roles: ['USER', 'CUSTOMER_ADMIN'] });

  const refresh = await request({ url: '/v1/auth/refresh', body: { refreshToken: alice.refreshToken } });
  t.equal(refresh.status, 401, "Alice's sessions ended");
  t.equal((await request({ url: '/v1/me', token: alice.accessToken })).status, 401);
  const introspection = await request({ url: '/v1/tokens/introspect', body: { token: alice.accessToken }, headers: { authorization: basic } });
  t.same(introspection.body, { active: false }, "Alice's access token introspects inactive");
  t.equal(await app.ctx.db.session.count({ where: { userId: adminA.user.id, revokedAt: null } }), 0);
  const login = await request({ url: '/v1/auth/login', body: { email: adminA.user.email, password: adminA.password } });
  t.match({ status: login.status, code: login.body.code }, { status: 403, code: 'account_blocked' });

  const miaToken = await w.tokenFor(mia.user);
  t.equal((await request({ url: '/v1/organization/users', token: miaToken })).status, 200, 'Mia administers the organisation');

  const [blockedMail, ...more] = await mailsTo(app, adminA.user.email);
  t.equal(blockedMail?.template, 'account_blocked');
  t.notMatch(blockedMail?.textBody, 'Mia Member', 'the blocked administrator is sent to support, who alone can lift the block, not to the successor');
  t.same(more, []);
  t.same(await mailsTo(app, 'mia@alpha.test'), [], 'an active member gets no activation mail');

  t.match((await auditOf(app, 'user.roles_changed', mia.user.id))[0], { actorUserId: support.user.id, details: { to: ['USER', 'CUSTOMER_ADMIN'] } });
  t.match((await auditOf(app, 'organization.administrator_appointed', mia.user.id))[0], {
    actorUserId: support.user.id,
    organizationId: w.orgA.id,
    details: { invited: false, via: 'support', replacing: adminA.user.id },
  });
  t.match(await auditOf(app, 'user.blocked', adminA.user.id), [
    { actorUserId: support.user.id, organizationId: w.orgA.id, details: { by: 'support', via: 'administrator_replaced', sessionsRevoked: 2 } },
  ]);

  const again = await appointIn(w, w.orgA.id, { userId: mia.user.id, replacing: adminA.user.id });
  t.match({ status: again.status, code: again.body.code }, { status: 409, code: 'not_active_administrator' }, 'a replay changes nothing');
});

t.test('support invites a new administrator replacing the sole active one', async (t) => {
  const w = await adminWorld(t, env);
  const { support, app, adminA } = w;
  const alice = await signIn(app, adminA.user);

  const res = await appointIn(w, w.orgA.id, { email: 'Successor@Alpha.test', name: 'Sue Successor', replacing: adminA.user.id });
  t.equal(res.status, 201);
  t.match(res.body, { email: 'Successor@Alpha.test', status: 'INVITED', roles: ['USER', 'CUSTOMER_ADMIN'], organizationId: w.orgA.id });
  t.equal((await stored(w, adminA.user.id)).status, 'BLOCKED');
  t.equal((await w.request({ url: '/v1/auth/refresh', body: { refreshToken: alice.refreshToken } })).status, 401);

  t.equal((await mailsTo(app, 'successor@alpha.test'))[0]?.template, 'activation');
  const [blockedMail] = await mailsTo(app, adminA.user.email);
  t.equal(blockedMail?.template, 'account_blocked');
  t.notMatch(blockedMail?.textBody, 'Sue Successor', 'an administrator who has not activated yet is not offered as contact');
  t.match((await auditOf(app, 'user.invited', res.body.id))[0], { actorUserId: support.user.id, details: { via: 'support' } });
  t.match((await auditOf(app, 'organization.administrator_appointed', res.body.id))[0], {
    actorUserId: support.user.id,
    details: { invited: true, replacing: adminA.user.id },
  });
  t.match((await auditOf(app, 'user.blocked', adminA.user.id))[0], { actorUserId: support.user.id, details: { by: 'support', via: 'administrator_replaced' } });
});

t.test('replacing: every refusal (not found, other organisation, not an active administrator, same user, another active administrator, not support) changes nothing', async (t) => {
  const w = await adminWorld(t);
  const { app, adminA, adminB, support } = w;
  const mia = await w.member(w.orgA.id, { name: 'Mia Member' });
  const invitedAdmin = await w.member(w.orgA.id, { roles: ['USER', 'CUSTOMER_ADMIN'], status: 'INVITED' });
  const blockedAdmin = await w.member(w.orgA.id, { roles: ['USER', 'CUSTOMER_ADMIN'], status: 'BLOCKED' });
  const blockedMember = await w.member(w.orgA.id, { status: 'BLOCKED' });
  const expect = async (name: string, orgId: string, body: object, status: number, code: string) => {
    const res = await appointIn(w, orgId, body);
    t.match({ status: res.status, code: res.body.code }, { status, code }, name);
  };

  await expect('unknown user', w.orgA.id, { userId: mia.user.id, replacing: '00000000-0000-7000-8000-000000000000' }, 404, 'user_not_found');
  await expect("another organisation's administrator", w.orgA.id, { userId: mia.user.id, replacing: adminB.user.id }, 404, 'user_not_found');
  await expect('support staff', w.orgA.id, { userId: mia.user.id, replacing: support.user.id }, 404, 'user_not_found');
  await expect('a blocked member', w.orgA.id, { userId: mia.user.id, replacing: blockedMember.user.id }, 409, 'not_active_administrator');
  await expect('a member (invite form)', w.orgA.id, { email: 'n@alpha.test', name: 'N', replacing: mia.user.id }, 409, 'not_active_administrator');
  await expect('an invited administrator', w.orgA.id, { userId: mia.user.id, replacing: invitedAdmin.user.id }, 409, 'not_active_administrator');
  await expect('a blocked administrator', w.orgA.id, { userId: mia.user.id, replacing: blockedAdmin.user.id }, 409, 'not_active_administrator');
  await expect('the successor themselves', w.orgA.id, { userId: adminA.user.id, replacing: adminA.user.id }, 400, 'replacing_same_user');
  await expect('not a uuid', w.orgA.id, { userId: mia.user.id, replacing: 'alice' }, 400, 'validation_failed');
  await expect('unknown organisation', '00000000-0000-7000-8000-000000000000', { userId: mia.user.id, replacing: adminA.user.id }, 404, 'organization_not_found');
  await expect("Alice from Beta's side", w.orgB.id, { userId: adminB.user.id, replacing: adminA.user.id }, 404, 'user_not_found');
  await expect('a successor of another organisation', w.orgA.id, { userId: adminB.user.id, replacing: adminA.user.id }, 404, 'user_not_found');
  await expect('a blocked successor', w.orgA.id, { userId: blockedMember.user.id, replacing: adminA.user.id }, 409, 'user_blocked');
  await expect('an e-mail already used', w.orgA.id, { email: adminB.user.email, name: 'Dup', replacing: adminA.user.id }, 409, 'email_taken');

  const customer = await appointIn(w, w.orgA.id, { userId: mia.user.id, replacing: adminA.user.id }, adminA.token);
  t.equal(customer.status, 403, 'a customer administrator cannot call it');
  t.equal((await appointIn(w, w.orgB.id, { userId: mia.user.id, replacing: adminB.user.id }, adminA.token)).status, 403);

  // A second active administrator: the organisation governs itself.
  await w.member(w.orgA.id, { roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Dora Deputy' });
  await expect('another active administrator', w.orgA.id, { userId: mia.user.id, replacing: adminA.user.id }, 409, 'administrator_exists');
  await expect('another active administrator (invite form)', w.orgA.id, { email: 'n@alpha.test', name: 'N', replacing: adminA.user.id }, 409, 'administrator_exists');

  t.equal((await stored(w, adminA.user.id)).status, 'ACTIVE', 'Alice untouched');
  t.same((await stored(w, mia.user.id)).roles, ['USER'], 'Mia untouched');
  t.equal((await stored(w, adminB.user.id)).status, 'ACTIVE');
  t.equal(await app.ctx.db.user.count({ where: { email: 'n@alpha.test' } }), 0);
  t.same(await auditOf(app, 'user.blocked'), []);
  t.same(await auditOf(app, 'organization.administrator_appointed'), []);
  t.equal(await app.ctx.db.mailOutbox.count(), 0, 'no mail');
});

t.test('replacing an active administrator while an invited one exists: the invited one does not count as active', async (t) => {
  const w = await adminWorld(t);
  const { adminA } = w;
  const invitedAdmin = await w.member(w.orgA.id, { roles: ['USER', 'CUSTOMER_ADMIN'], status: 'INVITED', email: 'late@alpha.test' });

  const res = await appointIn(w, w.orgA.id, { userId: invitedAdmin.user.id, replacing: adminA.user.id });
  t.equal(res.status, 200);
  t.match(res.body, { id: invitedAdmin.user.id, status: 'INVITED', roles: ['USER', 'CUSTOMER_ADMIN'] });
  t.same((await mailsTo(w.app, 'late@alpha.test')).map((m) => m.template), ['activation'], 'a fresh activation link, as without replacing');
  t.equal((await stored(w, adminA.user.id)).status, 'BLOCKED');
});

t.test('an organisation id in upper case names the same organisation when replacing', async (t) => {
  const w = await adminWorld(t, env);
  const mia = await w.member(w.orgA.id, { name: 'Mia Member' });
  const res = await appointIn(w, w.orgA.id.toUpperCase(), { userId: mia.user.id, replacing: w.adminA.user.id });
  t.equal(res.status, 200);
  t.equal((await stored(w, w.adminA.user.id)).status, 'BLOCKED');
  t.ok((await stored(w, mia.user.id)).roles.includes('CUSTOMER_ADMIN'));
});

t.test('replacing: the successor named in another letter case than `replacing` is the same user, refused before anything changes (mutation review, session 22)', async (t) => {
  const w = await adminWorld(t);
  const { app, adminA } = w;
  const res = await appointIn(w, w.orgA.id, { userId: adminA.user.id.toUpperCase(), replacing: adminA.user.id });
  t.same([res.status, res.body.code], [400, 'replacing_same_user']);
  t.equal((await stored(w, adminA.user.id)).status, 'ACTIVE', 'the only administrator is not blocked');
  t.same(await auditOf(app, 'user.blocked'), []);
  t.same(await auditOf(app, 'organization.administrator_appointed'), []);
});

t.test('appointing a member who already holds CUSTOMER_ADMIN changes no roles and audits no role change (mutation review, session 22)', async (t) => {
  const w = await adminWorld(t);
  const { app, adminA } = w;
  const invitedAdmin = await w.member(w.orgA.id, { roles: ['USER', 'CUSTOMER_ADMIN'], status: 'INVITED', email: 'late@alpha.test' });
  const res = await appointIn(w, w.orgA.id, { userId: invitedAdmin.user.id, replacing: adminA.user.id });
  t.equal(res.status, 200);
  t.same(await auditOf(app, 'user.roles_changed', invitedAdmin.user.id), [], 'the roles did not change');
  t.match(await auditOf(app, 'organization.administrator_appointed', invitedAdmin.user.id), [{ details: { invited: false, replacing: adminA.user.id } }]);
});
