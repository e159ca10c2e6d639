import t from 'tap';
import { buildTestApp } from '../../helpers/app.js';
import { api } from '../../helpers/http.js';
import { createOrganization, createUser, currentTotp, signIn } from '../../helpers/factories.js';
import { auditOf, challengeFor, mailsOf, secretOf, signedInWithoutMfa } from './helpers.js';

t.test('self-service reset: remove with password, other sessions end, this one can only enrol, re-enrol', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user, password, totpSecret } = await createUser(app.ctx.db, app, { organizationId: org.id, recoveryCodes: 10 });
  const current = await signIn(app, user);
  const other = await signIn(app, user);

  const wrong = await request({ method: 'DELETE', url: '/v1/me/mfa', token: current.accessToken, body: { password: 'not the password' } });
  t.equal(wrong.status, 403);
  t.equal(wrong.body.code, 'reauthentication_failed');
  t.equal(await app.ctx.db.totpFactor.count({ where: { userId: user.id } }), 1, 'nothing removed');
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } })).failedPasswordCount, 1, 'counts towards the password lockout');
  const [failure] = await auditOf(app, user.id, 'login.password_failed');
  t.match(failure?.details, { flow: 'reauthentication' });
  t.equal(failure?.actorUserId, user.id, 'typed by the signed-in user: the actor is known');
  const missing = await request({ method: 'DELETE', url: '/v1/me/mfa', token: current.accessToken, body: {} });
  t.equal(missing.status, 400);

  // A pending login challenge for the old factor dies with it.
  const pendingLogin = await challengeFor(app, user.id, 'mfa');

  const removed = await request({ method: 'DELETE', url: '/v1/me/mfa', token: current.accessToken, body: { password } });
  t.equal(removed.status, 204);
  t.equal(await app.ctx.db.totpFactor.count({ where: { userId: user.id } }), 0);
  t.equal(await app.ctx.db.recoveryCode.count({ where: { userId: user.id } }), 0);
  t.equal((await mailsOf(app, user.email, 'mfa_removed')).length, 1, 'notification mail');
  const [audit] = await auditOf(app, user.id, 'mfa.removed');
  t.match(audit?.details, { by: 'self', revokedSessions: 1 });

  const otherRefresh = await request({ url: '/v1/auth/refresh', body: { refreshToken: other.refreshToken } });
  t.equal(otherRefresh.status, 401, "the user's other sessions are ended");
  const otherMe = await request({ url: '/v1/me', token: other.accessToken });
  t.equal(otherMe.status, 401);

  const stale = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: pendingLogin, code: currentTotp(app, totpSecret!) } });
  t.equal(stale.body.code, 'challenge_used', 'the old factor cannot finish a pending login');

  // This session: MFA functions and GET /v1/me only.
  const me = await request({ url: '/v1/me', token: current.accessToken });
  t.equal(me.status, 200);
  t.equal(me.body.mfa.enrolled, false);
  t.ok(me.body.requiredActions.includes('mfa_enrollment'));
  const sessions = await request({ url: '/v1/me/sessions', token: current.accessToken });
  t.equal(sessions.status, 403);
  t.equal(sessions.body.code, 'mfa_enrollment_required');
  const again = await request({ method: 'DELETE', url: '/v1/me/mfa', token: current.accessToken, body: { password } });
  t.equal(again.status, 409);
  t.equal(again.body.code, 'mfa_not_enrolled');
  const regen = await request({ url: '/v1/me/mfa/recovery-codes', token: current.accessToken, body: { password } });
  t.equal(regen.body.code, 'mfa_not_enrolled');

  const notStarted = await request({ url: '/v1/me/mfa/totp/verify', token: current.accessToken, body: { code: '123456' } });
  t.equal(notStarted.status, 409);
  t.equal(notStarted.body.code, 'mfa_enrollment_not_started');

  const started = await request({ method: 'POST', url: '/v1/me/mfa/totp', token: current.accessToken });
  t.equal(started.status, 200);
  t.equal(started.headers['cache-control'], 'no-store');
  const secret = secretOf(started.body.otpauthUri);
  t.equal(started.body.secret, secret);
  t.not(secret, totpSecret, 'a new secret');
  t.ok(started.body.qrCode.pngDataUrl.startsWith('data:image/png;base64,'));
  // The set-up is confirmed a while after it began; GET /v1/me tells when it was confirmed.
  clock.advance(45);
  const confirmedAt = clock.now().toISOString();

  const drift = await request({ url: '/v1/me/mfa/totp/verify', token: current.accessToken, body: { code: currentTotp(app, secret, 3) } });
  t.equal(drift.status, 400);
  t.equal(drift.body.code, 'mfa_code_invalid');
  t.equal(drift.body.hint, 'clock_drift');
  t.equal(drift.body.offsetSeconds, 90);
  const oldSecretCode = await request({ url: '/v1/me/mfa/totp/verify', token: current.accessToken, body: { code: currentTotp(app, totpSecret!) } });
  t.equal(oldSecretCode.body.code, 'mfa_code_invalid');

  const verified = await request({ url: '/v1/me/mfa/totp/verify', token: current.accessToken, body: { code: currentTotp(app, secret) } });
  t.equal(verified.status, 200);
  t.equal(verified.headers['cache-control'], 'no-store');
  t.equal(verified.body.recoveryCodes.length, 10);
  t.equal((await mailsOf(app, user.email, 'mfa_enrolled')).length, 1);
  t.match((await auditOf(app, user.id, 'mfa.enrolled'))[0]?.details, { via: 'self_service' });

  // The same session is whole again.
  t.equal((await request({ url: '/v1/me/sessions', token: current.accessToken })).status, 200);
  const meAfter = await request({ url: '/v1/me', token: current.accessToken });
  t.equal(meAfter.body.mfa.enrolled, true);
  t.equal(meAfter.body.mfa.recoveryCodesLeft, 10);
  t.equal(meAfter.body.mfa.enrolledAt, confirmedAt, 'enrolled since the set-up was confirmed, not since it began (mutation review, session 22)');

  const enrolledAlready = await request({ method: 'POST', url: '/v1/me/mfa/totp', token: current.accessToken });
  t.equal(enrolledAlready.status, 409);
  t.equal(enrolledAlready.body.code, 'mfa_already_enrolled');

  // The confirming code is spent; the next login needs the next code.
  const login = await challengeFor(app, user.id, 'mfa');
  const replay = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: login, code: currentTotp(app, secret) } });
  t.equal(replay.body.code, 'mfa_code_reused');
  clock.advance(30);
  const ok = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: login, code: currentTotp(app, secret) } });
  t.equal(ok.status, 200);
});

t.test('after a self-service removal, a login with the password alone cannot replace the set-up the signed-in session started (15 min), and loses to it', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user, password, session } = await signedInWithoutMfa(t, app, request);

  // Someone who knows the password logs in elsewhere and starts an enrolment first: it is replaced
  // as soon as the user's session starts its own, and its code then enrols nothing.
  const early = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(early.body.next, 'mfa_enrollment');
  const theirs = await request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken: early.body.challengeToken } });
  t.equal(theirs.status, 200);
  const mine = await request({ method: 'POST', url: '/v1/me/mfa/totp', token: session.accessToken });
  t.equal(mine.status, 200);

  const stolen = await request({
    url: '/v1/auth/login/mfa-enrollment/verify',
    body: { challengeToken: early.body.challengeToken, code: currentTotp(app, theirs.body.secret) },
  });
  t.equal(stolen.status, 409, 'the replaced secret enrols nothing');
  t.equal(stolen.body.code, 'mfa_enrollment_in_progress', 'and the login is told why, not that its code was wrong');
  t.equal(stolen.headers['retry-after'], '900');
  t.equal(await app.ctx.db.flowToken.count({ where: { purpose: 'LOGIN_CHALLENGE', userId: user.id, attempts: { gt: 0 } } }), 0, 'no code attempt was counted');

  // From now on the login's enrolment step refuses to replace the session's set-up.
  const login = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  const refused = await request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken: login.body.challengeToken } });
  t.equal(refused.status, 409);
  t.equal(refused.body.code, 'mfa_enrollment_in_progress');
  t.equal(refused.headers['retry-after'], '900');
  t.equal(refused.body.retryAfter, 900);
  t.equal(await app.ctx.db.session.count({ where: { userId: user.id, revokedAt: null } }), 1, 'no session for the password alone');

  const verified = await request({ url: '/v1/me/mfa/totp/verify', token: session.accessToken, body: { code: currentTotp(app, mine.body.secret) } });
  t.equal(verified.status, 200, "the user's own set-up completes");
  t.equal(await app.ctx.db.totpFactor.count({ where: { userId: user.id, status: 'ACTIVE' } }), 1);
  const next = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  const withMine = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: next.body.challengeToken, code: currentTotp(app, mine.body.secret, 1) } });
  t.equal(withMine.status, 200, "the active authenticator is the user's");

  // An abandoned set-up is reserved for 15 minutes only: then a login may enrol again.
  const other = await signedInWithoutMfa(t, app, request);
  t.equal((await request({ method: 'POST', url: '/v1/me/mfa/totp', token: other.session.accessToken })).status, 200);
  clock.advance(15 * 60 + 1);
  const later = await request({ url: '/v1/auth/login', body: { email: other.user.email, password: other.password } });
  const allowed = await request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken: later.body.challengeToken } });
  t.equal(allowed.status, 200, 'after the reservation');
});

t.test('the reservation ends with the session that made it: after its logout, or a block that ends it, the login may set up again', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const enrolLogin = async (email: string, password: string | null) => {
    const login = await request({ url: '/v1/auth/login', body: { email, password } });
    t.equal(login.body.next, 'mfa_enrollment');
    return request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken: login.body.challengeToken } });
  };

  const { user, password, session } = await signedInWithoutMfa(t, app, request);
  t.equal((await request({ method: 'POST', url: '/v1/me/mfa/totp', token: session.accessToken })).status, 200);
  t.equal((await enrolLogin(user.email, password)).body.code, 'mfa_enrollment_in_progress', 'reserved while the session lives');
  t.equal((await request({ method: 'POST', url: '/v1/auth/logout', token: session.accessToken })).status, 204);
  const afterLogout = await enrolLogin(user.email, password);
  t.equal(afterLogout.status, 200, 'the set-up abandoned by signing out no longer blocks');
  t.ok(afterLogout.body.secret);

  const other = await signedInWithoutMfa(t, app, request);
  t.equal((await request({ method: 'POST', url: '/v1/me/mfa/totp', token: other.session.accessToken })).status, 200);
  await app.ctx.db.session.updateMany({ where: { userId: other.user.id }, data: { revokedAt: new Date(), revokedReason: 'user_blocked' } });
  t.equal((await enrolLogin(other.user.email, other.password)).status, 200, 'an ended session reserves nothing');
});

t.test('regenerate recovery codes: password required, old codes stop working, mail + audit', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, password, recoveryCodes } = await createUser(app.ctx.db, app, { recoveryCodes: 10 });
  const session = await signIn(app, user);

  const wrong = await request({ url: '/v1/me/mfa/recovery-codes', token: session.accessToken, body: { password: `${password}x` } });
  t.equal(wrong.status, 403);
  t.equal(wrong.body.code, 'reauthentication_failed');

  const res = await request({ url: '/v1/me/mfa/recovery-codes', token: session.accessToken, body: { password } });
  t.equal(res.status, 200);
  t.equal(res.headers['cache-control'], 'no-store');
  t.equal(res.body.recoveryCodes.length, 10);
  t.equal(await app.ctx.db.recoveryCode.count({ where: { userId: user.id } }), 10, 'replaced, not added');

  const old = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), recoveryCode: recoveryCodes![0] } });
  t.equal(old.body.code, 'recovery_code_invalid');
  const fresh = await request({
    url: '/v1/auth/login/mfa',
    body: { challengeToken: await challengeFor(app, user.id, 'mfa'), recoveryCode: res.body.recoveryCodes[0] },
  });
  t.equal(fresh.status, 200);

  t.equal((await mailsOf(app, user.email, 'recovery_codes_regenerated')).length, 1);
  t.equal((await auditOf(app, user.id, 'mfa.recovery_codes_regenerated')).length, 1);
  const rows = await app.ctx.db.recoveryCode.findMany({ where: { userId: user.id } });
  for (const code of res.body.recoveryCodes as string[]) {
    t.notOk(rows.some((r) => r.codeHash.includes(code.replaceAll('-', ''))), 'stored hashed');
  }
});

t.test('removeMfa (admin and support resets): all sessions end, MFA data gone, next login enrols', async (t) => {
  const { app } = await buildTestApp(t);
  const { removeMfa } = await import('../../../src/modules/mfa/remove.js');
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app, { recoveryCodes: 3 });
  const a = await signIn(app, user);
  const b = await signIn(app, user);
  await app.ctx.db.user.update({ where: { id: user.id }, data: { failedMfaCount: 7 } });
  const challenge = await challengeFor(app, user.id, 'mfa');

  const result = await app.ctx.db.$transaction((tx) => removeMfa(tx, app.ctx, user.id));
  t.same(result, { hadActiveFactor: true, removedRecoveryCodes: 3, revokedSessions: 2 });
  for (const s of [a, b]) t.equal((await request({ url: '/v1/me', token: s.accessToken })).status, 401);
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } })).failedMfaCount, 0);
  t.equal((await request({ url: '/v1/auth/login/mfa', body: { challengeToken: challenge, code: '123456' } })).body.code, 'challenge_used');
  t.equal((await mailsOf(app, user.email, 'mfa_removed')).length, 0, 'the caller writes its own mail and audit');

  const again = await app.ctx.db.$transaction((tx) => removeMfa(tx, app.ctx, user.id));
  t.same(again, { hadActiveFactor: false, removedRecoveryCodes: 0, revokedSessions: 0 });
});

/**
 * Found by session 13's review: the self-service set-up took the factor row before the user row,
 * the login's enrolment step the user row first (docs/security.md "One lock order"), so the two at
 * once deadlocked: PostgreSQL aborted one side and the client got 500 — and mostly the user's own
 * set-up lost to a login that had only the password.
 */
t.test('self-service set-up and the login enrolment step at the same moment: no deadlock, the signed-in set-up wins', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const rounds = 6;
  const outcomes: string[] = [];
  for (let round = 0; round < rounds; round++) {
    const { user, password, session } = await signedInWithoutMfa(t, app, request);
    const login = await request({ url: '/v1/auth/login', body: { email: user.email, password } });

    // Both start a set-up.
    const [mine, theirs] = await Promise.all([
      request({ method: 'POST', url: '/v1/me/mfa/totp', token: session.accessToken }),
      request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken: login.body.challengeToken } }),
    ]);
    outcomes.push(`start ${mine.status} / ${theirs.status}:${theirs.body.code ?? ''}`);
    t.equal(mine.status, 200, `round ${round}: the session's set-up starts`);
    t.ok(theirs.status === 200 || (theirs.status === 409 && theirs.body.code === 'mfa_enrollment_in_progress'), `round ${round}: login start ${theirs.status} ${theirs.body.code}`);

    // The session confirms while the login asks again.
    const again = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
    const [verified, late] = await Promise.all([
      request({ url: '/v1/me/mfa/totp/verify', token: session.accessToken, body: { code: currentTotp(app, mine.body.secret) } }),
      request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken: again.body.challengeToken } }),
    ]);
    outcomes.push(`verify ${verified.status} / ${late.status}:${late.body.code ?? ''}`);
    t.equal(verified.status, 200, `round ${round}: the session's set-up completes`);
    t.equal(late.status, 409, `round ${round}: the login cannot take over (${late.body.code})`);
    t.ok(['mfa_enrollment_in_progress', 'mfa_already_enrolled'].includes(late.body.code), late.body.code);
    t.equal(await app.ctx.db.totpFactor.count({ where: { userId: user.id, status: 'ACTIVE' } }), 1);
  }
  t.comment(outcomes.join('; '));
});

t.test('a login challenge taken while the session confirmed its own set-up: 409 mfa_already_enrolled, as the document says (api() checks every answer against it)', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, password, session } = await signedInWithoutMfa(t, app, request);
  const login = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(login.body.next, 'mfa_enrollment');
  const mine = await request({ method: 'POST', url: '/v1/me/mfa/totp', token: session.accessToken });
  t.equal((await request({ url: '/v1/me/mfa/totp/verify', token: session.accessToken, body: { code: currentTotp(app, mine.body.secret) } })).status, 200);

  for (const url of ['/v1/auth/login/mfa-enrollment', '/v1/auth/login/mfa-enrollment/verify']) {
    const body = url.endsWith('verify') ? { challengeToken: login.body.challengeToken, code: '000000' } : { challengeToken: login.body.challengeToken };
    const res = await request({ url, body });
    t.equal(res.status, 409, url);
    t.equal(res.body.code, 'mfa_already_enrolled', url);
  }
});
