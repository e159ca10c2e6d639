import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildTestApp } from '../helpers/app.js';
import { openClient, waitForLockWaiters } from '../helpers/row-locks.js';
import { api } from '../helpers/http.js';
import { createOrganization, createUser, currentTotp, signIn, wrongCode } from '../helpers/factories.js';
import { addSeconds } from '../../src/lib/clock.js';
import { requestMfaReset } from '../../src/modules/support/mfa-reset.service.js';
import { GOOD_PASSWORD, inviteUser, tokenFromLink } from '../helpers/accounts.js';
import { sendPasswordResetMail } from '../../src/modules/password/password.service.js';
import { parallelChallenges, secretOf } from '../integration/mfa/helpers.js';
import { lastMail } from '../helpers/outbox.js';

/**
 * Security review: races around the per-account locks (security.md items 6, 10, 14).
 *
 * "A concurrent request committed its effect while this one was running" is reproduced
 * deterministically: a second connection changes the user row inside an open transaction (as the
 * 10th concurrent wrong password would), the request under test is started and reaches the row,
 * then the second connection commits. The request must decide on what is committed by then.
 */

t.test('login: a password lock committed while the correct password is being checked wins (no challenge, lock kept)', async (t) => {
  const { app, clock, databaseUrl } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  const other = await openClient(t, databaseUrl);
  const until = addSeconds(clock.now(), 900);

  // The 10th concurrent wrong guess locks the account; its transaction commits while ours runs.
  await other.query('BEGIN');
  await other.query('UPDATE users SET failed_password_count = 10, password_locked_until = $2, password_lockouts = 1 WHERE id = $1', [
    user.id,
    until,
  ]);
  const pending = request({ url: '/v1/auth/login', body: { email: user.email, password } });
  await waitForLockWaiters(other);
  await other.query('COMMIT');
  const res = await pending;

  t.equal(res.status, 423, 'the lock in force is honoured');
  t.equal(res.body.code, 'account_locked');
  t.ok(Number(res.headers['retry-after']) > 0, 'Retry-After');
  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.same(row.passwordLockedUntil, until, 'the lock was not cleared by the correct password');
  t.equal(row.failedPasswordCount, 10);
  t.equal(await app.ctx.db.flowToken.count({ where: { userId: user.id, purpose: 'LOGIN_CHALLENGE' } }), 0, 'no challenge issued');
});

t.test('login: a password reset committed while the old password is being checked makes it invalid', async (t) => {
  const { app, clock, databaseUrl } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  const other = await openClient(t, databaseUrl);

  await other.query('BEGIN');
  await other.query("UPDATE users SET password_hash = 'replaced', password_changed_at = $2 WHERE id = $1", [user.id, addSeconds(clock.now(), 1)]);
  const pending = request({ url: '/v1/auth/login', body: { email: user.email, password } });
  await waitForLockWaiters(other);
  await other.query('COMMIT');
  const res = await pending;

  t.equal(res.status, 401);
  t.equal(res.body.code, 'invalid_credentials');
  t.equal(await app.ctx.db.flowToken.count({ where: { userId: user.id, purpose: 'LOGIN_CHALLENGE' } }), 0, 'no challenge for the old password');
});

const SUDO_ACTIONS = [
  { name: 'remove MFA', method: 'DELETE', url: '/v1/me/mfa', body: (password: string) => ({ password }) },
  { name: 'regenerate recovery codes', method: 'POST', url: '/v1/me/mfa/recovery-codes', body: (password: string) => ({ password }) },
  {
    name: 'change password',
    method: 'PUT',
    url: '/v1/me/password',
    body: (password: string) => ({ currentPassword: password, newPassword: 'Amber falcon meadow 4711?' }),
  },
] as const;

for (const action of SUDO_ACTIONS) {
  t.test(`re-authentication (${action.name}): a password lock committed while the password is being checked wins`, async (t) => {
    const { app, clock, databaseUrl } = await buildTestApp(t);
    const request = api(app);
    const { user, password } = await createUser(app.ctx.db, app, { recoveryCodes: 10 });
    const session = await signIn(app, user);
    const before = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
    const other = await openClient(t, databaseUrl);

    await other.query('BEGIN');
    await other.query('UPDATE users SET failed_password_count = 10, password_locked_until = $2, password_lockouts = 1 WHERE id = $1', [
      user.id,
      addSeconds(clock.now(), 900),
    ]);
    const pending = request({ method: action.method, url: action.url, token: session.accessToken, body: action.body(password!) });
    await waitForLockWaiters(other);
    await other.query('COMMIT');
    const res = await pending;

    t.equal(res.status, 423, `${res.status} ${res.body?.code}`);
    t.equal(res.body.code, 'account_locked');
    const after = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
    t.equal(after.passwordHash, before.passwordHash, 'the password is unchanged');
    t.ok(after.passwordLockedUntil, 'the lock stays');
    t.equal(await app.ctx.db.totpFactor.count({ where: { userId: user.id, status: 'ACTIVE' } }), 1, 'the factor is still there');
    t.equal(await app.ctx.db.recoveryCode.count({ where: { userId: user.id, usedAt: null } }), 10, 'the recovery codes are unchanged');
  });
}

t.test('concurrent wrong codes on several live challenges: the account lock holds, no deadlock (no 5xx)', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, totpSecret } = await createUser(app.ctx.db, app);
  // One wrong code away from the code lock (security.md item 6: 10 consecutive failures).
  await app.ctx.db.user.update({ where: { id: user.id }, data: { failedMfaCount: 9 } });
  const challenges = await parallelChallenges(app, user.id, 8);
  const good = currentTotp(app, totpSecret!);
  const wrong = good === '000000' ? '111111' : '000000';

  const results = await Promise.all(challenges.map((challengeToken) => request({ url: '/v1/auth/login/mfa', body: { challengeToken, code: wrong } })));

  const statuses = results.map((r) => `${r.status} ${r.body.code}`);
  t.notOk(results.some((r) => r.status >= 500), `no 5xx: ${statuses.join(', ')}`);
  t.equal(results.filter((r) => r.body.code === 'mfa_locked').length >= 1, true, 'the 10th wrong code locks code entry');
  for (const r of results) t.ok(['mfa_locked', 'challenge_used'].includes(r.body.code), r.body.code);
  const codeFailures = await app.ctx.db.auditEvent.findMany({ where: { subjectUserId: user.id, type: 'login.mfa_failed' } });
  const refused = codeFailures.filter((e) => (e.details as { refused?: boolean }).refused === true);
  t.equal(codeFailures.length - refused.length, 1, 'exactly one code was evaluated: the others saw the lock (or their voided challenge)');
  t.equal(refused.length, challenges.length - 1, 'the refused attempts are audited as such (security.md item 26)');
  const after = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.ok(after.mfaLockedUntil && after.mfaLockedUntil > app.ctx.clock.now(), 'locked');
  t.equal(after.mfaLockouts, 1, 'one lock, not several');
});

t.test('a support-verified MFA reset link dies when the user removes the factor it was about', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user: support } = await createUser(app.ctx.db, app, { roles: ['SUPPORT'] });
  const { user, password } = await createUser(app.ctx.db, app, { organizationId: org.id });
  await requestMfaReset(app.ctx, { actor: { userId: support.id }, meta: { ip: null, userAgent: null } }, user.id);
  const mail = await lastMail(app, { toAddress: user.email, template: 'mfa_reset_confirm' });
  const staleLink = tokenFromLink(mail.textBody, '/confirm-mfa-reset');

  // Meanwhile the user sets up a new phone on their own: remove (with password), enrol again.
  const session = await signIn(app, user);
  t.equal((await request({ method: 'DELETE', url: '/v1/me/mfa', token: session.accessToken, body: { password } })).status, 204);
  const started = await request({ method: 'POST', url: '/v1/me/mfa/totp', token: session.accessToken });
  const secret = secretOf(started.body.otpauthUri);
  const verified = await request({ url: '/v1/me/mfa/totp/verify', token: session.accessToken, body: { code: currentTotp(app, secret) } });
  t.equal(verified.status, 200, 'new factor active');
  clock.advance(60);

  const res = await request({ url: '/v1/mfa-reset/confirm', body: { token: staleLink } });
  t.equal(res.status, 410, 'the old link no longer works');
  t.equal(res.body.code, 'link_used');
  t.equal(await app.ctx.db.totpFactor.count({ where: { userId: user.id, status: 'ACTIVE' } }), 1, 'the new factor survives');
});

/**
 * A block commits while the user opens a link: blocking locks the user row, then voids the user's
 * links. A link use that locked the link row first and then waited for the user row deadlocked
 * with it (one of them 500). Here a second connection plays the block transaction step by step.
 */
for (const kind of ['password reset', 'activation'] as const) {
  t.test(`a block racing a ${kind} link: the link is used up by the block, no deadlock`, async (t) => {
    const { app, databaseUrl } = await buildTestApp(t);
    const request = api(app);
    const org = await createOrganization(app.ctx.db);
    let userId: string;
    let url: string;
    let token: string;
    if (kind === 'activation') {
      const invited = await inviteUser(app, { organizationId: org.id });
      userId = invited.user.id;
      url = '/v1/activation';
      token = invited.token;
    } else {
      const { user } = await createUser(app.ctx.db, app, { organizationId: org.id });
      userId = user.id;
      url = '/v1/password/reset';
      const issued = await app.ctx.db.$transaction((tx) => sendPasswordResetMail(tx, app.ctx, { user, actorUserId: null, by: 'support', actorName: 'Sam Support' }));
      t.ok(issued.expiresAt);
      const mail = await lastMail(app, { toAddress: user.email, template: 'password_reset' });
      token = tokenFromLink(mail.textBody, '/reset-password');
    }
    const block = await openClient(t, databaseUrl);

    await block.query('BEGIN');
    await block.query("UPDATE users SET status = 'BLOCKED', blocked_at = now() WHERE id = $1", [userId]);
    const pending = request({ url, body: { token, password: GOOD_PASSWORD } });
    await waitForLockWaiters(block);
    // The block's second step; a link use holding the link row while waiting for the user row deadlocks here.
    await block.query("UPDATE flow_tokens SET state = 'VOIDED' WHERE user_id = $1 AND state = 'PENDING'", [userId]);
    await block.query('COMMIT');
    const res = await pending;

    t.equal(res.status, 410, `${res.status} ${res.body.code}`);
    t.equal(res.body.code, 'link_used');
    const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: userId } });
    t.equal(row.status, 'BLOCKED');
    t.equal(await app.ctx.db.flowToken.count({ where: { userId, purpose: 'LOGIN_CHALLENGE' } }), 0, 'no login challenge for the blocked user');
  });
}

t.test('refresh racing a block: the ended session gets no new pair (not even a short-lived access token)', async (t) => {
  const { app, databaseUrl } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app, { organizationId: org.id });
  const session = await signIn(app, user);
  const block = await openClient(t, databaseUrl);

  // The block transaction: user BLOCKED, every session revoked, not yet committed.
  await block.query('BEGIN');
  await block.query("UPDATE users SET status = 'BLOCKED', blocked_at = now() WHERE id = $1", [user.id]);
  await block.query("UPDATE sessions SET revoked_at = now(), revoked_reason = 'user_blocked' WHERE user_id = $1 AND revoked_at IS NULL", [user.id]);
  const pending = request({ url: '/v1/auth/refresh', body: { refreshToken: session.refreshToken } });
  await waitForLockWaiters(block);
  await block.query('COMMIT');
  const res = await pending;

  t.equal(res.status, 401, `${res.status} ${res.body.code ?? ''}`);
  t.equal(res.body.code, 'refresh_token_invalid');
  t.notOk(res.body.accessToken, 'no access token');
  t.equal(await app.ctx.db.refreshToken.count({ where: { session: { userId: user.id } } }), 1, 'no new refresh token was stored');
  const row = await app.ctx.db.refreshToken.findFirstOrThrow({ where: { session: { userId: user.id } } });
  t.equal(row.rotatedAt, null, 'the rotation was rolled back');
});

t.test('login: two correct password steps at once leave one live challenge; the older one is replaced', async (t) => {
  // A slow argon2 keeps both password checks in flight while the user row is held.
  const { app, databaseUrl } = await buildTestApp(t, { ARGON2_MEMORY_KIB: '65536', ARGON2_TIME_COST: '4' });
  const request = api(app);
  const { user, password, totpSecret } = await createUser(app.ctx.db, app);
  const other = await openClient(t, databaseUrl);
  const count = async (sql: string, values: unknown[]) => Number((await other.query<{ n: string }>(sql, values)).rows[0]?.n);

  const a = request({ url: '/v1/auth/login', body: { email: user.email, password } });
  const b = request({ url: '/v1/auth/login', body: { email: user.email, password } });
  // Both attempts are counted and hashing; hold the user row so that both success statements start
  // (and take their snapshots) before either can commit its challenge.
  for (let i = 0; (await count('SELECT failed_password_count AS n FROM users WHERE id = $1', [user.id])) < 2; i++) {
    if (i > 500) throw new Error('the two attempts were never counted');
    await sleep(2);
  }
  await other.query('BEGIN');
  await other.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [user.id]);
  await waitForLockWaiters(other, 2);
  await other.query('COMMIT');
  const [ra, rb] = await Promise.all([a, b]);
  t.equal(ra.status, 200);
  t.equal(rb.status, 200);

  const pending = await app.ctx.db.flowToken.count({ where: { userId: user.id, purpose: 'LOGIN_CHALLENGE', state: 'PENDING' } });
  t.equal(pending, 1, 'only the newest login challenge is live');
  const tokens = [ra.body.challengeToken as string, rb.body.challengeToken as string];
  const wrong = wrongCode(app, totpSecret!);
  const answers = await Promise.all(tokens.map((challengeToken) => request({ url: '/v1/auth/login/mfa', body: { challengeToken, code: wrong } })));
  t.same(answers.map((r) => r.body.code).sort(), ['challenge_used', 'mfa_code_invalid'], 'the older challenge was replaced by the newer login');
});
