import t from 'tap';
import { createOrganization, createUser, signIn } from '../../helpers/factories.js';
import { auditOf, mailsTo } from '../organization/helpers.js';
import { CLI_AUDIT, staffWorld } from './cli-support-helpers.js';

/** The operator's commands for SUPPORT accounts: MFA reset (checked over HTTP), listing. */

t.test('reset-support-mfa: factor and recovery codes go, sessions end, the next login enrols', async (t) => {
  const w = await staffWorld(t);
  const s = await w.support('newphone@shop.test', { recoveryCodes: 10 });
  const session = await signIn(w.app, s.user);

  const reset = await w.run('reset-support-mfa', '--email', 'newphone@shop.test');
  t.equal(reset.code, 0, reset.stderr);
  t.equal(await w.db.totpFactor.count({ where: { userId: s.user.id } }), 0);
  t.equal(await w.db.recoveryCode.count({ where: { userId: s.user.id } }), 0);
  t.equal(await w.introspect(session.accessToken), '{"active":false}');
  const login = await w.login('newphone@shop.test', s.password);
  t.equal(login.status, 200);
  t.equal(login.body.next, 'mfa_enrollment');
  const [mail] = await mailsTo(w.app, 'newphone@shop.test');
  t.equal(mail?.template, 'mfa_removed');
  t.match(mail?.textBody, 'operations team reset the 2-step login');
  // Support staff have no organisation, and support cannot act on them: the operators are whom to ask.
  t.match(mail?.textBody, /If you did not expect this, contact the [^\n]*operations team right away\./);
  t.notMatch(mail?.textBody, /organisation's administrator|e-business/);
  t.match(await auditOf(w.app, 'mfa.reset_by_admin', s.user.id), [{ ...CLI_AUDIT, details: { by: 'cli', sessionsRevoked: 1 } }]);

  await w.support('invited@shop.test', { status: 'INVITED' });
  const [again, invited] = await Promise.all([
    w.run('reset-support-mfa', '--email', 'newphone@shop.test'),
    w.run('reset-support-mfa', '--email', 'invited@shop.test'),
  ]);
  t.equal(again.code, 1);
  t.match(again.stderr, 'refused: mfa_not_enrolled');
  t.match(invited.stderr, 'refused: user_not_activated');
});

t.test('list-support-users prints every support user, one JSON line each', async (t) => {
  const w = await staffWorld(t);
  await w.support('zoe@shop.test', { name: 'Zoe Zed' });
  await w.support('adam@shop.test', { name: 'Adam Ant', status: 'INVITED' });
  await createUser(w.db, w.app, { organizationId: (await createOrganization(w.db)).id, email: 'customer@alpha.test' });

  const listed = await w.run('list-support-users');
  t.equal(listed.code, 0, listed.stderr);
  const lines = listed.stdout.trim().split('\n').map((l) => JSON.parse(l));
  t.match(lines, [
    { email: 'adam@shop.test', name: 'Adam Ant', status: 'INVITED', mfa: { enrolled: false } },
    { email: 'zoe@shop.test', name: 'Zoe Zed', status: 'ACTIVE', mfa: { enrolled: true } },
  ]);
  t.equal(lines.length, 2, 'support staff only');
});
