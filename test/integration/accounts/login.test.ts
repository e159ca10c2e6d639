import argon2 from 'argon2';
import t from 'tap';
import { buildTestApp } from '../../helpers/app.js';
import { api, type ApiResponse } from '../../helpers/http.js';
import { createOrganization, createUser, currentTotp } from '../../helpers/factories.js';
import { auditEvents, inviteUser } from '../../helpers/accounts.js';

/** What may differ between two otherwise identical answers: the request id (and the date). */
function comparable(res: ApiResponse) {
  const headers = { ...res.headers };
  delete headers['x-request-id'];
  delete headers.date;
  const raw = res.raw.replace(/"requestId":"[0-9a-f-]{36}"/, '"requestId":"*"');
  return { status: res.status, headers, raw };
}

t.test('password step: the answer says what comes next, never a session', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user: enrolled, password } = await createUser(app.ctx.db, app, { email: 'Mixed.Case@Example.test' });
  const { user: notEnrolled, password: password2 } = await createUser(app.ctx.db, app, { withTotp: false });

  const res = await request({ url: '/v1/auth/login', body: { email: 'mixed.case@EXAMPLE.test', password } });
  t.equal(res.status, 200, 'e-mail is case-insensitive');
  t.same(Object.keys(res.body).sort(), ['challengeToken', 'expiresIn', 'next']);
  t.equal(res.body.next, 'mfa');
  t.equal(res.body.expiresIn, 300);
  t.equal(res.headers['cache-control'], 'no-store');
  t.equal(await app.ctx.db.session.count(), 0, 'no session on a password alone');

  const second = await request({ url: '/v1/auth/login', body: { email: notEnrolled.email, password: password2 } });
  t.equal(second.body.next, 'mfa_enrollment');

  // The challenge carries on to the code step (the MFA module's endpoint).
  const code = await request({
    url: '/v1/auth/login/mfa',
    body: { challengeToken: res.body.challengeToken, code: currentTotp(app, (await createUser(app.ctx.db, app)).totpSecret!) },
  });
  t.not(code.status, 200, 'a code of another account does not complete the login');

  const types = (await auditEvents(app, enrolled.id)).map((e) => e.type);
  t.ok(types.includes('login.password_succeeded'));
});

t.test('a password step while an earlier challenge is unused replaces it in its one statement: nothing fails, no connection is dropped', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, password, totpSecret } = await createUser(app.ctx.db, app);
  // The pool drops a connection after any failed statement (pg-pool's query): the fast path used to
  // insert the new challenge before voiding the old one (the order of a WITH's data-modifying parts
  // is not defined), hit the one-live-challenge index, and fell back to the general path.
  let dropped = 0;
  app.ctx.pool.on('remove', () => dropped++);
  const challenges: string[] = [];
  for (let i = 0; i < 4; i++) {
    const res = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
    t.equal(res.status, 200);
    challenges.push(res.body.challengeToken);
  }
  t.equal(dropped, 0, 'no connection dropped');
  t.equal(await app.ctx.db.flowToken.count({ where: { userId: user.id, purpose: 'LOGIN_CHALLENGE', state: 'PENDING' } }), 1, 'one live challenge');
  t.equal(await app.ctx.db.flowToken.count({ where: { userId: user.id, purpose: 'LOGIN_CHALLENGE', state: 'VOIDED' } }), 3, 'the older ones voided');
  const old = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: challenges[0], code: currentTotp(app, totpSecret!) } });
  t.equal(old.body.code, 'challenge_used', 'an older challenge no longer works');
  const newest = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: challenges[3], code: currentTotp(app, totpSecret!) } });
  t.equal(newest.status, 200, 'the newest does');
});

t.test('unknown e-mail, wrong password and not-yet-activated account answer byte-identically', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app);
  const { user: invited } = await inviteUser(app);
  const { user: blocked } = await createUser(app.ctx.db, app, { status: 'BLOCKED' });

  const attempts = [
    { email: 'nobody@example.test', password: 'some password 123' },
    { email: user.email, password: 'some password 123' },
    { email: invited.email, password: 'some password 123' },
    { email: blocked.email, password: 'some password 123' },
  ];
  const answers = [];
  for (const body of attempts) answers.push(await request({ url: '/v1/auth/login', body }));
  const [first, ...rest] = answers.map(comparable);
  t.equal(first!.status, 401);
  t.equal(answers[0]!.body.code, 'invalid_credentials');
  for (const other of rest) t.same(other, first, 'identical status, headers and body');

  // Each spent one argon2 verification and wrote one audit row.
  const failed = (await auditEvents(app)).filter((e) => e.type === 'login.password_failed');
  t.same(failed.map((e) => (e.details as { reason: string }).reason), ['unknown_email', 'wrong_password', 'not_activated', 'wrong_password']);
  t.equal(failed[0]!.subjectUserId, null);
});

t.test('blocked: told only after the correct password, with whom to contact', async (t) => {
  const { app } = await buildTestApp(t, { SUPPORT_CONTACT: 'the e-business team (ebusiness@example.test)' });
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  await createUser(app.ctx.db, app, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Bea Admin', email: 'bea@example.test' });
  await createUser(app.ctx.db, app, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Ada Admin', email: 'ada@example.test' });
  await createUser(app.ctx.db, app, { organizationId: org.id, roles: ['USER'], name: 'Not Admin' });
  const other = await createOrganization(app.ctx.db);
  await createUser(app.ctx.db, app, { organizationId: other.id, roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Foreign Admin' });
  const { user, password } = await createUser(app.ctx.db, app, { organizationId: org.id, status: 'BLOCKED' });

  t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password: 'wrong password 123' } })).body.code, 'invalid_credentials');
  const res = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(res.status, 403);
  t.equal(res.body.code, 'account_blocked');
  t.same(res.body.contact, {
    support: 'the e-business team (ebusiness@example.test)',
    language: 'en',
    administrators: [
      { name: 'Ada Admin', email: 'ada@example.test' },
      { name: 'Bea Admin', email: 'bea@example.test' },
    ],
  });
  t.match(res.body.detail, 'Ada Admin <ada@example.test>');
  t.equal(await app.ctx.db.flowToken.count({ where: { userId: user.id } }), 0, 'no challenge');
  t.match((await auditEvents(app, user.id)).filter((e) => e.type === 'login.blocked_attempt'), [{ details: { step: 'password' } }], 'which step it was, as the security events say');

  // Support staff (no organisation) are pointed at support only.
  const { user: staff, password: staffPassword } = await createUser(app.ctx.db, app, { roles: ['SUPPORT'], status: 'BLOCKED' });
  const staffRes = await request({ url: '/v1/auth/login', body: { email: staff.email, password: staffPassword } });
  t.same(staffRes.body.contact.administrators, []);
});

t.test('lockout: the 10th wrong password locks for 15 min (told only with the right password), doubling, reset by success', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  const wrong = { email: user.email, password: 'wrong password 123' };
  const right = { email: user.email, password };

  for (let i = 1; i <= 9; i++) t.equal((await request({ url: '/v1/auth/login', body: wrong })).body.code, 'invalid_credentials');
  let row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.equal(row.failedPasswordCount, 9);
  t.equal(row.passwordLockedUntil, null, 'not locked after 9');

  const tenth = await request({ url: '/v1/auth/login', body: wrong });
  t.equal(tenth.status, 401, 'the 10th wrong password is answered like any wrong password');
  t.equal(tenth.body.code, 'invalid_credentials');
  row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.equal(row.passwordLockedUntil?.getTime(), clock.now().getTime() + 15 * 60 * 1000, 'locked for 15 min');
  t.ok((await auditEvents(app, user.id)).some((e) => e.type === 'login.locked'));

  const eleventh = await request({ url: '/v1/auth/login', body: right });
  t.equal(eleventh.status, 423, 'the 11th attempt, with the right password, learns of the lock');
  t.equal(eleventh.body.code, 'account_locked');
  t.equal(eleventh.headers['retry-after'], '900');
  t.equal(eleventh.body.retryAfter, 900);
  t.equal((await request({ url: '/v1/auth/login', body: wrong })).status, 401, 'a wrong password still says nothing of it');

  clock.advance(14 * 60);
  const later = await request({ url: '/v1/auth/login', body: right });
  t.equal(later.status, 423);
  t.equal(later.headers['retry-after'], '60');

  clock.advance(60);
  const after = await request({ url: '/v1/auth/login', body: right });
  t.equal(after.status, 200, 'the lock ends by itself');
  row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.same([row.failedPasswordCount, row.passwordLockedUntil, row.passwordLockouts], [0, null, 0], 'success resets');

  // A success in between starts the count again.
  for (let i = 1; i <= 9; i++) await request({ url: '/v1/auth/login', body: wrong });
  t.equal((await request({ url: '/v1/auth/login', body: right })).status, 200);
  for (let i = 1; i <= 9; i++) await request({ url: '/v1/auth/login', body: wrong });
  t.equal((await request({ url: '/v1/auth/login', body: right })).status, 200, '9 + 9 failures with a success between: no lock');

  // Locks grow: 15 min, then 30 min when the next 10 fail after the first lock ran out.
  for (let i = 1; i <= 10; i++) await request({ url: '/v1/auth/login', body: wrong });
  clock.advance(15 * 60);
  for (let i = 1; i <= 9; i++) await request({ url: '/v1/auth/login', body: wrong });
  t.equal((await request({ url: '/v1/auth/login', body: right })).status, 200, 'after the lock ran out the count starts from zero');
  for (let i = 1; i <= 10; i++) await request({ url: '/v1/auth/login', body: wrong });
  clock.advance(15 * 60);
  for (let i = 1; i <= 10; i++) await request({ url: '/v1/auth/login', body: wrong });
  const grown = await request({ url: '/v1/auth/login', body: right });
  t.equal(grown.status, 423);
  t.equal(grown.headers['retry-after'], String(30 * 60), 'the second lock in a row lasts 30 min');
});

t.test('during a lock, once another 10 wrong passwords pile up, even the right one is no longer checked', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  const wrong = { email: user.email, password: 'wrong password 123' };
  for (let i = 1; i <= 19; i++) await request({ url: '/v1/auth/login', body: wrong });
  t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password } })).status, 423, 'still checked after 19');
  await request({ url: '/v1/auth/login', body: wrong });
  const unchecked = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(unchecked.status, 401, 'no oracle: the right password gets the generic answer');
  t.equal(unchecked.body.code, 'invalid_credentials');
  clock.advance(15 * 60);
  t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password } })).status, 200);
});

t.test('concurrent wrong passwords are all counted', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app);
  await Promise.all(Array.from({ length: 12 }, () => request({ url: '/v1/auth/login', body: { email: user.email, password: 'wrong password 123' } })));
  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.equal(row.failedPasswordCount, 12);
  t.ok(row.passwordLockedUntil);
  t.equal(row.passwordLockouts, 1, 'locked once');
});

t.test('passwords: NFKC-normalised, long ones never truncated, re-hashed when the parameters were raised', async (t) => {
  const { app } = await buildTestApp(t, { ARGON2_TIME_COST: '2' });
  const request = api(app);

  // Stored with weaker parameters (t=1), as before a configuration change.
  const long = `${'long passphrase '.repeat(12)}end`; // 195 characters
  const weak = await argon2.hash(long, { type: argon2.argon2id, memoryCost: 1024, timeCost: 1, parallelism: 1 });
  const { user } = await createUser(app.ctx.db, app, { password: null });
  await app.ctx.db.user.update({ where: { id: user.id }, data: { passwordHash: weak } });

  t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password: long.slice(0, 128) } })).status, 401, 'not truncated at 128');
  t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password: long.slice(0, -1) } })).status, 401);
  t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password: long } })).status, 200);
  const rehashed = (await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } })).passwordHash!;
  t.not(rehashed, weak);
  t.match(rehashed, /^\$argon2id\$v=19\$m=1024,p=1,t=2\$/, 'stored again with the configured parameters');
  t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password: long } })).status, 200, 'the new hash works');
  t.ok((await auditEvents(app, user.id)).some((e) => (e.details as { rehashed?: boolean }).rehashed === true));

  // "ﬁ" (U+FB01) is NFKC "fi"; full-width digits are ASCII digits.
  const { user: u2 } = await createUser(app.ctx.db, app, { password: 'ﬁne wine ２０２６ club' });
  t.equal((await request({ url: '/v1/auth/login', body: { email: u2.email, password: 'fine wine 2026 club' } })).status, 200);
});
