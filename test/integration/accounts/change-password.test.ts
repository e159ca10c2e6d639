import t from 'tap';
import { buildTestApp } from '../../helpers/app.js';
import { api } from '../../helpers/http.js';
import { startSmtpSink } from '../../helpers/smtp-sink.js';
import { createOrganization, createUser, currentTotp, signIn } from '../../helpers/factories.js';
import { auditEvents, deliverMail, GOOD_PASSWORD } from '../../helpers/accounts.js';

t.test('change password: needs the current one, ends the other sessions, keeps this one, notifies', async (t) => {
  const sink = await startSmtpSink(t);
  const { app } = await buildTestApp(t, { SMTP_URL: sink.url });
  const request = api(app);
  const org = await createOrganization(app.ctx.db, { name: 'Kessler Elektro' });
  const { user, password } = await createUser(app.ctx.db, app, { organizationId: org.id, email: 'jonas.weber@example.test' });
  const current = await signIn(app, user);
  const other = await signIn(app, user);

  const unauthenticated = await request({ method: 'PUT', url: '/v1/me/password', body: { currentPassword: password, newPassword: GOOD_PASSWORD } });
  t.equal(unauthenticated.status, 401);

  const wrong = await request({
    method: 'PUT',
    url: '/v1/me/password',
    token: current.accessToken,
    body: { currentPassword: 'not my password 1', newPassword: GOOD_PASSWORD },
  });
  t.equal(wrong.status, 403);
  t.equal(wrong.body.code, 'reauthentication_failed');
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } })).failedPasswordCount, 1, 'counts towards the lock');

  for (const [newPassword, code] of [
    ['too short', 'password_too_short'],
    ['qwertyuiop123', 'password_common'],
    ['jonas weber secret', 'password_contains_context'],
    ['kessler elektro rocks', 'password_contains_context'],
  ] as const) {
    const res = await request({ method: 'PUT', url: '/v1/me/password', token: current.accessToken, body: { currentPassword: password, newPassword } });
    t.equal(res.status, 422, code);
    t.equal(res.body.code, code);
  }

  const ok = await request({ method: 'PUT', url: '/v1/me/password', token: current.accessToken, body: { currentPassword: password, newPassword: GOOD_PASSWORD } });
  t.equal(ok.status, 204);
  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.equal(row.failedPasswordCount, 0);

  t.equal((await request({ url: '/v1/auth/refresh', body: { refreshToken: other.refreshToken } })).status, 401, 'other sessions end');
  t.equal((await request({ url: '/v1/auth/refresh', body: { refreshToken: current.refreshToken } })).status, 200, 'this one stays');
  t.equal((await request({ url: '/v1/me', token: current.accessToken })).status, 200);

  t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password } })).status, 401);
  t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password: GOOD_PASSWORD } })).body.next, 'mfa');

  await deliverMail(app);
  t.same(sink.messages.map((m) => m.subject), ['ALSO Webshop: your password was changed']);
  t.ok((await auditEvents(app, user.id)).some((e) => e.type === 'password.changed'));
});

t.test('change password while the password is locked: 423', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  const session = await signIn(app, user);
  await app.ctx.db.user.update({
    where: { id: user.id },
    data: { failedPasswordCount: 10, passwordLockedUntil: new Date(clock.now().getTime() + 600_000), passwordLockouts: 1 },
  });
  const res = await request({ method: 'PUT', url: '/v1/me/password', token: session.accessToken, body: { currentPassword: password, newPassword: GOOD_PASSWORD } });
  t.equal(res.status, 423);
  t.equal(res.body.code, 'account_locked');
  t.equal(res.headers['retry-after'], '600');
});

t.test('a password change ends a sign-in started with the old password before it, and is audited with the sessions it ended (mutation review, session 22)', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, password, totpSecret } = await createUser(app.ctx.db, app);
  const session = await signIn(app, user);
  await signIn(app, user);
  // Someone who knows the old password has passed the password step and waits for a code.
  const step = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(step.status, 200);
  t.equal(step.body.next, 'mfa');

  const changed = await request({ method: 'PUT', url: '/v1/me/password', token: session.accessToken, body: { currentPassword: password, newPassword: GOOD_PASSWORD } });
  t.equal(changed.status, 204);
  const code = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: step.body.challengeToken, code: currentTotp(app, totpSecret!) } });
  t.equal(code.status, 410, 'the challenge of the old password is dead');
  t.equal(code.body.code, 'challenge_used');
  t.notOk(code.body.accessToken, 'no session for the old password');
  const [audit] = (await auditEvents(app, user.id)).filter((e) => e.type === 'password.changed');
  t.match(audit?.details, { sessionsRevoked: 1 }, 'the other session, not this one');
});

t.test('concurrent password changes with the same current password: one wins, the others are refused (mutation review, session 22)', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  const session = await signIn(app, user);
  // The test clock stands still: without this step the changes would carry the very time the
  // password was set at, and a change would look like no change.
  clock.advance(1);
  const candidates = ['Amber falcon meadow 4711?', 'Copper lantern orbit 5822!', 'Velvet harbor quartz 9933#', 'Silent pebble rocket 1044$'];
  const results = await Promise.all(
    candidates.map((newPassword) => request({ method: 'PUT', url: '/v1/me/password', token: session.accessToken, body: { currentPassword: password, newPassword } })),
  );
  t.equal(results.filter((r) => r.status === 204).length, 1, JSON.stringify(results.map((r) => [r.status, r.body?.code])));
  t.equal((await auditEvents(app, user.id)).filter((e) => e.type === 'password.changed').length, 1, 'one change');
});
