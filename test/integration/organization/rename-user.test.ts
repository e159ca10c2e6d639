import t from 'tap';
import { adminWorld, auditOf } from './helpers.js';

t.test('a user corrects their own name; the same name again changes nothing; bad names are refused', async (t) => {
  const w = await adminWorld(t);
  const { request, app } = w;
  const jon = await w.member(w.orgA.id, { name: 'Jon Doe' });
  const token = await w.tokenFor(jon.user);

  const res = await request({ method: 'PATCH', url: '/v1/me', token, body: { name: '  Jonathan Doe ' } });
  t.equal(res.status, 200);
  t.equal(res.body.name, 'Jonathan Doe', 'trimmed; the answer is the updated profile');
  t.equal(res.body.email, jon.user.email);
  t.equal(res.headers['cache-control'], 'no-store');
  t.equal((await request({ url: '/v1/me', token })).body.name, 'Jonathan Doe');
  const audits = await auditOf(app, 'user.renamed', jon.user.id);
  t.equal(audits.length, 1);
  t.match(audits[0], { actorUserId: jon.user.id, organizationId: w.orgA.id, details: { by: 'self', name: { from: 'Jon Doe', to: 'Jonathan Doe' } } });

  t.equal((await request({ method: 'PATCH', url: '/v1/me', token, body: { name: 'Jonathan Doe' } })).status, 200);
  t.equal((await auditOf(app, 'user.renamed', jon.user.id)).length, 1, 'saving the same name audits nothing');

  for (const body of [
    { name: '' },
    { name: 'Jon\nPlease reply with your password' },
    { name: 'Jon from evil-shop.com' },
    { name: 'x'.repeat(201) },
    { name: 'Jon', email: 'other@alpha.test' },
    {},
  ]) {
    const bad = await request({ method: 'PATCH', url: '/v1/me', token, body });
    t.equal(bad.status, 400, JSON.stringify(body).slice(0, 60));
    t.equal(bad.body.code, 'validation_failed');
  }
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: jon.user.id } })).name, 'Jonathan Doe', 'unchanged by refused requests');
  t.equal((await request({ method: 'PATCH', url: '/v1/me', body: { name: 'Anon' } })).status, 401);
});

t.test('administrators correct names in their organisation, support in any; the policy\'s refusals', async (t) => {
  const w = await adminWorld(t);
  const { request, app, adminA, support } = w;
  const invited = await w.member(w.orgA.id, { name: 'Jno Typo', status: 'INVITED' });
  const blocked = await w.member(w.orgA.id, { name: 'Blocked Person', status: 'BLOCKED' });
  const other = await w.member(w.orgB.id, { name: 'Other Org' });
  const staff = await w.member(null, { roles: ['SUPPORT'], name: 'Staff Member' });
  const plain = await w.member(w.orgA.id, { name: 'Plain User' });
  const rename = (token: string, id: string, name: string, area = 'organization') =>
    request({ method: 'PATCH', url: `/v1/${area}/users/${id}`, token, body: { name } });

  const fixed = await rename(adminA.token, invited.user.id, 'Jon Typo');
  t.equal(fixed.status, 200);
  t.match(fixed.body, { id: invited.user.id, name: 'Jon Typo', status: 'INVITED' });
  t.match((await auditOf(app, 'user.renamed', invited.user.id))[0], { actorUserId: adminA.user.id, details: { by: 'admin', name: { from: 'Jno Typo', to: 'Jon Typo' } } });
  t.equal((await rename(adminA.token, blocked.user.id, 'Blocked Person Renamed')).status, 200, 'any state');

  for (const [who, token, id, area, status, code] of [
    ['another organisation\'s user', adminA.token, other.user.id, 'organization', 404, 'user_not_found'],
    ['oneself through the administration route', adminA.token, adminA.user.id, 'organization', 409, 'self_service_required'],
    ['a plain user', await w.tokenFor(plain.user), invited.user.id, 'organization', 403, 'forbidden'],
    ['an administrator on the support route', adminA.token, invited.user.id, 'support', 403, 'forbidden'],
    ['support staff', support.token, staff.user.id, 'support', 403, 'support_staff_protected'],
  ] as const) {
    const res = await rename(token, id, 'Should Not Stick', area);
    t.equal(res.status, status, who);
    t.equal(res.body.code, code, who);
  }
  t.equal(await app.ctx.db.user.count({ where: { name: 'Should Not Stick' } }), 0, 'no refused rename was applied');

  const bySupport = await rename(support.token, other.user.id, 'Other Org Fixed', 'support');
  t.equal(bySupport.status, 200);
  t.match((await auditOf(app, 'user.renamed', other.user.id))[0], { actorUserId: support.user.id, organizationId: w.orgB.id, details: { by: 'support' } });

  // An administrator's own new name is what their users see as whom to contact.
  const adminToken = adminA.token;
  t.equal((await request({ method: 'PATCH', url: '/v1/me', token: adminToken, body: { name: 'Alice Admin-Meyer' } })).status, 200);
  const admins = await request({ url: '/v1/me/organization/administrators', token: await w.tokenFor(plain.user) });
  t.match(admins.body.administrators, [{ name: 'Alice Admin-Meyer' }]);
});
