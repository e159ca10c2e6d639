import t from 'tap';
import { tokenFromLink } from '../../helpers/accounts.js';
import { createUser } from '../../helpers/factories.js';
import { auditOf, mailsTo } from '../organization/helpers.js';
import { CLI_AUDIT, staffWorld } from './cli-support-helpers.js';

/** The operator's command for a SUPPORT invitation nobody took up (the API refuses: support_staff_protected). */

t.test('withdraw-support-invitation: a mistyped support invitation goes, the address is free; activated or other accounts are refused', async (t) => {
  const w = await staffWorld(t);
  const created = await w.run('create-support-user', '--email', 'sam@shpo.test', '--name', 'Sam Typo');
  t.equal(created.code, 0, created.stderr);
  const token = tokenFromLink(created.stdout);
  const user = await w.db.user.findUniqueOrThrow({ where: { email: 'sam@shpo.test' } });

  const withdrawn = await w.run('withdraw-support-invitation', '--email', 'SAM@shpo.test', '--reason', 'TICKET-7 typo');
  t.equal(withdrawn.code, 0, withdrawn.stderr);
  t.match(withdrawn.stderr, `withdrew the invitation of SUPPORT user sam@shpo.test (${user.id}); 1 unsent mail(s) removed`);
  t.equal(await w.db.user.count({ where: { id: user.id } }), 0);
  t.same(await mailsTo(w.app, 'sam@shpo.test'), [], 'the unsent activation mail is not sent');
  t.equal((await w.request({ url: '/v1/activation/inspect', body: { token } })).body.code, 'link_invalid');
  t.match(await auditOf(w.app, 'user.invitation_withdrawn', user.id), [
    { ...CLI_AUDIT, details: { by: 'cli', email: 'sam@shpo.test', name: 'Sam Typo', roles: ['SUPPORT'], cli: { reason: 'TICKET-7 typo' } } },
  ]);
  t.equal((await w.run('create-support-user', '--email', 'sam@shpo.test', '--name', 'Sam Again')).code, 0, 'the address is free again');

  await w.support('active@shop.test');
  const active = await w.run('withdraw-support-invitation', '--email', 'active@shop.test');
  t.equal(active.code, 1);
  t.match(active.stderr, 'refused: already_activated');
  t.equal(await w.db.user.count({ where: { email: 'active@shop.test' } }), 1);

  await createUser(w.db, w.app, { email: 'customer@alpha.test', status: 'INVITED' });
  const customer = await w.run('withdraw-support-invitation', '--email', 'customer@alpha.test');
  t.equal(customer.code, 1);
  t.match(customer.stderr, 'refused: not_support_staff');
  t.equal(await w.db.user.count({ where: { email: 'customer@alpha.test' } }), 1, 'customers\' users are their administrators\' (the API)');
});

t.test('erase-support-user: a blocked former support employee is erased; an active one or a customer is refused', async (t) => {
  const w = await staffWorld(t);
  const left = await w.support('left@shop.test', { status: 'BLOCKED', name: 'Lars Left' });
  const erased = await w.run('erase-support-user', '--email', 'LEFT@shop.test', '--reason', 'GDPR-12 request');
  t.equal(erased.code, 0, erased.stderr);
  t.match(erased.stderr, `erased SUPPORT user ${left.user.id}`);
  t.equal(await w.db.user.count({ where: { id: left.user.id } }), 0);
  t.equal(await w.db.totpFactor.count({ where: { userId: left.user.id } }), 0, 'with what it held');
  const [audit] = await auditOf(w.app, 'user.erased', left.user.id);
  t.match(audit, { ...CLI_AUDIT, details: { by: 'cli', roles: ['SUPPORT'], cli: { reason: 'GDPR-12 request' } } });
  t.notMatch(JSON.stringify(audit), /lars|left@/i, 'the erasure names nobody');

  await w.support('still@shop.test');
  const active = await w.run('erase-support-user', '--email', 'still@shop.test');
  t.equal(active.code, 1);
  t.match(active.stderr, 'refused: not_blocked');
  await createUser(w.db, w.app, { email: 'gone@alpha.test', status: 'BLOCKED' });
  const customer = await w.run('erase-support-user', '--email', 'gone@alpha.test');
  t.equal(customer.code, 1);
  t.match(customer.stderr, 'refused: not_support_staff');
  t.equal(await w.db.user.count({ where: { email: { in: ['still@shop.test', 'gone@alpha.test'] } } }), 2);
});

t.test('withdraw-support-invitation refuses a blocked support user who had activated: blocked, not deleted (mutation review, session 21)', async (t) => {
  const w = await staffWorld(t);
  const former = await w.support('former@shop.test', { status: 'BLOCKED' });
  const run = await w.run('withdraw-support-invitation', '--email', 'former@shop.test');
  t.equal(run.code, 1, run.stderr);
  t.match(run.stderr, 'refused: already_activated');
  t.equal(await w.db.user.count({ where: { id: former.user.id } }), 1, 'the account and its history stay (erase-support-user is the way)');
});
