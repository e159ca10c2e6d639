import t from 'tap';
import { adminWorld } from '../integration/organization/helpers.js';

/**
 * Organisation isolation (security.md item 24): a customer administrator naming a user of another
 * organisation gets exactly what a non-existent id gets — 404 user_not_found — on every
 * organisation route, whatever that user's state, and nothing changes for that user.
 */

const BODIES: Record<string, object> = {
  'PUT /v1/organization/users/{id}/roles': { roles: ['USER', 'CUSTOMER_ADMIN'] },
  'PATCH /v1/organization/users/{id}': { name: 'Renamed Across' },
};

const NO_SUCH_USER = '00000000-0000-7000-8000-000000000000';

t.test('every /v1/organization/users/{id} route answers 404 for another organisation\'s user', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, app } = w;
  const doc = app.swagger() as { paths: Record<string, Record<string, unknown>> };
  const operations = Object.entries(doc.paths)
    .filter(([p]) => p.startsWith('/v1/organization/users/{id}'))
    .flatMap(([p, ops]) => Object.keys(ops).map((m) => ({ method: m.toUpperCase() as 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: p })));
  t.ok(operations.length >= 7, `found ${operations.length} operations`);

  const foreigners = {
    active: (await w.member(w.orgB.id, { name: 'Active B' })).user,
    invited: (await w.member(w.orgB.id, { name: 'Invited B', status: 'INVITED' })).user,
    blocked: (await w.member(w.orgB.id, { name: 'Blocked B', status: 'BLOCKED' })).user,
    admin: w.adminB.user,
    support: w.support.user,
  };
  const before = await app.ctx.db.user.findMany({ where: { id: { in: Object.values(foreigners).map((u) => u.id) } }, orderBy: { id: 'asc' } });
  const mailsBefore = await app.ctx.db.mailOutbox.count();

  const strip = (body: Record<string, unknown>) => {
    const { requestId: _r, ...rest } = body;
    return rest;
  };

  for (const op of operations) {
    const key = `${op.method} ${op.path}`;
    const send = (id: string) =>
      request({ method: op.method, url: op.path.replace('{id}', id), token: adminA.token, ...(BODIES[key] ? { body: BODIES[key] } : {}) });
    const missing = await send(NO_SUCH_USER);
    t.equal(missing.status, 404, `${key}: unknown id → 404`);
    t.equal(missing.body.code, 'user_not_found');
    for (const [state, user] of Object.entries(foreigners)) {
      const res = await send(user.id);
      t.equal(res.status, 404, `${key} on a ${state} user of another organisation → 404`);
      t.same(strip(res.body), strip(missing.body), `${key} (${state}): indistinguishable from an unknown id`);
      t.notMatch(res.raw, new RegExp(`${user.id}|${user.email}|${w.orgB.id}`));
    }
  }

  const after = await app.ctx.db.user.findMany({ where: { id: { in: Object.values(foreigners).map((u) => u.id) } }, orderBy: { id: 'asc' } });
  t.same(after, before, 'nothing changed for the other organisation');
  t.equal(await app.ctx.db.mailOutbox.count(), mailsBefore, 'no mail was sent');
  t.equal(await app.ctx.db.flowToken.count({ where: { userId: { in: Object.values(foreigners).map((u) => u.id) } } }), 0, 'no link was issued');
  t.equal(
    await app.ctx.db.auditEvent.count({ where: { subjectUserId: { in: Object.values(foreigners).map((u) => u.id) }, NOT: { type: { startsWith: 'session.' } } } }),
    0,
    'no audit row about them',
  );
});

t.test('lists, search and the audit log never cross organisations', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, adminB } = w;
  const b = await w.member(w.orgB.id, { name: 'Bertha Beta', email: 'bertha@beta.test' });
  await request({ method: 'POST', url: `/v1/organization/users/${b.user.id}/block`, token: adminB.token });

  const list = await request({ url: '/v1/organization/users?q=bertha', token: adminA.token });
  t.same(list.body.items, []);
  const all = await request({ url: '/v1/organization/users?limit=100', token: adminA.token });
  t.notMatch(all.raw, /beta\.test|Bertha|Bob Admin/);
  const audit = await request({ url: `/v1/organization/audit-events?userId=${b.user.id}`, token: adminA.token });
  t.same(audit.body.items, []);
  const auditAll = await request({ url: '/v1/organization/audit-events?limit=100', token: adminA.token });
  t.notMatch(auditAll.raw, new RegExp(`${b.user.id}|${w.orgB.id}|${adminB.user.id}`));

  // A cursor is only a position; it cannot widen the scope.
  const forged = Buffer.from(JSON.stringify(['', '00000000-0000-0000-0000-000000000000'])).toString('base64url');
  const page = await request({ url: `/v1/organization/users?cursor=${forged}`, token: adminA.token });
  t.equal(page.status, 200);
  t.notMatch(page.raw, /beta\.test/);

  // The organisation is never taken from the request.
  const invite = await request({
    method: 'POST',
    url: '/v1/organization/users',
    token: adminA.token,
    body: { email: 'sneaky@beta.test', name: 'Sneaky', organizationId: w.orgB.id },
  });
  t.equal(invite.status, 400);
  const plain = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'plain@alpha.test', name: 'Plain' } });
  t.equal(plain.body.organizationId, w.orgA.id);
});
