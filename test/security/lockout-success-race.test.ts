import t, { type Test } from 'tap';
import { buildTestApp, type TestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createUser } from '../helpers/factories.js';
import { holdCorrectVerifications } from '../helpers/held-verify.js';

/**
 * Race review, session 29: security.md item 6 — "after 10 consecutive failures the account is
 * temporarily locked … success resets the count"; password-lockout.ts promises that concurrent
 * attempts are "limited exactly like a sequence of guesses". A correct 10th password sets the lock
 * itself when it is reserved (newLock); while its hash is being checked, further wrong passwords are
 * reserved as the 11th, 12th, … failures. Its success used to clear the count whole, erasing every
 * failure counted after it: ten wrong passwords that followed the success left the account unlocked
 * with a count of 0. It now takes away only the failures up to its own attempt (successResetSql).
 */
/** Holds the correct attempt between its reservation and its settlement (a slow argon2 run) while `during` runs. */
async function whileCorrectIsChecked<T>(t: Test, app: TestApp['app'], correct: () => Promise<T>, during: () => Promise<unknown>): Promise<T> {
  const [held] = holdCorrectVerifications(t, app, 1);
  const answer = correct();
  await held!.entered;
  await during();
  held!.release();
  return answer;
}

t.test('wrong passwords counted while a correct one is being checked are not erased by its success', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  await app.ctx.db.user.update({ where: { id: user.id }, data: { failedPasswordCount: 9 } });
  const wrong: Awaited<ReturnType<typeof request>>[] = [];
  const ok = await whileCorrectIsChecked(
    t,
    app,
    () => request({ url: '/v1/auth/login', body: { email: user.email, password } }),
    async () => {
      for (let i = 0; i < 10; i++) wrong.push(await request({ url: '/v1/auth/login', body: { email: user.email, password: `wrong password number ${i}` } }));
    },
  );

  t.equal(ok.status, 200, 'the correct password (the 10th attempt) gets its challenge');
  t.same(wrong.map((r) => r.status), Array(10).fill(401), 'the ten wrong ones after it are refused');
  const failures = await app.ctx.db.auditEvent.findMany({
    where: { subjectUserId: user.id, type: 'login.password_failed' },
    orderBy: { createdAt: 'asc' },
  });
  t.same(
    failures.map((e) => (e.details as { consecutiveFailures?: number }).consecutiveFailures).sort((a, b) => (a ?? 0) - (b ?? 0)),
    [11, 12, 13, 14, 15, 16, 17, 18, 19, 20],
    'the account numbered them after the correct one',
  );
  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.equal(row.failedPasswordCount, 10, 'ten consecutive failures after the success stay counted');
  t.ok(row.passwordLockedUntil && row.passwordLockedUntil > app.ctx.clock.now(), 'and lock password sign-in (security.md item 6)');
  const [success] = await app.ctx.db.auditEvent.findMany({ where: { subjectUserId: user.id, type: 'login.password_succeeded' } });
  t.notOk((success?.details as { lockLifted?: boolean }).lockLifted, 'the success does not say it lifted the lock: the lock stands');
  t.equal((success?.details as { lockedUntil?: string }).lockedUntil, row.passwordLockedUntil?.toISOString(), 'it says until when');
});

t.test('fewer than ten wrong passwords meanwhile: they stay counted, and the lock the correct 10th attempt set is lifted', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  await app.ctx.db.user.update({ where: { id: user.id }, data: { failedPasswordCount: 9, passwordLockouts: 2 } });
  const ok = await whileCorrectIsChecked(
    t,
    app,
    () => request({ url: '/v1/auth/login', body: { email: user.email, password } }),
    async () => {
      for (let i = 0; i < 3; i++) t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password: `wrong password number ${i}` } })).status, 401);
    },
  );
  t.equal(ok.status, 200);
  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.same([row.failedPasswordCount, row.passwordLockedUntil, row.passwordLockouts], [3, null, 0], 'three failures after the success; no lock; the doubling starts again');
  const [success] = await app.ctx.db.auditEvent.findMany({ where: { subjectUserId: user.id, type: 'login.password_succeeded' } });
  t.equal((success?.details as { lockLifted?: boolean }).lockLifted, true, 'the success lifted the lock it set');
  const next = await request({ url: '/v1/auth/login', body: { email: user.email, password: 'wrong password number 4' } });
  t.equal(next.status, 401);
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } })).failedPasswordCount, 4, 'and the next one is the fourth');
});

t.test("ten wrong passwords counted while the correct one is checked lock as after a success: lock #1, 15 minutes (attacker's read, session 29)", async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  // Three locks ran out earlier, nine wrong passwords since: the correct 10th sets lock #4 (2 h).
  await app.ctx.db.user.update({ where: { id: user.id }, data: { failedPasswordCount: 9, passwordLockouts: 3 } });
  const ok = await whileCorrectIsChecked(
    t,
    app,
    () => request({ url: '/v1/auth/login', body: { email: user.email, password } }),
    async () => {
      for (let i = 0; i < 10; i++) await request({ url: '/v1/auth/login', body: { email: user.email, password: `wrong password number ${i}` } });
    },
  );
  t.equal(ok.status, 200, 'the correct password succeeds');
  const next = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.same([next.status, next.headers['retry-after']], [423, '900'], 'the lock that stands is 15 minutes, as ten failures after a success set it');
  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.equal(row.passwordLockouts, 1, 'the success restarted the doubling: lock #1');
});

t.test("the correct password twice at once: one signs in, the other is told of the lock and gives its attempt back — nothing stays counted (attacker's read, session 29)", async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  await app.ctx.db.user.update({ where: { id: user.id }, data: { failedPasswordCount: 9 } });
  const [first, second] = holdCorrectVerifications(t, app, 2);
  const a = request({ url: '/v1/auth/login', body: { email: user.email, password } });
  await first!.entered; // the 10th attempt: it set the lock
  const b = request({ url: '/v1/auth/login', body: { email: user.email, password } });
  await second!.entered; // counted during that lock
  first!.release();
  t.equal((await a).status, 200, 'the first signs in');
  second!.release();
  const refused = await b;
  t.same([refused.status, refused.body.code], [423, 'account_locked'], 'the second was counted during the lock and is told so');
  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.same([row.failedPasswordCount, row.passwordLockedUntil, row.passwordLockouts], [0, null, 0], 'no failure stays counted: the second gave its attempt back');
});
