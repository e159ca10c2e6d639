import t from 'tap';
import { createOrganization, createUser, signIn } from '../../helpers/factories.js';
import { staffWorld } from './cli-support-helpers.js';

/** The operator's commands act on SUPPORT accounts only: every other user is managed through the API. */

t.test('users who are not support staff are refused (the API manages them); unknown e-mail too; nothing changes', async (t) => {
  const w = await staffWorld(t);
  const org = await createOrganization(w.db);
  const admin = await createUser(w.db, w.app, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'], email: 'boss@alpha.test' });
  await createUser(w.db, w.app, { organizationId: org.id, status: 'INVITED', email: 'new@alpha.test' });
  await createUser(w.db, w.app, { organizationId: org.id, status: 'BLOCKED', email: 'out@alpha.test' });
  const session = await signIn(w.app, admin.user);

  const attempts: [string, string][] = [
    ['block-support-user', 'boss@alpha.test'],
    ['reset-support-mfa', 'boss@alpha.test'],
    ['resend-support-activation', 'new@alpha.test'],
    ['unblock-support-user', 'out@alpha.test'],
  ];
  const [unknown, ...runs] = await Promise.all([
    w.run('block-support-user', '--email', 'nobody@shop.test'),
    ...attempts.map(([command, email]) => w.run(command, '--email', email)),
  ]);
  attempts.forEach(([command, email], i) => {
    t.equal(runs[i]!.code, 1, `${command} ${email}`);
    t.match(runs[i]!.stderr, 'refused: not_support_staff');
    t.match(runs[i]!.stderr, 'through the API');
  });
  t.equal(unknown!.code, 1);
  t.match(unknown!.stderr, 'refused: user_not_found');

  t.match(await w.introspect(session.accessToken), '"active":true');
  t.equal(await w.db.totpFactor.count({ where: { userId: admin.user.id } }), 1);
  t.same(
    (await w.db.user.findMany({ where: { organizationId: org.id }, orderBy: { email: 'asc' } })).map((u) => u.status),
    ['ACTIVE', 'INVITED', 'BLOCKED'],
  );
  t.equal(await w.db.auditEvent.count({ where: { userAgent: 'webshop-auth-cli' } }), 0);
  t.equal(await w.db.mailOutbox.count(), 0);
});
