import t from 'tap';
import { adminWorld, auditOf } from '../integration/organization/helpers.js';
import { openClient, waitForLockWaiters } from '../helpers/row-locks.js';

/**
 * Support replacing an organisation's only active administrator (appoint with `replacing`) and the
 * organisation's own role changes are serialised by the organisation-row lock: the replacement
 * decides on what is committed once it holds that lock, so the organisation never ends with no
 * administrator, nor with the replacement applied on top of a change it did not see.
 */

t.test('a promotion committed while a replacement waits for the organisation lock wins: administrator_exists, nothing changed', async (t) => {
  const w = await adminWorld(t);
  const { adminA, app, databaseUrl } = w;
  const mia = await w.member(w.orgA.id, { name: 'Mia Member' });
  const dora = await w.member(w.orgA.id, { name: 'Dora Deputy' });
  const other = await openClient(t, databaseUrl);

  // Alice promotes Dora, as setUserRoles runs it: organisation row, then Dora's row, then the change.
  await other.query('BEGIN');
  await other.query('SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE', [w.orgA.id]);
  await other.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [dora.user.id]);
  await other.query(`UPDATE users SET roles = '{USER,CUSTOMER_ADMIN}' WHERE id = $1`, [dora.user.id]);

  const pending = w.request({
    method: 'POST',
    url: `/v1/support/organizations/${w.orgA.id}/administrators`,
    token: w.support.token,
    body: { userId: mia.user.id, replacing: adminA.user.id },
  });
  await waitForLockWaiters(other);
  await other.query('COMMIT');
  const res = await pending;

  t.match({ status: res.status, code: res.body.code }, { status: 409, code: 'administrator_exists' }, 'the organisation governs itself again');
  const users = await app.ctx.db.user.findMany({ where: { id: { in: [adminA.user.id, mia.user.id] } }, orderBy: { name: 'asc' } });
  t.same(users.map((u) => [u.name, u.status, u.roles]), [
    ['Alice Admin', 'ACTIVE', ['USER', 'CUSTOMER_ADMIN']],
    ['Mia Member', 'ACTIVE', ['USER']],
  ]);
  t.same(await auditOf(app, 'user.blocked'), []);
});

t.test('two support users replacing the same administrator at once: exactly one successor, one block', async (t) => {
  const w = await adminWorld(t);
  const { adminA, app } = w;
  const mia = await w.member(w.orgA.id, { name: 'Mia Member' });
  const nils = await w.member(w.orgA.id, { name: 'Nils Member' });
  const colleague = await w.tokenFor((await w.member(null, { roles: ['SUPPORT'] })).user);

  const results = await Promise.all(
    [
      [w.support.token, mia.user.id],
      [colleague, nils.user.id],
    ].map(([token, userId]) =>
      w.request({
        method: 'POST',
        url: `/v1/support/organizations/${w.orgA.id}/administrators`,
        token: token!,
        body: { userId, replacing: adminA.user.id },
      }),
    ),
  );

  t.same(results.map((r) => r.status).sort(), [200, 409]);
  t.equal(results.find((r) => r.status === 409)?.body.code, 'not_active_administrator', 'the second one sees Alice blocked');
  const admins = await app.ctx.db.user.findMany({ where: { organizationId: w.orgA.id, roles: { has: 'CUSTOMER_ADMIN' } } });
  t.same(admins.map((u) => u.status).sort(), ['ACTIVE', 'BLOCKED'], 'one successor, Alice blocked');
  t.equal((await auditOf(app, 'user.blocked', adminA.user.id)).length, 1);
  t.equal(await app.ctx.db.mailOutbox.count({ where: { template: 'account_blocked' } }), 1);
});
