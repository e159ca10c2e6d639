import t from 'tap';
import { createOrganizationFromCli } from '../../../src/modules/support/bootstrap.service.js';
import { cliOrigin } from '../../../src/modules/support/cli-origin.js';
import { pagedIds } from '../../helpers/http.js';
import { adminWorld } from './helpers.js';

t.test('organisation audit log: own organisation only, newest first, filters, cursor pages', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, adminB, clock, app, support } = w;
  const u1 = await w.member(w.orgA.id, { name: 'One' });
  const u2 = await w.member(w.orgA.id, { name: 'Two' });
  const b1 = await w.member(w.orgB.id, { name: 'Bee' });

  const post = (token: string, path: string) => request({ method: 'POST', url: path, token });
  const t0 = clock.now();
  clock.advance(10);
  await post(adminA.token, `/v1/organization/users/${u1.user.id}/block`);
  clock.advance(10);
  await post(adminA.token, `/v1/organization/users/${u1.user.id}/unblock`);
  clock.advance(10);
  const t1 = clock.now();
  await post(adminA.token, `/v1/organization/users/${u2.user.id}/password-reset`);
  clock.advance(10);
  await post(adminB.token, `/v1/organization/users/${b1.user.id}/block`);
  clock.advance(10);
  await post(support.token, `/v1/support/users/${u2.user.id}/block`);

  const list = (query = '') => request({ url: `/v1/organization/audit-events${query}`, token: adminA.token });
  const all = await list();
  t.equal(all.status, 200);
  const admin = (items: { type: string }[]) => items.filter((e) => !e.type.startsWith('session.'));
  t.same(
    admin(all.body.items).map((e) => e.type),
    ['user.blocked', 'password.reset_requested', 'user.unblocked', 'user.blocked'],
    'newest first, nothing of organisation B',
  );
  t.notMatch(all.raw, new RegExp(b1.user.id), 'no event of another organisation');
  const first = admin(all.body.items)[3];
  t.match(first, {
    type: 'user.blocked',
    organizationId: w.orgA.id,
    actor: { id: adminA.user.id, name: 'Alice Admin' },
    subject: { id: u1.user.id, name: 'One' },
    ip: '127.0.0.1',
    details: { by: 'admin' },
  });
  const bySupport = all.body.items[0];
  t.match(bySupport, { actor: { id: support.user.id, name: 'Sam Support' }, ip: null, userAgent: null }, "support's network details stay hidden from customers");
  t.equal(bySupport.actor.email, null, "nor the support employee's own address (customers write to SUPPORT_CONTACT)");
  t.notMatch(all.raw, support.user.email);
  const supportView = await request({ url: `/v1/support/audit-events?organizationId=${w.orgA.id}&type=user.blocked`, token: support.token });
  t.equal(supportView.body.items[0].actor.email, support.user.email, 'the support log shows it');

  const types = async (query: string) => admin((await list(query)).body.items).map((e) => e.type);
  t.same(await types(`?userId=${u1.user.id}`), ['user.unblocked', 'user.blocked']);
  t.same(await types(`?userId=${adminA.user.id}`), ['password.reset_requested', 'user.unblocked', 'user.blocked'], 'the user as actor too');
  t.same(await types('?type=user.blocked'), ['user.blocked', 'user.blocked']);
  t.same(await types(`?from=${encodeURIComponent(t1.toISOString())}`), ['user.blocked', 'password.reset_requested']);
  t.same(await types(`?to=${encodeURIComponent(t1.toISOString())}`), ['user.unblocked', 'user.blocked']);
  t.same(await types(`?from=${encodeURIComponent(t0.toISOString())}&to=${encodeURIComponent(t1.toISOString())}&type=user.unblocked`), ['user.unblocked']);
  t.same(await types(`?userId=${b1.user.id}`), [], 'filtering by a user of another organisation finds nothing');
  t.equal((await list('?type=no.such.type')).status, 400);
  t.equal((await list('?organizationId=' + w.orgB.id)).status, 400, 'the organisation is never chosen by the caller');

  const { ids } = await pagedIds(async (query) => (await list(`?${query}`)).body, 3);
  t.same(ids, all.body.items.map((e: { id: string }) => e.id), 'pages cover the log exactly once');

  // Events appended after the first page do not shift the next page.
  const p1 = await list('?limit=2');
  clock.advance(10);
  await post(adminA.token, `/v1/organization/users/${u1.user.id}/block`);
  const p2 = await list(`?limit=2&cursor=${encodeURIComponent(p1.body.nextCursor)}`);
  t.same(p2.body.items.map((e: { id: string }) => e.id), all.body.items.slice(2, 4).map((e: { id: string }) => e.id));

  const userToken = await w.tokenFor((await w.member(w.orgA.id)).user);
  const denied = await request({ url: '/v1/organization/audit-events', token: userToken });
  t.equal(denied.status, 403);
  t.equal((await request({ url: '/v1/support/audit-events', token: adminA.token })).status, 403);
  t.ok(app);
});

t.test('support audit log: every organisation, optional organisation filter', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, adminB, support, clock } = w;
  const a = await w.member(w.orgA.id);
  const b = await w.member(w.orgB.id);
  await request({ method: 'POST', url: `/v1/organization/users/${a.user.id}/block`, token: adminA.token });
  clock.advance(1);
  const between = encodeURIComponent(clock.now().toISOString());
  await request({ method: 'POST', url: `/v1/organization/users/${b.user.id}/block`, token: adminB.token });
  clock.advance(1);
  await request({ method: 'POST', url: `/v1/support/users/${b.user.id}/unblock`, token: support.token });

  const all = await request({ url: '/v1/support/audit-events?type=user.blocked', token: support.token });
  t.equal(all.status, 200);
  t.same(all.body.items.map((e: { subject: { id: string } }) => e.subject.id), [b.user.id, a.user.id]);
  const subjects = async (query: string) =>
    (await request({ url: `/v1/support/audit-events?type=user.blocked&${query}`, token: support.token })).body.items.map((e: { subject: { id: string } }) => e.subject.id);
  t.same(await subjects(`to=${between}`), [a.user.id], 'to: exclusive upper bound');
  t.same(await subjects(`from=${between}`), [b.user.id], 'from: inclusive lower bound');
  const onlyB = await request({ url: `/v1/support/audit-events?organizationId=${w.orgB.id}`, token: support.token });
  const types = onlyB.body.items.map((e: { type: string }) => e.type).filter((x: string) => !x.startsWith('session.'));
  t.same(types, ['user.unblocked', 'user.blocked']);
  t.match(onlyB.body.items[0], { actor: { id: support.user.id }, ip: '127.0.0.1' }, 'support sees the full rows');
});

t.test('audit-log dates PostgreSQL cannot hold, and cursors not written by the service, answer 400', async (t) => {
  const { request, adminA, support } = await adminWorld(t);
  const cursorOf = (parts: string[]) => Buffer.from(JSON.stringify(parts), 'utf8').toString('base64url');
  const id = crypto.randomUUID();
  const cases: [string, string, string, string][] = [
    ['from in year 0', '/v1/organization/audit-events?from=0000-01-01T00:00:00Z', adminA.token, 'validation_failed'],
    ['to in year 0', '/v1/organization/audit-events?to=0000-06-01T00:00:00Z', adminA.token, 'validation_failed'],
    ['0001 at +01:00 (year 0 in UTC)', '/v1/organization/audit-events?from=0001-01-01T00:00:00%2B01:00', adminA.token, 'validation_failed'],
    ['support: from in year 0', '/v1/support/audit-events?from=0000-01-01T00:00:00Z', support.token, 'validation_failed'],
    ['cursor before 4713 BC', `/v1/organization/audit-events?cursor=${cursorOf(['-271821-04-20T00:00:00.000Z', id])}`, adminA.token, 'invalid_cursor'],
    ['cursor date not in ISO form', `/v1/organization/audit-events?cursor=${cursorOf(['2026-11-28', id])}`, adminA.token, 'invalid_cursor'],
  ];
  for (const [label, url, token, code] of cases) {
    const res = await request({ url, token });
    t.same({ status: res.status, code: res.body.code }, { status: 400, code }, label);
  }
  const fine = await request({ url: '/v1/organization/audit-events?from=1970-01-01T00:00:00Z&to=9999-12-31T23:59:59Z', token: adminA.token });
  t.equal(fine.status, 200, 'the whole storable range is accepted');
});

t.test("the operator's OS account and reason are in the support audit log only, not in the organisation's", async (t) => {
  const w = await adminWorld(t);
  const { request, support, app } = w;
  const origin = cliOrigin({ reason: 'OPS-1234 new reseller' }, { SUDO_USER: 'olga-operator' });
  const created = await createOrganizationFromCli(
    app.ctx,
    { customerNumber: 'C-4711', name: 'Gamma Reseller', administrator: { email: 'first@gamma.test', name: 'First Admin' } },
    origin,
  );
  // Once an administrator of the new organisation is active, they read its log.
  const admin = await w.member(created.organizationId, { roles: ['USER', 'CUSTOMER_ADMIN'] });
  const customerView = await request({ url: '/v1/organization/audit-events', token: await w.tokenFor(admin.user) });
  const supportView = await request({ url: `/v1/support/audit-events?organizationId=${created.organizationId}`, token: support.token });
  t.equal(customerView.status, 200);
  t.equal(supportView.status, 200);
  type Row = { id: string; type: string; details: Record<string, unknown> };
  const byCli = (rows: Row[]) => rows.filter((r) => r.details.via === 'cli');
  const supportRows = byCli(supportView.body.items);
  t.same(supportRows.map((r) => r.type).sort(), ['organization.administrator_appointed', 'organization.created', 'user.invited'], "the CLI's rows");
  for (const row of supportRows) {
    t.same(row.details.cli, { operator: 'olga-operator', reason: 'OPS-1234 new reseller' }, `support sees who ran it and why: ${row.type}`);
    const seen = (customerView.body.items as Row[]).find((r) => r.id === row.id);
    const { cli: _cli, ...rest } = row.details;
    t.same(seen?.details, rest, `the organisation sees the same row without them: ${row.type}`);
  }
});

t.test('events written at the same instant are paged newest first without gaps or repeats, also across a page boundary (mutation review, session 22)', async (t) => {
  const w = await adminWorld(t);
  const members = [];
  for (let i = 0; i < 5; i++) members.push(await w.member(w.orgA.id));
  // The fake clock stands still: five rows with the same created_at (as a block of a whole organisation writes).
  for (const m of members) await w.request({ method: 'POST', url: `/v1/organization/users/${m.user.id}/block`, token: w.adminA.token });
  const list = (query: string) => w.request({ url: `/v1/organization/audit-events?type=user.blocked&${query}`, token: w.adminA.token });
  const all = (await list('limit=100')).body.items as { id: string; subject: { id: string } }[];
  t.same(all.map((e) => e.subject.id), members.map((m) => m.user.id).reverse(), 'newest first (the later row of the same instant first)');
  const { ids } = await pagedIds(async (query) => (await list(query)).body, 2);
  t.same(ids, all.map((e) => e.id), 'pages of two: each row once, in the same order');
});

t.test("the organisation's log hides the IP address and user agent of an actor who is gone (erased) (mutation review, session 22)", async (t) => {
  const w = await adminWorld(t);
  const u = await w.member(w.orgA.id, { name: 'Gone Soon' });
  const token = await w.tokenFor(u.user);
  const changed = await w.request({
    method: 'PUT',
    url: '/v1/me/password',
    token,
    headers: { 'user-agent': 'gone-soon-browser/1.0' },
    body: { currentPassword: u.password!, newPassword: 'Amber falcon meadow 4711?' },
  });
  t.equal(changed.status, 204);
  const ownRow = async () =>
    ((await w.request({ url: `/v1/organization/audit-events?type=password.changed&userId=${u.user.id}`, token: w.adminA.token })).body.items as Record<string, any>[])[0];
  t.match(await ownRow(), { actor: { id: u.user.id }, ip: '127.0.0.1', userAgent: 'gone-soon-browser/1.0' }, 'shown while the account exists');
  t.equal((await w.request({ method: 'POST', url: `/v1/organization/users/${u.user.id}/block`, token: w.adminA.token })).status, 200);
  t.equal((await w.request({ method: 'POST', url: `/v1/organization/users/${u.user.id}/erase`, token: w.adminA.token })).status, 204);
  t.match(await ownRow(), { actor: { id: u.user.id, name: null, email: null }, ip: null, userAgent: null }, 'hidden once it is erased');
});

t.test("the organisation's log hides the support desk's IP address and user agent also on rows that carry no by/via support (an MFA-reset request) (mutation review, session 22)", async (t) => {
  const w = await adminWorld(t);
  const u = await w.member(w.orgA.id);
  const requested = await w.request({
    method: 'POST',
    url: `/v1/support/users/${u.user.id}/mfa-reset-request`,
    token: w.support.token,
    headers: { 'user-agent': 'support-desk-browser/1.0' },
  });
  t.equal(requested.status, 202);
  const query = `?type=mfa.reset_requested&userId=${u.user.id}`;
  const [customer] = (await w.request({ url: `/v1/organization/audit-events${query}`, token: w.adminA.token })).body.items;
  t.match(customer, { actor: { id: w.support.user.id, email: null }, subject: { id: u.user.id }, ip: null, userAgent: null });
  const [supportView] = (await w.request({ url: `/v1/support/audit-events${query}`, token: w.support.token })).body.items;
  t.match(supportView, { ip: '127.0.0.1', userAgent: 'support-desk-browser/1.0' }, 'the support log shows them');
});
