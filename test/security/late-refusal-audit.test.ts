import t from 'tap';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createUser, signIn } from '../helpers/factories.js';
import { addSeconds } from '../../src/lib/clock.js';

/**
 * security.md item 26: every password attempt is audited, also the ones refused without their
 * password being checked or after it was checked — re-authentication during a lock, a lock or a
 * password change committed while argon2 was running (at re-authentication and at login).
 */

type App = Awaited<ReturnType<typeof buildTestApp>>['app'];
const NEW_PASSWORD = 'Amber falcon meadow 4711?';

/** The three routes that re-authenticate, each with the password to send and the flow its audit row names. */
const REAUTH_ROUTES = [
  { method: 'PUT', url: '/v1/me/password', body: (password: string) => ({ currentPassword: password, newPassword: NEW_PASSWORD }), flow: 'change_password' },
  { method: 'DELETE', url: '/v1/me/mfa', body: (password: string) => ({ password }), flow: 'reauthentication' },
  { method: 'POST', url: '/v1/me/mfa/recovery-codes', body: (password: string) => ({ password }), flow: 'reauthentication' },
] as const;

const failures = (app: App, userId: string) =>
  app.ctx.db.auditEvent.findMany({ where: { subjectUserId: userId, type: 'login.password_failed' }, orderBy: { createdAt: 'asc' } });

/** After each successful verification, `change` commits (as a concurrent request would while argon2 ran). */
function raceEveryVerification(app: App, change: () => Promise<unknown>) {
  const hasher = app.ctx.hasher as { verify: typeof app.ctx.hasher.verify };
  const verify = hasher.verify.bind(app.ctx.hasher);
  hasher.verify = async (hash, password) => {
    const result = await verify(hash, password);
    if (result.valid) await change();
    return result;
  };
}

for (const route of REAUTH_ROUTES) {
  t.test(`${route.method} ${route.url} during a password lock: 423, and the refused attempt is audited`, async (t) => {
    const { app, clock } = await buildTestApp(t);
    const request = api(app);
    const { user, password } = await createUser(app.ctx.db, app);
    const { accessToken } = await signIn(app, user);
    const until = addSeconds(clock.now(), 900);
    await app.ctx.db.user.update({ where: { id: user.id }, data: { failedPasswordCount: 10, passwordLockedUntil: until, passwordLockouts: 1 } });

    const res = await request({ method: route.method, url: route.url, headers: { authorization: `Bearer ${accessToken}` }, body: route.body(password!) });
    t.equal(res.status, 423);
    t.equal(res.body.code, 'account_locked');
    const rows = await failures(app, user.id);
    t.equal(rows.length, 1, 'one row for the refused attempt');
    t.equal(rows[0]?.actorUserId, user.id, 'typed in the user’s own session');
    t.equal(rows[0]?.organizationId, user.organizationId);
    t.equal(rows[0]?.ip, '127.0.0.1');
    t.same(rows[0]?.details, { reason: 'locked', flow: route.flow, until: until.toISOString() });
  });
}

t.test('a lock committed while the correct current password was hashed: nothing changes, 423, audited', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  const { accessToken } = await signIn(app, user);
  const before = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  const until = addSeconds(clock.now(), 900);
  raceEveryVerification(app, () =>
    app.ctx.db.user.update({ where: { id: user.id }, data: { failedPasswordCount: 10, passwordLockedUntil: until, passwordLockouts: 1 } }),
  );

  const res = await request({ method: 'PUT', url: '/v1/me/password', headers: { authorization: `Bearer ${accessToken}` }, body: REAUTH_ROUTES[0].body(password!) });
  t.equal(res.status, 423);
  t.equal(res.headers['retry-after'], '900');
  const after = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.equal(after.passwordHash, before.passwordHash, 'the password was not changed');
  t.same((await failures(app, user.id)).map((row) => row.details), [{ reason: 'locked', flow: 'change_password', until: until.toISOString() }]);
  t.equal(await app.ctx.db.auditEvent.count({ where: { subjectUserId: user.id, type: 'password.changed' } }), 0);
});

t.test('a password reset committed while the correct current password was hashed: 403, MFA kept, audited', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  const { accessToken } = await signIn(app, user);
  raceEveryVerification(app, () => app.ctx.db.user.update({ where: { id: user.id }, data: { passwordChangedAt: addSeconds(clock.now(), 1) } }));

  const res = await request({ method: 'DELETE', url: '/v1/me/mfa', headers: { authorization: `Bearer ${accessToken}` }, body: { password } });
  t.equal(res.status, 403);
  t.equal(res.body.code, 'reauthentication_failed');
  t.equal(await app.ctx.db.totpFactor.count({ where: { userId: user.id, status: 'ACTIVE' } }), 1, 'the MFA stays');
  const rows = await failures(app, user.id);
  t.same(
    rows.map((row) => [row.actorUserId, row.details]),
    [[user.id, { reason: 'password_changed', flow: 'reauthentication' }]],
  );
});

t.test('login: a correct password raced by a password reset answers invalid_credentials and is audited', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const { user, password } = await createUser(app.ctx.db, app);
  raceEveryVerification(app, () => app.ctx.db.user.update({ where: { id: user.id }, data: { passwordChangedAt: addSeconds(clock.now(), 1) } }));

  const res = await api(app)({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(res.status, 401);
  t.equal(res.body.code, 'invalid_credentials');
  const rows = await failures(app, user.id);
  t.equal(rows.length, 1);
  t.equal(rows[0]?.actorUserId, null, 'nobody is signed in at login');
  t.equal(rows[0]?.organizationId, user.organizationId);
  t.same(rows[0]?.details, { reason: 'password_changed', flow: 'login' });
  t.equal(await app.ctx.db.flowToken.count({ where: { userId: user.id, purpose: 'LOGIN_CHALLENGE' } }), 0, 'no challenge');
});

t.test('login: a block committed while the correct password is being checked wins: 403 account_blocked, no challenge (mutation review, session 20)', async (t) => {
  const { app } = await buildTestApp(t);
  const { user, password } = await createUser(app.ctx.db, app);
  // The one-statement success refuses a blocked row; the general path behind it must decide on it too.
  raceEveryVerification(app, () => app.ctx.db.user.update({ where: { id: user.id }, data: { status: 'BLOCKED', blockedAt: new Date() } }));
  const res = await api(app)({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(res.status, 403);
  t.equal(res.body.code, 'account_blocked');
  t.equal(await app.ctx.db.flowToken.count({ where: { userId: user.id, purpose: 'LOGIN_CHALLENGE' } }), 0, 'no challenge');
  t.equal(await app.ctx.db.auditEvent.count({ where: { subjectUserId: user.id, type: 'login.password_succeeded' } }), 0, 'no success recorded');
  t.equal(await app.ctx.db.auditEvent.count({ where: { subjectUserId: user.id, type: 'login.blocked_attempt' } }), 1, 'the refusal is');
});

/** error-handler.ts: a 401 thrown after the authenticate hook (here the re-check under the row lock) names the route's scheme too. */
t.test('an account blocked while the current password was hashed: 401 unauthenticated with the Bearer challenge, nothing changed (mutation review, session 21)', async (t) => {
  const { app } = await buildTestApp(t);
  const { user, password } = await createUser(app.ctx.db, app);
  const { accessToken } = await signIn(app, user);
  const before = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  raceEveryVerification(app, () => app.ctx.db.user.update({ where: { id: user.id }, data: { status: 'BLOCKED', blockedAt: new Date() } }));

  const res = await api(app)({ method: 'PUT', url: '/v1/me/password', headers: { authorization: `Bearer ${accessToken}` }, body: REAUTH_ROUTES[0].body(password!) });
  t.same([res.status, res.body.code], [401, 'unauthenticated']);
  t.equal(res.headers['www-authenticate'], 'Bearer realm="webshop-auth"', 'with the challenge of the route');
  const after = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.equal(after.passwordHash, before.passwordHash, 'the password was not changed');
});
