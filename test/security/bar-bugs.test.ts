import t from 'tap';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createUser, currentTotp, signIn } from '../helpers/factories.js';
import { challengeFor } from '../integration/mfa/helpers.js';

/**
 * The bugs found while mapping security.md to the tests (docs/security.md, "Gaps and bugs found"),
 * now fixed: concurrent password guesses are counted before they are checked (items 5, 6),
 * "forgot password" issues its link under the user row lock (item 14), refused code attempts are
 * audited (item 26).
 */

const passwordFailures = (app: Awaited<ReturnType<typeof buildTestApp>>['app'], userId: string, reason: string) =>
  app.ctx.db.auditEvent.count({ where: { subjectUserId: userId, type: 'login.password_failed', details: { path: ['reason'], equals: reason } } });

t.test('during a lock, once 20 failures are counted, a concurrent burst must not get the password checked (no oracle)', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  // As after 19 consecutive failures: locked, one wrong password away from "no longer checked".
  await app.ctx.db.user.update({
    where: { id: user.id },
    data: { failedPasswordCount: 19, passwordLockedUntil: new Date(clock.now().getTime() + 900_000), passwordLockouts: 1 },
  });
  const bodies = Array.from({ length: 30 }, (_, i) => ({ email: user.email, password: i === 29 ? password! : `wrong guess ${i} x` }));
  const answers = await Promise.all(bodies.map((body) => request({ url: '/v1/auth/login', body })));
  const right = answers[29]!;
  t.equal(right.status, 401, `the right password, sent after 20+ failures, gets the generic answer (got ${right.status} ${right.body.code})`);
  t.equal(right.body.code, 'invalid_credentials');
  const evaluated = await passwordFailures(app, user.id, 'wrong_password');
  t.ok(evaluated <= 1, `at most the 20th failure is checked against the hash (checked: ${evaluated})`);
});

t.test('before the first lock, a burst of 40 wrong passwords gets 20 checked: 10, the lock, 10 more during it', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  const answers = await Promise.all(
    Array.from({ length: 40 }, (_, i) => request({ url: '/v1/auth/login', body: { email: user.email, password: `wrong guess ${i} x` } })),
  );
  t.ok(answers.every((r) => r.status === 401 && r.body.code === 'invalid_credentials'), 'every one answered invalid_credentials');
  t.equal(await passwordFailures(app, user.id, 'wrong_password'), 20, 'exactly 20 checked against the hash');
  t.equal(await passwordFailures(app, user.id, 'locked_unchecked'), 20, 'the other 20 not checked');
  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.same([row.failedPasswordCount, row.passwordLockouts], [20, 1], 'one lock, 20 failures counted');
  t.equal(row.passwordLockedUntil?.getTime(), clock.now().getTime() + 900_000, 'locked for 15 min');
  t.equal(await app.ctx.db.auditEvent.count({ where: { subjectUserId: user.id, type: 'login.locked' } }), 1);

  const after = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(after.body.code, 'invalid_credentials', 'the right password afterwards is not checked either (no oracle)');
  clock.advance(15 * 60);
  t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password } })).status, 200, 'the lock ends by itself');
});

t.test('a burst of wrong current passwords at re-authentication: 10 checked, then the lock answers without a check', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app);
  const session = await signIn(app, user);
  const answers = await Promise.all(
    Array.from({ length: 15 }, (_, i) =>
      request({
        method: 'PUT',
        url: '/v1/me/password',
        token: session.accessToken,
        body: { currentPassword: `wrong guess ${i} x`, newPassword: 'Amber falcon meadow 4711?' },
      }),
    ),
  );
  const codes = answers.map((r) => r.body.code as string);
  t.equal(codes.filter((c) => c === 'reauthentication_failed').length, 10, `10 checked and wrong (${codes.join(', ')})`);
  t.equal(codes.filter((c) => c === 'account_locked').length, 5, 'the rest meet the lock');
  t.equal(await passwordFailures(app, user.id, 'wrong_password'), 10);
  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.same([row.failedPasswordCount, row.passwordLockouts], [10, 1]);
  t.ok(row.passwordLockedUntil);
});

t.test('an attempt that could not be checked (hash queue full, 503) is not counted', async (t) => {
  const { app } = await buildTestApp(t, { HASH_MAX_CONCURRENT: '1', HASH_MAX_QUEUED: '0', ARGON2_MEMORY_KIB: '19456', ARGON2_TIME_COST: '2' });
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app);
  const answers = await Promise.all(
    Array.from({ length: 8 }, (_, i) => request({ url: '/v1/auth/login', body: { email: user.email, password: `wrong guess ${i} x` } })),
  );
  const checked = answers.filter((r) => r.status === 401).length;
  const shed = answers.filter((r) => r.status === 503).length;
  t.ok(shed > 0 && checked > 0, `some checked, some shed: ${checked} + ${shed}`);
  t.equal(checked + shed, 8, `401 or 503 only (${answers.map((r) => r.status).join(', ')})`);
  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.equal(row.failedPasswordCount, checked, 'only the checked ones count');
  t.equal(row.passwordLockedUntil, null);
});

t.test('concurrent "forgot password" requests leave exactly one reset link valid', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app);
  const answers = await Promise.all(Array.from({ length: 10 }, () => request({ url: '/v1/password/forgot', body: { email: user.email } })));
  t.ok(answers.every((r) => r.status === 202), 'all answered 202');
  const pending = await app.ctx.db.flowToken.count({ where: { userId: user.id, purpose: 'PASSWORD_RESET', state: 'PENDING' } });
  t.equal(pending, 1, `one valid link (found ${pending})`);
  // One link a minute per account (forgot-password.ts): the other nine neither void it nor mail.
  t.equal(await app.ctx.db.flowToken.count({ where: { userId: user.id, purpose: 'PASSWORD_RESET' } }), 1, 'one link issued');
  t.equal(await app.ctx.db.mailOutbox.count({ where: { toAddress: user.email, template: 'password_reset' } }), 1, 'one mail');
});

t.test('a code attempt while code entry is locked is a login attempt and is audited', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user, totpSecret } = await createUser(app.ctx.db, app);
  await app.ctx.db.user.update({ where: { id: user.id }, data: { mfaLockedUntil: new Date(clock.now().getTime() + 900_000), mfaLockouts: 1 } });
  const res = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), code: currentTotp(app, totpSecret!) } });
  t.equal(res.status, 423);
  t.equal(res.body.code, 'mfa_locked');
  const audited = await app.ctx.db.auditEvent.count({ where: { subjectUserId: user.id, type: 'login.mfa_failed' } });
  t.equal(audited, 1, 'the refused attempt is in the audit log (as the password step records reason "locked")');
});

t.test('refused code attempts (locked, blocked, expired or used challenge) are audited with a reason, nothing else changes', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user, totpSecret } = await createUser(app.ctx.db, app);
  const lockedUntil = new Date(clock.now().getTime() + 900_000);
  const code = (token: string, body: object = { code: currentTotp(app, totpSecret!) }) =>
    request({ url: '/v1/auth/login/mfa', body: { challengeToken: token, ...body } });
  const refusals = async () =>
    (await app.ctx.db.auditEvent.findMany({ where: { subjectUserId: user.id, type: { in: ['login.mfa_failed', 'login.blocked_attempt'] } }, orderBy: { createdAt: 'asc' } })).map(
      (e) => ({ type: e.type, actor: e.actorUserId, ...(e.details as object) }),
    );

  // Code entry locked: with a TOTP code and with a recovery code.
  await app.ctx.db.user.update({ where: { id: user.id }, data: { failedMfaCount: 3, mfaLockedUntil: lockedUntil, mfaLockouts: 1 } });
  t.equal((await code(await challengeFor(app, user.id, 'mfa'))).body.code, 'mfa_locked');
  t.equal((await code(await challengeFor(app, user.id, 'mfa'), { recoveryCode: 'ABCD-EFGH-IJKL' })).body.code, 'mfa_locked');
  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.same([row.failedMfaCount, row.mfaLockedUntil, row.mfaLockouts], [3, lockedUntil, 1], 'not counted, the lock unchanged');
  await app.ctx.db.user.update({ where: { id: user.id }, data: { failedMfaCount: 0, mfaLockedUntil: null } });

  // Expired, then used challenge.
  const expiring = await challengeFor(app, user.id, 'mfa');
  clock.advance(301);
  t.equal((await code(expiring)).body.code, 'challenge_expired');
  const used = await challengeFor(app, user.id, 'mfa');
  t.equal((await code(used)).status, 200);
  clock.advance(30);
  t.equal((await code(used)).body.code, 'challenge_used');

  // Blocked (a challenge issued before the block, as in a race with it).
  const beforeBlock = await challengeFor(app, user.id, 'mfa');
  await app.ctx.db.user.update({ where: { id: user.id }, data: { status: 'BLOCKED', blockedAt: clock.now() } });
  t.equal((await code(beforeBlock)).body.code, 'account_blocked');

  // Not a login challenge at all: nobody to attribute it to, nothing recorded.
  t.equal((await code('x'.repeat(43))).body.code, 'challenge_invalid');

  t.same(await refusals(), [
    { type: 'login.mfa_failed', actor: user.id, reason: 'locked', factor: 'totp', flow: 'login', refused: true, until: lockedUntil.toISOString() },
    { type: 'login.mfa_failed', actor: user.id, reason: 'locked', factor: 'recovery_code', flow: 'login', refused: true, until: lockedUntil.toISOString() },
    { type: 'login.mfa_failed', actor: user.id, reason: 'challenge_expired', factor: 'totp', flow: 'login', refused: true },
    { type: 'login.mfa_failed', actor: user.id, reason: 'challenge_used', factor: 'totp', flow: 'login', refused: true },
    { type: 'login.blocked_attempt', actor: user.id, reason: 'blocked', factor: 'totp', flow: 'login', refused: true, step: 'code' },
  ]);
  const after = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.equal(after.failedMfaCount, 0, 'refusals never count as wrong codes');
});

t.test('a refused first code at login enrolment is audited too', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app, { withTotp: false });
  const challengeToken = await challengeFor(app, user.id, 'mfa_enrollment');
  const started = await request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken } });
  t.equal(started.status, 200);
  await app.ctx.db.user.update({ where: { id: user.id }, data: { mfaLockedUntil: new Date(clock.now().getTime() + 900_000), mfaLockouts: 1 } });
  const res = await request({ url: '/v1/auth/login/mfa-enrollment/verify', body: { challengeToken, code: '123456' } });
  t.equal(res.body.code, 'mfa_locked');
  const audits = await app.ctx.db.auditEvent.findMany({ where: { subjectUserId: user.id, type: 'login.mfa_failed' } });
  t.same(
    audits.map((e) => e.details),
    [{ reason: 'locked', factor: 'totp', flow: 'login_enrollment', refused: true, until: new Date(clock.now().getTime() + 900_000).toISOString() }],
  );
});
