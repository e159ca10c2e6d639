import t from 'tap';
import { buildTestApp } from '../helpers/app.js';
import { injectFaults } from '../helpers/faults.js';
import { api } from '../helpers/http.js';
import { createUser, signIn } from '../helpers/factories.js';

/**
 * security.md item 26 with item 6 (closes the session-6 known gap 7): the password lock is set by
 * the attempt that is counted before its hash is checked, and its `login.locked` audit row is
 * written by the very statement that sets it. A database failure afterwards (the failure's own
 * audit row cannot be written) can no longer leave a lock nobody can find in the audit log.
 */

const WRONG = 'a wrong password 1';

async function lockAudits(app: Awaited<ReturnType<typeof buildTestApp>>['app'], userId: string) {
  return app.ctx.db.auditEvent.findMany({ where: { subjectUserId: userId, type: 'login.locked' }, orderBy: { createdAt: 'asc' } });
}

t.test('login: the 10th wrong password sets the lock and its audit row together, even when the settlement fails', async (t) => {
  const { app, databaseUrl } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app);
  await app.ctx.db.user.update({ where: { id: user.id }, data: { failedPasswordCount: 9 } });
  const fault = await injectFaults(t, databaseUrl, { table: 'audit_events', event: 'INSERT', when: "NEW.type = 'login.password_failed'" }, [
    'unavailable',
  ]);

  const res = await request({ url: '/v1/auth/login', body: { email: user.email, password: WRONG } });
  t.equal(res.status, 503, 'the failure audit could not be written');
  t.equal(await fault.count(), 1);
  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.equal(row.failedPasswordCount, 10, 'the wrong password stays counted');
  t.ok(row.passwordLockedUntil, 'and its lock holds');
  const audits = await lockAudits(app, user.id);
  t.equal(audits.length, 1, 'the lock is in the audit log');
  t.match(audits[0]?.details, { flow: 'login', lockNumber: 1, lockSeconds: 900, until: row.passwordLockedUntil?.toISOString() });
  t.equal(audits[0]?.ip, '127.0.0.1', 'with the request it came from');
});

t.test('re-authentication: the lock set by the 10th wrong current password is audited with it', async (t) => {
  const { app, databaseUrl } = await buildTestApp(t);
  const request = api(app);
  const created = await createUser(app.ctx.db, app);
  const { accessToken } = await signIn(app, created.user);
  await app.ctx.db.user.update({ where: { id: created.user.id }, data: { failedPasswordCount: 9 } });
  await injectFaults(t, databaseUrl, { table: 'audit_events', event: 'INSERT', when: "NEW.type = 'login.password_failed'" }, ['unavailable']);

  const res = await request({
    method: 'PUT',
    url: '/v1/me/password',
    headers: { authorization: `Bearer ${accessToken}` },
    body: { currentPassword: WRONG, newPassword: 'Amber falcon meadow 4711?' },
  });
  t.equal(res.status, 503);
  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: created.user.id } });
  t.ok(row.passwordLockedUntil, 'locked');
  const audits = await lockAudits(app, created.user.id);
  t.equal(audits.length, 1);
  t.match(audits[0]?.details, { flow: 'change_password', lockNumber: 1, until: row.passwordLockedUntil?.toISOString() });
});

t.test('a correct 10th password: the lock it set for a moment is audited, and its success says it lifted it', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  await app.ctx.db.user.update({ where: { id: user.id }, data: { failedPasswordCount: 9 } });

  const res = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(res.status, 200);
  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.same([row.failedPasswordCount, row.passwordLockedUntil, row.passwordLockouts], [0, null, 0], 'no lock left');
  t.equal((await lockAudits(app, user.id)).length, 1);
  const success = await app.ctx.db.auditEvent.findFirstOrThrow({ where: { subjectUserId: user.id, type: 'login.password_succeeded' } });
  t.match(success.details, { lockLifted: true });
});

t.test('a wrong 9th password sets no lock and writes no lock row', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app);
  await app.ctx.db.user.update({ where: { id: user.id }, data: { failedPasswordCount: 8 } });
  t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password: WRONG } })).status, 401);
  t.equal((await lockAudits(app, user.id)).length, 0);
  t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password: WRONG } })).status, 401);
  t.equal((await lockAudits(app, user.id)).length, 1, 'the 10th does, exactly once');
});

async function liftAudits(app: Awaited<ReturnType<typeof buildTestApp>>['app'], userId: string) {
  return app.ctx.db.auditEvent.findMany({ where: { subjectUserId: userId, type: 'login.lock_lifted' } });
}

t.test('a lock set by a correct 10th password that is given back without a login is recorded as lifted', async (t) => {
  t.test('re-authentication', async (t) => {
    const { app } = await buildTestApp(t);
    const request = api(app);
    const created = await createUser(app.ctx.db, app);
    const { accessToken } = await signIn(app, created.user);
    await app.ctx.db.user.update({ where: { id: created.user.id }, data: { failedPasswordCount: 9 } });
    const res = await request({
      method: 'POST',
      url: '/v1/me/mfa/recovery-codes',
      headers: { authorization: `Bearer ${accessToken}` },
      body: { password: created.password },
    });
    t.equal(res.status, 200);
    const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: created.user.id } });
    t.same([row.failedPasswordCount, row.passwordLockedUntil], [9, null], 'the attempt was given back, the lock with it');
    t.equal((await lockAudits(app, created.user.id)).length, 1, 'the lock it set is audited');
    const lifts = await liftAudits(app, created.user.id);
    t.equal(lifts.length, 1, 'and so is its lift');
    t.match(lifts[0]?.details, { flow: 'reauthentication', lockNumber: 1 });
  });

  t.test('a blocked account', async (t) => {
    const { app } = await buildTestApp(t);
    const request = api(app);
    const { user, password } = await createUser(app.ctx.db, app);
    await app.ctx.db.user.update({ where: { id: user.id }, data: { failedPasswordCount: 9, status: 'BLOCKED' } });
    const res = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
    t.equal(res.body.code, 'account_blocked');
    t.equal((await lockAudits(app, user.id)).length, 1);
    t.match((await liftAudits(app, user.id))[0]?.details, { flow: 'login', lockNumber: 1 });
  });

  t.test('not for a wrong 10th password: its lock holds', async (t) => {
    const { app } = await buildTestApp(t);
    const request = api(app);
    const { user } = await createUser(app.ctx.db, app);
    await app.ctx.db.user.update({ where: { id: user.id }, data: { failedPasswordCount: 9 } });
    t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password: WRONG } })).status, 401);
    t.equal((await liftAudits(app, user.id)).length, 0);
  });
});
