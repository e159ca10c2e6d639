import t from 'tap';
import { adminWorld, auditOf } from '../organization/helpers.js';

t.test("support corrects an organisation's name and customer number; only what changed is audited", async (t) => {
  const w = await adminWorld(t);
  const { request, support, app } = w;
  const update = (body: object, id = w.orgA.id, token = support.token) => request({ method: 'PATCH', url: `/v1/support/organizations/${id}`, token, body });
  const before = await app.ctx.db.organization.findUniqueOrThrow({ where: { id: w.orgA.id } });

  const renamed = await update({ name: '  Alpha Reseller AG ' });
  t.equal(renamed.status, 200);
  t.match(renamed.body, { id: w.orgA.id, name: 'Alpha Reseller AG', customerNumber: before.customerNumber, userCount: 1, activeAdministratorCount: 1 });
  t.match(await auditOf(app, 'organization.updated'), [
    { actorUserId: support.user.id, organizationId: w.orgA.id, details: { name: { from: 'Alpha Reseller', to: 'Alpha Reseller AG' } } },
  ]);
  const details = (await auditOf(app, 'organization.updated'))[0]!.details as object;
  t.notOk('customerNumber' in details, 'an unchanged field is not in the audit row');

  const both = await update({ customerNumber: 'K-0815', name: 'Alpha Reseller AG' });
  t.match(both.body, { customerNumber: 'K-0815', name: 'Alpha Reseller AG' });
  t.same((await auditOf(app, 'organization.updated'))[1]!.details, { customerNumber: { from: before.customerNumber, to: 'K-0815' } });
  t.equal((await update({ customerNumber: 'K-0815', name: 'Alpha Reseller AG' })).status, 200, 'the same values again');
  t.equal((await auditOf(app, 'organization.updated')).length, 2, 'change nothing and audit nothing');
  t.equal((await update({ customerNumber: 'k-0815' })).body.customerNumber, 'k-0815', 'a change of case is stored as typed');

  // The administrators see the new name where it shows.
  const admins = await request({ url: '/v1/me', token: w.adminA.token });
  t.equal(admins.body.organization.name, 'Alpha Reseller AG');

  const orgBNumber = (await app.ctx.db.organization.findUniqueOrThrow({ where: { id: w.orgB.id } })).customerNumber;
  for (const [label, body, id, token, status, code] of [
    ["another organisation's customer number", { customerNumber: orgBNumber }, w.orgA.id, support.token, 409, 'customer_number_taken'],
    ['… in another case', { customerNumber: orgBNumber.toLowerCase() === orgBNumber ? orgBNumber.toUpperCase() : orgBNumber.toLowerCase() }, w.orgA.id, support.token, 409, 'customer_number_taken'],
    ['an unknown organisation', { name: 'Ghost' }, '0190a0a0-0000-7000-8000-000000000000', support.token, 404, 'organization_not_found'],
    ['an administrator', { name: 'Self-renamed' }, w.orgA.id, w.adminA.token, 403, 'forbidden'],
    ['nothing to change', {}, w.orgA.id, support.token, 400, 'validation_failed'],
    ['an empty name', { name: ' ' }, w.orgA.id, support.token, 400, 'validation_failed'],
    ['a bad customer number', { customerNumber: 'bad number!' }, w.orgA.id, support.token, 400, 'validation_failed'],
    ['an unknown field', { name: 'X', id: w.orgB.id }, w.orgA.id, support.token, 400, 'validation_failed'],
  ] as const) {
    const res = await update(body, id, token);
    t.equal(res.status, status, label);
    t.equal(res.body.code, code, label);
  }
  t.match(await app.ctx.db.organization.findUniqueOrThrow({ where: { id: w.orgA.id } }), { name: 'Alpha Reseller AG', customerNumber: 'k-0815' }, 'refusals changed nothing');
  t.equal((await auditOf(app, 'organization.updated')).length, 3);
});
