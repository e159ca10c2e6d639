import t from 'tap';
import { GOOD_PASSWORD, tokenFromLink } from '../../helpers/accounts.js';
import { adminWorld, auditOf, mailsTo } from '../organization/helpers.js';

t.test('support creates an organisation with its first administrator, in one transaction', async (t) => {
  const w = await adminWorld(t);
  const { request, support, app } = w;
  const create = (body: object) => request({ method: 'POST', url: '/v1/support/organizations', token: support.token, body });

  const res = await create({ customerNumber: '100-2000', name: 'Gamma GmbH', administrator: { email: 'Chef@Gamma.test', name: 'Greta Gamma' } });
  t.equal(res.status, 201);
  t.match(res.body.organization, { customerNumber: '100-2000', name: 'Gamma GmbH', userCount: 1, activeAdministratorCount: 0 });
  t.match(res.body.administrator, { email: 'Chef@Gamma.test', status: 'INVITED', roles: ['USER', 'CUSTOMER_ADMIN'] });
  t.notMatch(res.raw, /token|activate\?/, 'no activation link in the API');
  const orgId = res.body.organization.id as string;
  const [mail] = await mailsTo(app, 'chef@gamma.test');
  t.equal(mail?.template, 'activation');
  t.match(mail?.textBody, 'Gamma GmbH');
  const [created] = await auditOf(app, 'organization.created');
  t.match(created, { actorUserId: support.user.id, organizationId: orgId });
  t.match(created?.details, { customerNumber: '100-2000', name: 'Gamma GmbH', via: 'support' }, 'the audit says it came through the support API, not the CLI (mutation review, session 22)');
  t.match((await auditOf(app, 'user.invited', res.body.administrator.id))[0], { actorUserId: support.user.id, organizationId: orgId });
  t.match((await auditOf(app, 'organization.administrator_appointed', res.body.administrator.id))[0], { actorUserId: support.user.id });

  const dupNumber = await create({ customerNumber: '100-2000', name: 'Other', administrator: { email: 'fresh@other.test', name: 'F' } });
  t.equal(dupNumber.status, 409);
  t.equal(dupNumber.body.code, 'customer_number_taken');
  // Customer numbers are one regardless of case (search ignores case too): "gx-7" after "GX-7" is taken.
  t.equal((await create({ customerNumber: 'GX-7', name: 'Upper', administrator: { email: 'upper@gx.test', name: 'U' } })).status, 201);
  const dupCase = await create({ customerNumber: 'gx-7', name: 'Lower', administrator: { email: 'lower@gx.test', name: 'L' } });
  t.equal(dupCase.status, 409);
  t.equal(dupCase.body.code, 'customer_number_taken');
  t.equal(await app.ctx.db.user.count({ where: { email: 'lower@gx.test' } }), 0);
  const dupEmail = await create({ customerNumber: '100-2001', name: 'Other', administrator: { email: 'CHEF@gamma.TEST', name: 'F' } });
  t.equal(dupEmail.status, 409);
  t.equal(dupEmail.body.code, 'email_taken');
  t.equal(await app.ctx.db.organization.count({ where: { customerNumber: '100-2001' } }), 0, 'no organisation without its administrator');
  t.equal(await app.ctx.db.user.count({ where: { email: 'fresh@other.test' } }), 0);

  for (const body of [
    { customerNumber: '1', name: 'X' },
    { customerNumber: '1', name: 'X', administrator: { email: 'a@b.test', name: 'A', roles: ['SUPPORT'] } },
    { customerNumber: 'bad number!', name: 'X', administrator: { email: 'a@b.test', name: 'A' } },
  ]) {
    t.equal((await create(body)).status, 400);
  }

  const admin = await request({ method: 'POST', url: '/v1/support/organizations', token: w.adminA.token, body: { customerNumber: '9', name: 'N', administrator: { email: 'n@n.test', name: 'N' } } });
  t.equal(admin.status, 403, 'customer administrators cannot create organisations');
});

t.test('support searches organisations and views one with its users', async (t) => {
  const w = await adminWorld(t);
  const { request, support } = w;
  await app(w).db.organization.update({ where: { id: w.orgA.id }, data: { customerNumber: 'K-4711' } });
  await w.member(w.orgA.id, { name: 'Member A' });

  const search = async (q: string) => (await request({ url: `/v1/support/organizations${q}`, token: support.token })).body;
  t.same((await search('')).items.map((o: { name: string }) => o.name), ['Alpha Reseller', 'Beta Reseller']);
  t.same((await search('?q=beta')).items.map((o: { name: string }) => o.name), ['Beta Reseller'], 'by name');
  t.same((await search('?q=k-47')).items.map((o: { name: string }) => o.name), ['Alpha Reseller'], 'by customer number');
  const paged = await search('?limit=1');
  t.equal(paged.items.length, 1);
  t.same((await search(`?limit=1&cursor=${paged.nextCursor}`)).items.map((o: { name: string }) => o.name), ['Beta Reseller']);
  t.match((await search('?q=alpha')).items[0], { userCount: 2, activeAdministratorCount: 1 });

  const one = await request({ url: `/v1/support/organizations/${w.orgA.id}`, token: support.token });
  t.equal(one.status, 200);
  t.same(one.body.users.map((u: { name: string }) => u.name), ['Alice Admin', 'Member A']);
  t.notMatch(one.raw, /passwordHash|\$argon2|secret/i);
  const missing = await request({ url: '/v1/support/organizations/00000000-0000-7000-8000-000000000000', token: support.token });
  t.equal(missing.status, 404);
  t.equal(missing.body.code, 'organization_not_found');
  t.equal((await request({ url: `/v1/support/organizations/${w.orgA.id}`, token: w.adminA.token })).status, 403);
});

t.test("a big organisation's detail lists its first 500 users by name and counts them all; the search pages through the rest", async (t) => {
  const w = await adminWorld(t);
  // Found by session 19's review: every user in one answer (20,000 users: 11 MB).
  await app(w).db.user.createMany({
    data: Array.from({ length: 520 }, (_, i) => ({
      email: `u${String(i).padStart(3, '0')}@alpha.test`,
      name: `User ${String(i).padStart(3, '0')}`,
      organizationId: w.orgA.id,
      roles: ['USER' as const],
      status: 'INVITED' as const,
    })),
  });
  const one = await w.request({ url: `/v1/support/organizations/${w.orgA.id}`, token: w.support.token });
  t.equal(one.status, 200);
  t.equal(one.body.userCount, 521);
  t.equal(one.body.users.length, 500);
  t.equal(one.body.users[0].name, 'Alice Admin');
  t.equal(one.body.users.at(-1).name, 'User 498');
  const rest = await w.request({ url: `/v1/support/users?organizationId=${w.orgA.id}&q=User 5&limit=100`, token: w.support.token });
  t.same(rest.body.items.map((u: { name: string }) => u.name).sort().slice(-2), ['User 518', 'User 519']);
});

t.test('appoint an administrator only where no active one is left', async (t) => {
  const w = await adminWorld(t);
  const { request, support, app: application } = w;
  const db = application.ctx.db;
  const appoint = (orgId: string, body: object) =>
    request({ method: 'POST', url: `/v1/support/organizations/${orgId}/administrators`, token: support.token, body });
  const member = await w.member(w.orgA.id, { name: 'Mia Member' });

  const refused = await appoint(w.orgA.id, { userId: member.user.id });
  t.equal(refused.status, 409);
  t.equal(refused.body.code, 'administrator_exists', 'Alpha still has Alice: it manages its own roles');

  // Alice is blocked already (set up in the database; replacing an active one: replace-administrator.test.ts).
  await db.user.update({ where: { id: w.adminA.user.id }, data: { status: 'BLOCKED', blockedAt: new Date() } });
  const promoted = await appoint(w.orgA.id, { userId: member.user.id });
  t.equal(promoted.status, 200);
  t.same(promoted.body.roles, ['USER', 'CUSTOMER_ADMIN']);
  t.match((await auditOf(application, 'organization.administrator_appointed', member.user.id))[0], { actorUserId: support.user.id, organizationId: w.orgA.id, details: { invited: false } });
  t.match((await auditOf(application, 'user.roles_changed', member.user.id))[0], { actorUserId: support.user.id });
  t.equal((await appoint(w.orgA.id, { email: 'new@alpha.test', name: 'N' })).body.code, 'administrator_exists', 'now there is one again');

  // An organisation whose only administrator never activated: invite a new one.
  const gamma = await db.organization.create({ data: { customerNumber: 'G-1', name: 'Gamma' } });
  await w.member(gamma.id, { roles: ['USER', 'CUSTOMER_ADMIN'], status: 'INVITED' });
  const invited = await appoint(gamma.id, { email: 'Boss@Gamma.test', name: 'Boss' });
  t.equal(invited.status, 201);
  t.match(invited.body, { status: 'INVITED', roles: ['USER', 'CUSTOMER_ADMIN'], organizationId: gamma.id });
  t.equal((await mailsTo(application, 'boss@gamma.test'))[0]?.template, 'activation');

  const foreign = await appoint(gamma.id, { userId: w.adminB.user.id });
  t.equal(foreign.status, 404, 'a user of another organisation cannot be appointed here');
  t.equal(foreign.body.code, 'user_not_found');
  t.equal((await appoint('00000000-0000-7000-8000-000000000000', { email: 'x@x.test', name: 'X' })).body.code, 'organization_not_found');
  t.equal((await appoint(gamma.id, { email: w.adminB.user.email, name: 'Dup' })).body.code, 'email_taken');
  t.equal((await appoint(gamma.id, { userId: member.user.id, email: 'x@x.test' })).status, 400, 'one form or the other');
  t.equal(
    (await request({ method: 'POST', url: `/v1/support/organizations/${gamma.id}/administrators`, token: w.adminB.token, body: { email: 'y@y.test', name: 'Y' } })).status,
    403,
  );
});

t.test('appointing the invited first administrator whose link expired sends a new activation link', async (t) => {
  const w = await adminWorld(t);
  const { request, support, app: application, clock } = w;
  const created = await request({
    method: 'POST',
    url: '/v1/support/organizations',
    token: support.token,
    body: { customerNumber: 'X-1', name: 'Late Starter GmbH', administrator: { email: 'first@late.test', name: 'First Admin' } },
  });
  t.equal(created.status, 201);
  const orgId = created.body.organization.id as string;
  const adminId = created.body.administrator.id as string;
  const firstLink = tokenFromLink((await mailsTo(application, 'first@late.test'))[0]!.textBody);

  clock.advance(8 * 24 * 3600); // the 7-day link expired
  t.equal((await request({ url: '/v1/activation/inspect', body: { token: firstLink } })).body.code, 'link_expired');
  const supportToken = await w.tokenFor(support.user); // a session of 8 days later

  const resend = await request({ method: 'POST', url: `/v1/organization/users/${adminId}/activation-email`, token: supportToken });
  t.equal(resend.status, 403, 'support does not resend activations; it appoints');
  const appointed = await request({
    method: 'POST',
    url: `/v1/support/organizations/${orgId}/administrators`,
    token: supportToken,
    body: { userId: adminId },
  });
  t.equal(appointed.status, 200);
  t.match(appointed.body, { id: adminId, status: 'INVITED', roles: ['USER', 'CUSTOMER_ADMIN'] });
  t.notMatch(appointed.raw, /token|activate\?/, 'no activation link in the API');

  const mails = await mailsTo(application, 'first@late.test');
  t.same(mails.map((m) => m.template), ['activation', 'activation'], 'a new activation mail');
  const flows = await application.ctx.db.flowToken.findMany({ where: { userId: adminId, purpose: 'ACTIVATION' }, orderBy: { createdAt: 'asc' } });
  t.same(flows.map((f) => f.state), ['VOIDED', 'PENDING'], 'only the newest link works');
  t.match((await auditOf(application, 'user.activation_resent', adminId))[0], { actorUserId: support.user.id, organizationId: orgId, details: { by: 'support' } });
  t.match((await auditOf(application, 'organization.administrator_appointed', adminId)).at(-1), { actorUserId: support.user.id, details: { invited: false } });

  const newLink = tokenFromLink(mails[1]!.textBody);
  const inspect = await request({ url: '/v1/activation/inspect', body: { token: newLink } });
  t.equal(inspect.status, 200);
  t.match(inspect.body, { email: 'first@late.test', organizationName: 'Late Starter GmbH' });
  t.equal((await request({ url: '/v1/activation', body: { token: newLink, password: GOOD_PASSWORD } })).status, 200, 'the administrator activates');

  // Appointing an active member sends no activation mail.
  const member = await w.member(w.orgB.id, { email: 'mia@beta.test' });
  // Bob is blocked already (set up in the database; replacing an active one: replace-administrator.test.ts).
  await application.ctx.db.user.update({ where: { id: w.adminB.user.id }, data: { status: 'BLOCKED', blockedAt: new Date() } });
  t.equal((await request({ method: 'POST', url: `/v1/support/organizations/${w.orgB.id}/administrators`, token: supportToken, body: { userId: member.user.id } })).status, 200);
  t.same(await mailsTo(application, 'mia@beta.test'), []);
});

function app(w: { app: { ctx: { db: import('../../../src/db/client.js').Db } } }) {
  return w.app.ctx;
}
