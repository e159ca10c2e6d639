import t from 'tap';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createUser, currentTotp, wrongCode } from '../helpers/factories.js';
import { GOOD_PASSWORD, tokenFromLink } from '../helpers/accounts.js';
import { challengeFor } from '../integration/mfa/helpers.js';
import { lastMail } from '../helpers/outbox.js';

/**
 * security.md item 6 through the HTTP API:
 *  - wrong passwords and wrong codes are counted separately, each locking at 10 consecutive failures;
 *  - the lock lasts 15 min and grows with each further lock (15, 30, 60 min ... capped at 24 h);
 *  - never more than 100 failures without lockout (NIST 800-63B 3.2.2), also for an attacker who
 *    spaces the guesses out so that every lock has run out before the next guess;
 *  - neither lock blocks the password reset.
 */

const HOUR = 3600;
/** 15 min, doubling, capped at 24 h: the lengths of the 1st..10th lock. */
const SCHEDULE = [900, 1800, 3600, 7200, 14400, 28800, 57600, 86400, 86400, 86400];

t.test('wrong passwords and wrong codes are counted separately, each locking at the 10th', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, password, totpSecret } = await createUser(app.ctx.db, app);
  const wrongPassword = { email: user.email, password: 'not the password 123' };

  for (let i = 1; i <= 9; i++) {
    const res = await request({ url: '/v1/auth/login', body: wrongPassword });
    t.equal(res.body.code, 'invalid_credentials', `wrong password ${i}`);
  }
  // 9 password failures are on the account; a shared counter would lock at the first wrong code.
  let challengeToken = await challengeFor(app, user.id, 'mfa');
  for (let i = 1; i <= 9; i++) {
    if (i === 6) challengeToken = await challengeFor(app, user.id, 'mfa'); // 5 codes per challenge
    const res = await request({ url: '/v1/auth/login/mfa', body: { challengeToken, code: wrongCode(app, totpSecret!) } });
    t.equal(res.status, 400, `wrong code ${i}: not locked`);
    t.equal(res.body.code, 'mfa_code_invalid', `wrong code ${i}`);
  }
  const tenthCode = await request({ url: '/v1/auth/login/mfa', body: { challengeToken, code: wrongCode(app, totpSecret!) } });
  t.equal(tenthCode.status, 423, 'the 10th wrong code locks code entry');
  t.equal(tenthCode.body.code, 'mfa_locked');
  t.equal(tenthCode.headers['retry-after'], '900');

  // The code lock did not touch the password counter: 9 still, so the 10th wrong password locks.
  t.equal((await request({ url: '/v1/auth/login', body: wrongPassword })).body.code, 'invalid_credentials', 'wrong password 10');
  const locked = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(locked.status, 423, 'the 10th wrong password locked the password step');
  t.equal(locked.body.code, 'account_locked');
  t.equal(locked.headers['retry-after'], '900', '15 minutes');

  // Neither lock blocks the password reset; the reset lifts the password lock (the code lock is
  // left to run out: a reset never bypasses the second factor).
  const forgot = await request({ url: '/v1/password/forgot', body: { email: user.email } });
  t.equal(forgot.status, 202);
  const mail = await lastMail(app, { toAddress: user.email, template: 'password_reset' });
  const reset = await request({ url: '/v1/password/reset', body: { token: tokenFromLink(mail.textBody, '/reset-password'), password: GOOD_PASSWORD } });
  t.equal(reset.status, 204, 'the reset works while both locks are in force');
  const after = await request({ url: '/v1/auth/login', body: { email: user.email, password: GOOD_PASSWORD } });
  t.equal(after.status, 423);
  t.equal(after.body.code, 'mfa_locked', 'the password lock is lifted by the reset; the code lock still holds, told at once');
  t.ok(Number(after.headers['retry-after']) > 0);
});

t.test('code entry locked: the correct password is told so at once (with whom to ask), no challenge; a wrong one learns nothing', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  const until = new Date(clock.now().getTime() + 900_000);
  await app.ctx.db.user.update({ where: { id: user.id }, data: { failedMfaCount: 10, mfaLockedUntil: until, mfaLockouts: 1 } });

  const wrong = await request({ url: '/v1/auth/login', body: { email: user.email, password: 'not the password 123' } });
  t.equal(wrong.status, 401);
  t.equal(wrong.body.code, 'invalid_credentials', 'a wrong password learns nothing of the lock');

  const res = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(res.status, 423);
  t.equal(res.body.code, 'mfa_locked');
  t.equal(res.headers['retry-after'], '900');
  t.equal(res.body.retryAfter, 900);
  t.ok(res.body.contact, 'whom to ask to reset the two-step login');
  t.equal(await app.ctx.db.flowToken.count({ where: { userId: user.id, purpose: 'LOGIN_CHALLENGE' } }), 0, 'no challenge handed out');
  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.equal(row.failedPasswordCount, 1, 'the correct password gave its attempt back; the wrong one stays counted');
  const [audit] = await app.ctx.db.auditEvent.findMany({ where: { subjectUserId: user.id, type: 'login.mfa_failed' } });
  t.match(audit?.details, { reason: 'locked', step: 'password', refused: true, until: until.toISOString() });

  clock.advance(901);
  const later = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(later.status, 200, 'once the lock has run out: the challenge');
  t.equal(later.body.next, 'mfa');
});

t.test('wrong recovery codes count towards the code lock like wrong TOTP codes: the 10th locks', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, totpSecret, recoveryCodes } = await createUser(app.ctx.db, app, { recoveryCodes: 10 });
  const wrongRecoveryCode = 'zzzz-zzzz-zzzz';
  t.notOk(recoveryCodes!.includes(wrongRecoveryCode), 'not one of the user\'s codes');

  let challengeToken = '';
  for (let i = 1; i <= 9; i++) {
    if ((i - 1) % 5 === 0) challengeToken = await challengeFor(app, user.id, 'mfa'); // 5 codes per challenge
    const res = await request({ url: '/v1/auth/login/mfa', body: { challengeToken, recoveryCode: wrongRecoveryCode } });
    t.equal(res.status, 400, `wrong recovery code ${i}: not locked`);
    t.equal(res.body.code, 'recovery_code_invalid', `wrong recovery code ${i}`);
  }
  const tenth = await request({ url: '/v1/auth/login/mfa', body: { challengeToken, recoveryCode: wrongRecoveryCode } });
  t.equal(tenth.status, 423, 'the 10th wrong recovery code locks code entry');
  t.equal(tenth.body.code, 'mfa_locked');
  t.equal(tenth.headers['retry-after'], '900');

  challengeToken = await challengeFor(app, user.id, 'mfa');
  const right = await request({ url: '/v1/auth/login/mfa', body: { challengeToken, code: currentTotp(app, totpSecret!) } });
  t.equal(right.status, 423, 'the lock holds for TOTP codes too');
  t.equal(right.body.code, 'mfa_locked');
  t.equal(await app.ctx.db.recoveryCode.count({ where: { userId: user.id, usedAt: null } }), 10, 'no recovery code was spent');
});

t.test('passwords: a guess every 25 h still meets a lock at every 10th failure (15 min growing to 24 h); 100 failures, 10 locks', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);

  for (let lock = 0; lock < SCHEDULE.length; lock++) {
    for (let i = 1; i <= 10; i++) {
      clock.advance(25 * HOUR); // every earlier lock has run out by now
      const res = await request({ url: '/v1/auth/login', body: { email: user.email, password: `wrong guess ${lock}-${i}` } });
      t.equal(res.status, 401, `failure ${lock * 10 + i}`);
      t.equal(res.body.code, 'invalid_credentials');
    }
    // Right after the 10th failure of the run: locked, for the scheduled time.
    const probe = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
    t.equal(probe.status, 423, `after failure ${(lock + 1) * 10}: locked`);
    t.equal(probe.body.code, 'account_locked');
    t.equal(probe.headers['retry-after'], String(SCHEDULE[lock]), `lock ${lock + 1} lasts ${SCHEDULE[lock]} s`);
  }
  const locks = await app.ctx.db.auditEvent.count({ where: { subjectUserId: user.id, type: 'login.locked' } });
  t.equal(locks, 10, '100 spaced-out failures, 10 locks: never more than 10 failures without one');

  // Once the last lock has run out, the right password works again and resets the schedule.
  clock.advance(24 * HOUR);
  t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password } })).status, 200);
  for (let i = 1; i <= 10; i++) await request({ url: '/v1/auth/login', body: { email: user.email, password: `wrong again ${i}` } });
  t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password } })).headers['retry-after'], '900', 'back to 15 min after a success');
});

t.test('codes: a wrong code every 25 h still meets a lock at every 10th failure (15 min growing to 24 h); 100 failures, 10 locks', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user, password, totpSecret } = await createUser(app.ctx.db, app);
  // Through the password step each time, as an attacker who knows the password would do.
  const challenge = async () => {
    const res = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
    t.equal(res.status, 200, 'password step');
    return res.body.challengeToken as string;
  };

  for (let lock = 0; lock < SCHEDULE.length; lock++) {
    for (let i = 1; i <= 10; i++) {
      clock.advance(25 * HOUR); // every earlier lock (and every challenge, 5 min) has run out by now
      const challengeToken = await challenge();
      const res = await request({ url: '/v1/auth/login/mfa', body: { challengeToken, code: wrongCode(app, totpSecret!) } });
      if (i < 10) {
        t.equal(res.status, 400, `failure ${lock * 10 + i}`);
        t.equal(res.body.code, 'mfa_code_invalid');
      } else {
        t.equal(res.status, 423, `failure ${(lock + 1) * 10} locks`);
        t.equal(res.body.code, 'mfa_locked');
        t.equal(res.headers['retry-after'], String(SCHEDULE[lock]), `lock ${lock + 1} lasts ${SCHEDULE[lock]} s`);
      }
    }
  }
  t.equal(await app.ctx.db.auditEvent.count({ where: { subjectUserId: user.id, type: 'mfa.locked' } }), 10, '10 locks for 100 failures');
  t.equal(await app.ctx.db.auditEvent.count({ where: { subjectUserId: user.id, type: 'login.mfa_failed' } }), 100, 'every one of them was a real, evaluated failure');
});
