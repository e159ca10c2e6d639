import t from 'tap';
import { buildTestApp } from '../helpers/app.js';
import { injectFaults } from '../helpers/faults.js';
import { api } from '../helpers/http.js';
import { createUser, signIn } from '../helpers/factories.js';

/**
 * Security review (session 7): every password attempt is counted before its hash is checked
 * (security.md item 6), and "an attempt that could not be checked or finished is given back". A
 * correct password whose settlement fails (the database drops the statement) must not stay counted:
 * otherwise one blip during a correct 10th attempt locks the user out and lengthens later locks.
 *
 * Faults are injected in the real database (test/helpers/faults.ts).
 */

async function lockoutState(app: Awaited<ReturnType<typeof buildTestApp>>['app'], userId: string) {
  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: userId } });
  return { count: row.failedPasswordCount, lockedUntil: row.passwordLockedUntil, lockouts: row.passwordLockouts };
}

const AFTER_NINE = { count: 9, lockedUntil: null, lockouts: 0 };

t.test('login: a correct 10th password whose success write fails leaves no lock and no counted attempt', async (t) => {
  const { app, databaseUrl } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  await app.ctx.db.user.update({ where: { id: user.id }, data: { failedPasswordCount: 9 } });
  const fault = await injectFaults(t, databaseUrl, { table: 'flow_tokens', event: 'INSERT', when: "NEW.purpose = 'LOGIN_CHALLENGE'" }, ['unavailable']);

  const failed = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(failed.status, 503, 'the failed write answers 503');
  t.equal(failed.body.code, 'service_unavailable');
  t.equal(await fault.count(), 1, 'the fault was hit');
  t.same(await lockoutState(app, user.id), AFTER_NINE, 'the attempt was given back: no lock, count as before');
  t.equal(await app.ctx.db.auditEvent.count({ where: { subjectUserId: user.id, type: 'login.lock_lifted' } }), 1, 'the lock it set, lifted, on record');

  const retry = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(retry.status, 200, 'the retry with the correct password gets its challenge');
  t.equal(retry.body.next, 'mfa');
  t.same(await lockoutState(app, user.id), { count: 0, lockedUntil: null, lockouts: 0 }, 'and resets the count');
});

t.test('login: when the one-statement success falls back to the general path and that fails too, the attempt is given back', async (t) => {
  const { app, databaseUrl } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  await app.ctx.db.user.update({ where: { id: user.id }, data: { failedPasswordCount: 9 } });
  const fault = await injectFaults(t, databaseUrl, { table: 'flow_tokens', event: 'INSERT', when: "NEW.purpose = 'LOGIN_CHALLENGE'" }, [
    'challenge_conflict',
    'unavailable',
  ]);

  const failed = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(failed.status, 503);
  t.equal(await fault.count(), 2, 'both paths were tried');
  t.same(await lockoutState(app, user.id), AFTER_NINE);
  t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password } })).status, 200);
});

t.test('login: a blocked account whose correct password cannot be settled keeps no counted attempt', async (t) => {
  const { app, databaseUrl } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  await app.ctx.db.user.update({ where: { id: user.id }, data: { failedPasswordCount: 9, status: 'BLOCKED' } });
  const fault = await injectFaults(t, databaseUrl, { table: 'audit_events', event: 'INSERT', when: "NEW.type = 'login.blocked_attempt'" }, [
    'unavailable',
  ]);

  t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password } })).status, 503);
  t.equal(await fault.count(), 1);
  t.same(await lockoutState(app, user.id), AFTER_NINE);
  const again = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(again.status, 403, 'the next correct password is told the block, not a lock');
  t.equal(again.body.code, 'account_blocked');
});

t.test('re-authentication: a correct password is given back even when the first give-back fails', async (t) => {
  const { app, databaseUrl } = await buildTestApp(t);
  const request = api(app);
  const created = await createUser(app.ctx.db, app);
  const { accessToken } = await signIn(app, created.user);
  await app.ctx.db.user.update({ where: { id: created.user.id }, data: { failedPasswordCount: 9 } });
  // The give-back is the only UPDATE that lowers a count without ending the run of failures.
  const fault = await injectFaults(
    t,
    databaseUrl,
    { table: 'users', event: 'UPDATE', when: 'NEW.failed_password_count < OLD.failed_password_count AND NEW.failed_password_count > 0' },
    ['unavailable'],
  );

  const res = await request({
    method: 'POST',
    url: '/v1/me/mfa/recovery-codes',
    headers: { authorization: `Bearer ${accessToken}` },
    body: { password: created.password },
  });
  t.equal(res.status, 200, 'the action goes ahead');
  t.equal(await fault.count(), 2, 'the give-back failed once and was tried again');
  t.same(await lockoutState(app, created.user.id), AFTER_NINE, 'the correct password is not counted');
});
