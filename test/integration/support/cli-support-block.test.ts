import t from 'tap';
import { createOrganization, createUser, signIn } from '../../helpers/factories.js';
import { openClient, waitForLockWaiters } from '../../helpers/row-locks.js';
import { auditOf, mailsTo } from '../organization/helpers.js';
import { CLI_AUDIT, staffWorld } from './cli-support-helpers.js';

/** The operator's commands for SUPPORT accounts: block and unblock (checked over HTTP). */

t.test('block-support-user ends every session at once and login answers account_blocked; the last active one; unblock', async (t) => {
  const w = await staffWorld(t);
  const gone = await w.support('gone@shop.test', { name: 'Gerd Gone' });
  const stays = await w.support('stays@shop.test');
  const sessions = [await signIn(w.app, gone.user), await signIn(w.app, gone.user)];
  t.match(await w.introspect(sessions[0]!.accessToken), '"active":true');
  // A verified MFA reset Gerd started for a customer: its link is withdrawn with the block.
  const org = await createOrganization(w.db, { name: 'Delta Reseller' });
  const dora = await createUser(w.db, w.app, { organizationId: org.id, email: 'dora@delta.test' });
  const started = await w.request({ method: 'POST', url: `/v1/support/users/${dora.user.id}/mfa-reset-request`, token: sessions[0]!.accessToken });
  t.equal(started.status, 202);

  const blocked = await w.run('block-support-user', '--email', 'gone@shop.test');
  t.equal(blocked.code, 0, blocked.stderr);
  t.match(blocked.stderr, 'blocked SUPPORT user gone@shop.test');
  t.match(blocked.stderr, `withdrawn: MFA_RESET link of dora@delta.test (${dora.user.id})`, 'the operator learns whose link stopped working');
  for (const session of sessions) {
    t.equal(await w.introspect(session.accessToken), '{"active":false}', 'introspection: inactive at once');
    const refresh = await w.request({ url: '/v1/auth/refresh', body: { refreshToken: session.refreshToken } });
    t.equal(refresh.body.code, 'refresh_token_invalid');
  }
  const login = await w.login('gone@shop.test', gone.password);
  t.equal(login.status, 403);
  t.equal(login.body.code, 'account_blocked', 'told after the correct password');
  t.equal((await w.db.user.findUniqueOrThrow({ where: { id: gone.user.id } })).status, 'BLOCKED');
  t.same((await mailsTo(w.app, 'gone@shop.test')).map((m) => m.template), ['account_blocked']);
  t.match(await auditOf(w.app, 'user.blocked', gone.user.id), [
    { ...CLI_AUDIT, details: { by: 'cli', sessionsRevoked: 2, linksWithdrawn: [{ userId: dora.user.id, purpose: 'MFA_RESET' }] } },
  ]);

  // stays@ is the last ACTIVE support user now.
  const [twice, last] = await Promise.all([
    w.run('block-support-user', '--email', 'gone@shop.test'),
    w.run('block-support-user', '--email', 'stays@shop.test'),
  ]);
  t.equal(twice.code, 1);
  t.match(twice.stderr, 'refused: already_blocked');
  t.equal(last.code, 1);
  t.match(last.stderr, 'refused: last_support_user');
  t.equal((await w.db.user.findUniqueOrThrow({ where: { id: stays.user.id } })).status, 'ACTIVE');
  t.same(await mailsTo(w.app, 'stays@shop.test'), [], 'a refusal mails nothing');
  t.same(await auditOf(w.app, 'user.blocked', stays.user.id), [], 'and audits nothing');

  const [forced, unblocked] = await Promise.all([
    w.run('block-support-user', '--email', 'stays@shop.test', '--allow-last'),
    w.run('unblock-support-user', '--email', 'gone@shop.test'),
  ]);
  t.equal(forced.code, 0, forced.stderr);
  t.equal((await w.db.user.findUniqueOrThrow({ where: { id: stays.user.id } })).status, 'BLOCKED', '--allow-last blocks the last one');
  t.equal(unblocked.code, 0, unblocked.stderr);
  t.match(await w.db.user.findUniqueOrThrow({ where: { id: gone.user.id } }), { status: 'ACTIVE', blockedAt: null });
  t.equal((await w.login('gone@shop.test', gone.password)).body.next, 'mfa', 'signs in again');
  t.same((await mailsTo(w.app, 'gone@shop.test')).map((m) => m.template), ['account_blocked', 'account_unblocked']);
  t.match(await auditOf(w.app, 'user.unblocked', gone.user.id), [{ ...CLI_AUDIT, details: { by: 'cli', status: 'ACTIVE' } }]);
  t.match((await w.run('unblock-support-user', '--email', 'gone@shop.test')).stderr, 'refused: not_blocked');
});

t.test('blocking the last two active support users at once: the second waits for the first and is refused', async (t) => {
  const w = await staffWorld(t);
  const a = await w.support('a@shop.test');
  const b = await w.support('b@shop.test');
  // Another operator's block of b, not committed yet: it holds b's row, and a still counts b as active.
  const other = await openClient(t, w.databaseUrl);
  await other.query('BEGIN');
  await other.query("UPDATE users SET status = 'BLOCKED', blocked_at = now() WHERE id = $1", [b.user.id]);
  const running = w.run('block-support-user', '--email', 'a@shop.test');
  await waitForLockWaiters(other, 1, 60_000); // the CLI starts slowly
  await other.query('COMMIT');
  const result = await running;
  t.equal(result.code, 1, result.stderr);
  t.match(result.stderr, 'refused: last_support_user');
  t.equal((await w.db.user.findUniqueOrThrow({ where: { id: a.user.id } })).status, 'ACTIVE', 'one active support user is left');
});

t.test('unblock-support-user for a support user who never activated: INVITED with a fresh activation link (printed and mailed)', async (t) => {
  const w = await staffWorld(t);
  const invited = await w.support('late@shop.test', { status: 'INVITED', password: null });
  t.equal((await w.run('block-support-user', '--email', 'late@shop.test')).code, 0);

  const unblocked = await w.run('unblock-support-user', '--email', 'late@shop.test');
  t.equal(unblocked.code, 0, unblocked.stderr);
  t.match(unblocked.stderr, 'status INVITED');
  const link = unblocked.stdout.trim();
  t.match(link, /\/activate\?token=/, 'the new link on stdout');
  const token = new URL(link).searchParams.get('token')!;
  t.equal((await w.request({ url: '/v1/activation/inspect', body: { token } })).status, 200, 'it works');
  t.equal((await w.db.user.findUniqueOrThrow({ where: { id: invited.user.id } })).status, 'INVITED');
  const mails = await mailsTo(w.app, 'late@shop.test');
  t.same(mails.map((m) => m.template), ['account_blocked', 'activation'], 'a new invitation, not "you can sign in again"');
  t.match(mails.at(-1)!.textBody, token, 'the same link by mail');
  t.match(await auditOf(w.app, 'user.activation_resent', invited.user.id), [{ ...CLI_AUDIT, details: { by: 'cli', via: 'unblocked' } }]);
});
