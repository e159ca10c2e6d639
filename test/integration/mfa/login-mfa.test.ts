import t from 'tap';
import { buildTestApp } from '../../helpers/app.js';
import { api } from '../../helpers/http.js';
import { createOrganization, createUser, currentTotp } from '../../helpers/factories.js';
import { auditOf, challengeFor, enrolAtLogin, mailsOf, secretOf } from './helpers.js';

t.test('first login: enrol with otpauth URI + QR, confirm once, get tokens and 10 recovery codes', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app, { organizationId: org.id, email: 'Jane.Doe@Example.test', withTotp: false });
  const challengeToken = await challengeFor(app, user.id, 'mfa_enrollment');

  const first = await request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken } });
  t.equal(first.status, 200);
  t.equal(first.headers['cache-control'], 'no-store');
  const { secret, otpauthUri, qrCode } = first.body;
  t.match(secret, /^[A-Z2-7]{32}$/, '160-bit secret, base32 without padding');
  t.equal(
    otpauthUri,
    `otpauth://totp/ALSO%20Webshop:Jane.Doe%40Example.test?secret=${secret}&issuer=ALSO%20Webshop&algorithm=SHA1&digits=6&period=30`,
  );
  t.ok(qrCode.svg.startsWith('<svg'));
  t.ok(qrCode.pngDataUrl.startsWith('data:image/png;base64,'));
  const pending = await app.ctx.db.totpFactor.findMany({ where: { userId: user.id } });
  t.same(pending.map((f) => f.status), ['PENDING'], 'factor is pending until confirmed');
  t.notOk(pending[0]!.secretCiphertext.includes(secret), 'secret is not stored in plain');
  t.equal(pending[0]!.encryptionKeyId, 'test-1', 'key id is stored beside the ciphertext');

  // Asking again replaces the pending secret: a code of the first secret no longer confirms anything.
  const second = await request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken } });
  t.equal(second.status, 200);
  t.not(second.body.secret, secret, 'a new secret');
  t.equal(await app.ctx.db.totpFactor.count({ where: { userId: user.id } }), 1, 'still one pending factor');
  const stale = await request({
    url: '/v1/auth/login/mfa-enrollment/verify',
    body: { challengeToken, code: currentTotp(app, secret) },
  });
  t.equal(stale.status, 400);
  t.equal(stale.body.code, 'mfa_code_invalid');
  t.equal(stale.body.attemptsRemaining, 4);

  const newSecret = second.body.secret as string;
  const verified = await request({
    url: '/v1/auth/login/mfa-enrollment/verify',
    body: { challengeToken, code: currentTotp(app, newSecret) },
  });
  t.equal(verified.status, 200);
  t.equal(verified.headers['cache-control'], 'no-store');
  t.equal(verified.body.tokenType, 'Bearer');
  t.ok(verified.body.accessToken && verified.body.refreshToken);
  t.notOk(verified.body.requiredActions.includes('mfa_enrollment'));
  t.equal(verified.body.recoveryCodes.length, 10);
  t.equal(new Set(verified.body.recoveryCodes).size, 10);
  for (const code of verified.body.recoveryCodes) t.match(code, /^[a-z2-9]{4}(?:-[a-z2-9]{4}){5}$/);

  const me = await request({ url: '/v1/me', token: verified.body.accessToken });
  t.equal(me.status, 200);
  t.equal(me.body.mfa.enrolled, true);
  t.equal(me.body.mfa.recoveryCodesLeft, 10);
  t.same(me.body.session.amr, ['pwd', 'otp']);
  t.notMatch(JSON.stringify(me.body), newSecret, 'the secret is never returned after enrolment');

  const active = await app.ctx.db.totpFactor.findMany({ where: { userId: user.id } });
  t.same(active.map((f) => f.status), ['ACTIVE']);
  t.equal(active[0]!.lastUsedStep, Math.floor(clock.now().getTime() / 30_000), 'the confirming step is stored');

  // The challenge is consumed with the session.
  const again = await request({ url: '/v1/auth/login/mfa-enrollment/verify', body: { challengeToken, code: currentTotp(app, newSecret) } });
  t.equal(again.status, 410);
  t.equal(again.body.code, 'challenge_used');

  // The confirming code cannot be used again for the next login; the next code can.
  const login = await challengeFor(app, user.id, 'mfa');
  const replay = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: login, code: currentTotp(app, newSecret) } });
  t.equal(replay.status, 400);
  t.equal(replay.body.code, 'mfa_code_reused');
  clock.advance(30);
  const ok = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: login, code: currentTotp(app, newSecret) } });
  t.equal(ok.status, 200);

  t.equal((await auditOf(app, user.id, 'mfa.enrolled')).length, 1);
  t.equal((await mailsOf(app, user.email, 'mfa_enrolled')).length, 1, 'enrolment notification mail');
  const codeFailures = await auditOf(app, user.id, 'login.mfa_failed');
  const refused = codeFailures.filter((e) => (e.details as { refused?: boolean }).refused === true);
  t.equal(codeFailures.length - refused.length, 2, 'each wrong code after the password is audited');
  t.same(
    refused.map((e) => (e.details as { reason: string }).reason),
    ['challenge_used'],
    'so is the attempt with the used challenge (refused before any code was looked at)',
  );
});


t.test('the otpauth label shows an internationalised domain as its owner typed it (interop review, session 32)', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  // Stored (and logged in with) in its ASCII form; authenticator apps show the label as given.
  const { user } = await createUser(app.ctx.db, app, { email: 'joerg@xn--mller-gmbh-9db.de', withTotp: false });
  const started = await request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken: await challengeFor(app, user.id, 'mfa_enrollment') } });
  t.equal(started.status, 200);
  const label = decodeURIComponent(/^otpauth:\/\/totp\/([^?]+)\?/.exec(started.body.otpauthUri)?.[1] ?? '');
  t.equal(label, 'ALSO Webshop:joerg@müller-gmbh.de', 'not joerg@xn--mller-gmbh-9db.de');
  const { enrollment } = await enrolAtLogin(t, app, request, await challengeFor(app, user.id, 'mfa_enrollment'));
  t.match(enrollment.otpauthUri, /^otpauth:\/\/totp\/ALSO%20Webshop:joerg%40m%C3%BCller-gmbh\.de\?/, 'percent-encoded UTF-8');
});
t.test('code step: valid code, ±1 step accepted, ±2 rejected with clock_drift hint', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user, totpSecret } = await createUser(app.ctx.db, app);
  const secret = totpSecret!;

  const challengeToken = await challengeFor(app, user.id, 'mfa');
  const res = await request({ url: '/v1/auth/login/mfa', body: { challengeToken, code: currentTotp(app, secret) } });
  t.equal(res.status, 200);
  t.equal(res.headers['cache-control'], 'no-store');
  const me = await request({ url: '/v1/me', token: res.body.accessToken });
  t.same(me.body.session.amr, ['pwd', 'otp']);

  for (const offset of [-1, 1]) {
    clock.advance(120);
    const challenge = await challengeFor(app, user.id, 'mfa');
    const r = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: challenge, code: currentTotp(app, secret, offset) } });
    t.equal(r.status, 200, `a code ${offset} step(s) away is accepted`);
  }

  for (const [offset, seconds] of [
    [-2, -60],
    [2, 60],
    [-10, -300],
    [10, 300],
  ] as const) {
    clock.advance(600);
    const challenge = await challengeFor(app, user.id, 'mfa');
    const r = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: challenge, code: currentTotp(app, secret, offset) } });
    t.equal(r.status, 400, `a code ${offset} steps away is rejected`);
    t.equal(r.body.code, 'mfa_code_invalid');
    t.equal(r.body.hint, 'clock_drift');
    t.equal(r.body.offsetSeconds, seconds);
    t.match(r.body.detail, `about ${Math.abs(seconds) / 60} min ${seconds < 0 ? 'behind' : 'ahead of'} the server.`, 'the device clock, told in plain words');
  }

  clock.advance(600);
  const challenge = await challengeFor(app, user.id, 'mfa');
  const far = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: challenge, code: currentTotp(app, secret, 11) } });
  t.equal(far.body.code, 'mfa_code_invalid');
  t.notOk('hint' in far.body, 'no hint beyond 10 steps');
});

t.test('replay: the same code and older codes are refused after a success', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user, totpSecret } = await createUser(app.ctx.db, app);
  const code = currentTotp(app, totpSecret!);
  t.equal((await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), code } })).status, 200);

  const same = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), code } });
  t.equal(same.status, 400);
  t.equal(same.body.code, 'mfa_code_reused');

  // 30 s later the previous step is still inside the ±1 window, but it is older than the used one.
  clock.advance(30);
  const older = await request({
    url: '/v1/auth/login/mfa',
    body: { challengeToken: await challengeFor(app, user.id, 'mfa'), code: currentTotp(app, totpSecret!, -2) },
  });
  t.equal(older.body.code, 'mfa_code_invalid', 'two steps back, never accepted: what a slow device shows');
  t.equal(older.body.hint, 'clock_drift');
  const previous = await request({
    url: '/v1/auth/login/mfa',
    body: { challengeToken: await challengeFor(app, user.id, 'mfa'), code: currentTotp(app, totpSecret!, -1) },
  });
  t.equal(previous.body.code, 'mfa_code_reused', 'the used step, replayed inside the window');

  // Minutes later the accepted code is far outside the window: still a replay (session 13's review
  // found it answered as clock drift and counted towards the code lock, so ten replays locked).
  clock.advance(120);
  const failuresBefore = (await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } })).failedMfaCount;
  for (let i = 0; i < 10; i++) {
    const replay = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), code } });
    t.equal(replay.body.code, 'mfa_code_reused', `replay ${i + 1}, 5 steps later`);
  }
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } })).failedMfaCount, failuresBefore, 'replays are not guesses');
  const fresh = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), code: currentTotp(app, totpSecret!) } });
  t.equal(fresh.status, 200, 'code entry is not locked');
});

t.test('challenge: expiry, 5-attempt cap, single use, wrong step, wrong kind of token', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user, totpSecret } = await createUser(app.ctx.db, app);

  const expiring = await challengeFor(app, user.id, 'mfa');
  clock.advance(app.ctx.config.loginChallengeTtlSeconds);
  const expired = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: expiring, code: currentTotp(app, totpSecret!) } });
  t.equal(expired.status, 410);
  t.equal(expired.body.code, 'challenge_expired');

  const capped = await challengeFor(app, user.id, 'mfa');
  for (let attempt = 1; attempt <= 5; attempt++) {
    const r = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: capped, code: '000000' } });
    t.equal(r.body.code, 'mfa_code_invalid');
    t.equal(r.body.attemptsRemaining, 5 - attempt);
  }
  const sixth = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: capped, code: currentTotp(app, totpSecret!) } });
  t.equal(sixth.status, 410);
  t.equal(sixth.body.code, 'challenge_exhausted', 'even the right code is refused on a spent challenge');
  const recovery = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: capped, recoveryCode: 'aaaa-bbbb-cccc' } });
  t.equal(recovery.body.code, 'challenge_exhausted');

  // A newer challenge replaces the older one (a second login).
  const older = await challengeFor(app, user.id, 'mfa');
  const newer = await challengeFor(app, user.id, 'mfa');
  const replaced = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: older, code: currentTotp(app, totpSecret!) } });
  t.equal(replaced.body.code, 'challenge_used');

  // Enrolment endpoints do not take a challenge meant for the code step, and vice versa.
  const wrongStep = await request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken: newer } });
  t.equal(wrongStep.status, 409);
  t.equal(wrongStep.body.code, 'challenge_step_mismatch');
  t.equal(wrongStep.body.next, 'mfa');
  const verifyWrongStep = await request({ url: '/v1/auth/login/mfa-enrollment/verify', body: { challengeToken: newer, code: '123456' } });
  t.equal(verifyWrongStep.body.code, 'challenge_step_mismatch');

  const { user: fresh } = await createUser(app.ctx.db, app, { withTotp: false });
  const enrolChallenge = await challengeFor(app, fresh.id, 'mfa_enrollment');
  const codeStep = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: enrolChallenge, code: '123456' } });
  t.equal(codeStep.status, 409);
  t.equal(codeStep.body.next, 'mfa_enrollment');
  const notStarted = await request({ url: '/v1/auth/login/mfa-enrollment/verify', body: { challengeToken: enrolChallenge, code: '123456' } });
  t.equal(notStarted.status, 409);
  t.equal(notStarted.body.code, 'mfa_enrollment_not_started');

  // Unknown tokens and other kinds of flow token are not challenges.
  const unknown = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: 'x'.repeat(43), code: '123456' } });
  t.equal(unknown.status, 401);
  t.equal(unknown.body.code, 'challenge_invalid');
  const { issueFlowToken } = await import('../../../src/modules/flows/flow-tokens.js');
  const { token: resetLink } = await app.ctx.db.$transaction((tx) =>
    issueFlowToken(tx, app.ctx.clock, { userId: user.id, purpose: 'PASSWORD_RESET', ttlSeconds: 600, data: { next: 'mfa', amr: ['pwd'] } }),
  );
  const otherPurpose = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: resetLink, code: currentTotp(app, totpSecret!) } });
  t.equal(otherPurpose.body.code, 'challenge_invalid', 'a reset link is not a login challenge, whatever its data');

  // The right code on the live challenge still works: nothing above consumed it.
  const ok = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: newer, code: currentTotp(app, totpSecret!) } });
  t.equal(ok.status, 200);
  const reuse = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: newer, code: currentTotp(app, totpSecret!, 1) } });
  t.equal(reuse.body.code, 'challenge_used', 'a challenge yields one session');
});

t.test('input: exactly 6 digits, code xor recovery code, no unknown fields', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app);
  const challengeToken = await challengeFor(app, user.id, 'mfa');
  for (const body of [
    { challengeToken, code: '12345' },
    { challengeToken, code: '1234567' },
    { challengeToken, code: '12345a' },
    { challengeToken, code: ' 123456' },
    { challengeToken, code: '１２３４５６' },
    { challengeToken, code: 123456 },
    { challengeToken },
    { challengeToken, code: '123456', recoveryCode: 'abcd-efgh-jkmn' },
    { challengeToken, code: '123456', extra: true },
    { code: '123456' },
  ]) {
    const r = await request({ url: '/v1/auth/login/mfa', body });
    t.equal(r.status, 400, JSON.stringify(body));
    t.equal(r.body.code, 'validation_failed');
  }
  // What the form is told (frontend and attacker reviews, session 28): both fields at once are named
  // as excluding each other, never as unknown, also when one of them is malformed; a key neither
  // form knows as unknown, beside the field that is missing.
  const errors = async (body: object) => (await request({ url: '/v1/auth/login/mfa', body })).body.errors;
  const exclusive = (field: string) => ({ path: `body.${field}`, message: 'Send either `code` or `recoveryCode`, not both', code: 'only_one_of' });
  t.same(await errors({ challengeToken, code: '123456', recoveryCode: 'abcd-efgh-jkmn' }), [exclusive('recoveryCode'), exclusive('code')]);
  t.same(await errors({ challengeToken, code: '123456', recoveryCode: 12345 }), [exclusive('recoveryCode')], 'the well-formed code is the one meant');
  t.same(await errors({ challengeToken, code: 12, recoveryCode: 'abcd-efgh-jkmn' }), [exclusive('code')], 'the well-formed recovery code is the one meant');
  t.same(await errors({ challengeToken, code: '123456', extra: true }), [{ path: 'body', message: 'Unrecognized key: "extra"', code: 'unrecognized_keys', keys: ['extra'] }]);
  const missing = await errors({ challengeToken, extra: true });
  t.same(missing.map((e: { path: string; code: string }) => [e.path, e.code]), [['body.code', 'required'], ['body', 'unrecognized_keys'], ['body.recoveryCode', 'required']]);
  t.same((await errors({ challengeToken, code: '12345' })).map((e: { path: string }) => e.path), ['body.code'], 'one wrong field: that field');
  const row = await app.ctx.db.flowToken.findFirstOrThrow({ where: { userId: user.id, state: 'PENDING' } });
  t.equal(row.attempts, 0, 'malformed input costs no attempt');
});

t.test('the 5-attempt cap holds for recovery codes and for the enrolment code too (mutation review, session 20)', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, recoveryCodes } = await createUser(app.ctx.db, app, { recoveryCodes: 10 });
  const capped = await challengeFor(app, user.id, 'mfa');
  for (let attempt = 1; attempt <= 5; attempt++) {
    const r = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: capped, recoveryCode: 'aaaa-bbbb-cccc' } });
    t.equal(r.body.code, 'recovery_code_invalid');
    t.equal(r.body.attemptsRemaining, 5 - attempt);
  }
  const sixth = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: capped, recoveryCode: recoveryCodes![0] } });
  t.equal(sixth.status, 410);
  t.equal(sixth.body.code, 'challenge_exhausted', 'a valid recovery code is refused on a spent challenge');
  t.equal(await app.ctx.db.recoveryCode.count({ where: { userId: user.id, usedAt: null } }), 10, 'and is not spent');
  t.equal(await app.ctx.db.session.count({ where: { userId: user.id } }), 0, 'no session');

  const { user: fresh } = await createUser(app.ctx.db, app, { withTotp: false });
  const enrolment = await challengeFor(app, fresh.id, 'mfa_enrollment');
  const started = await request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken: enrolment } });
  t.equal(started.status, 200);
  const secret = secretOf(started.body.otpauthUri);
  for (let attempt = 1; attempt <= 5; attempt++) {
    const r = await request({ url: '/v1/auth/login/mfa-enrollment/verify', body: { challengeToken: enrolment, code: '000000' } });
    t.equal(r.body.code, 'mfa_code_invalid');
    t.equal(r.body.attemptsRemaining, 5 - attempt);
  }
  const last = await request({ url: '/v1/auth/login/mfa-enrollment/verify', body: { challengeToken: enrolment, code: currentTotp(app, secret) } });
  t.equal(last.status, 410);
  t.equal(last.body.code, 'challenge_exhausted', 'the right enrolment code is refused on a spent challenge');
  t.equal(await app.ctx.db.totpFactor.count({ where: { userId: fresh.id, status: 'ACTIVE' } }), 0, 'nothing enrolled');
  t.equal(await app.ctx.db.session.count({ where: { userId: fresh.id } }), 0, 'no session');
});

t.test('recovery codes: single use, amr rec, mail + audit, count in GET /v1/me', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, recoveryCodes } = await createUser(app.ctx.db, app, { recoveryCodes: 10 });
  const [first, second] = recoveryCodes!;

  const typed = first!.toUpperCase().replaceAll('-', ' ');
  const used = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), recoveryCode: typed } });
  t.equal(used.status, 200, 'case and separators do not matter');
  const me = await request({ url: '/v1/me', token: used.body.accessToken });
  t.same(me.body.session.amr, ['pwd', 'rec']);
  t.equal(me.body.mfa.recoveryCodesLeft, 9);

  const reused = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), recoveryCode: first } });
  t.equal(reused.status, 400);
  t.equal(reused.body.code, 'recovery_code_invalid');
  t.equal(reused.body.attemptsRemaining, 4);

  const { recoveryCodes: othersCodes } = await createUser(app.ctx.db, app, { recoveryCodes: 1 });
  const foreign = await request({
    url: '/v1/auth/login/mfa',
    body: { challengeToken: await challengeFor(app, user.id, 'mfa'), recoveryCode: othersCodes![0] },
  });
  t.equal(foreign.body.code, 'recovery_code_invalid', "another user's code does not work");

  const ok = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), recoveryCode: second } });
  t.equal(ok.status, 200);

  const mails = await mailsOf(app, user.email, 'recovery_code_used');
  t.equal(mails.length, 2);
  t.match(mails[1]!.textBody, /8/, 'the mail says how many are left');
  const audits = await auditOf(app, user.id, 'mfa.recovery_code_used');
  t.same(audits.map((a) => (a.details as { remaining: number }).remaining), [9, 8]);
  const failed = await auditOf(app, user.id, 'login.mfa_failed');
  t.same(failed.map((a) => (a.details as { factor: string }).factor), ['recovery_code', 'recovery_code']);
});

t.test('a login with a recovery code resets the code failure count, like one with a TOTP code (mutation review, session 20)', async (t) => {
  const { app } = await buildTestApp(t);
  const { user, recoveryCodes } = await createUser(app.ctx.db, app, { recoveryCodes: 10 });
  await app.ctx.db.user.update({ where: { id: user.id }, data: { failedMfaCount: 9 } });
  const challengeToken = await challengeFor(app, user.id, 'mfa');
  const res = await api(app)({ url: '/v1/auth/login/mfa', body: { challengeToken, recoveryCode: recoveryCodes![0] } });
  t.equal(res.status, 200);
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } })).failedMfaCount, 0, 'the next wrong code is the first of a new run');
});

t.test('blocked accounts cannot complete MFA', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, totpSecret } = await createUser(app.ctx.db, app);
  const challengeToken = await challengeFor(app, user.id, 'mfa');
  await app.ctx.db.user.update({ where: { id: user.id }, data: { status: 'BLOCKED', blockedAt: new Date() } });
  const r = await request({ url: '/v1/auth/login/mfa', body: { challengeToken, code: currentTotp(app, totpSecret!) } });
  t.equal(r.status, 403);
  t.equal(r.body.code, 'account_blocked');
  t.ok(r.body.contact?.support, 'says whom to contact');
  t.equal(await app.ctx.db.session.count({ where: { userId: user.id } }), 0);

  const { user: unenrolled } = await createUser(app.ctx.db, app, { withTotp: false });
  const enrolChallenge = await challengeFor(app, unenrolled.id, 'mfa_enrollment');
  await app.ctx.db.user.update({ where: { id: unenrolled.id }, data: { status: 'BLOCKED', blockedAt: new Date() } });
  const e = await request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken: enrolChallenge } });
  t.equal(e.body.code, 'account_blocked');
});

t.test('per-account lock after 10 consecutive wrong codes, with Retry-After; success resets the count', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user, totpSecret } = await createUser(app.ctx.db, app, { organizationId: org.id });
  const admin = await createUser(app.ctx.db, app, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Ada Admin' });

  // 4 wrong, then right: the count starts over.
  let challengeToken = await challengeFor(app, user.id, 'mfa');
  for (let i = 0; i < 4; i++) await request({ url: '/v1/auth/login/mfa', body: { challengeToken, code: '000000' } });
  t.equal((await request({ url: '/v1/auth/login/mfa', body: { challengeToken, code: currentTotp(app, totpSecret!) } })).status, 200);
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } })).failedMfaCount, 0);

  let last;
  const remaining: number[] = [];
  // Three logins: 5 wrong codes, 3, then 2.
  for (let i = 1; i <= 10; i++) {
    if (i === 1 || i === 6 || i === 9) challengeToken = await challengeFor(app, user.id, 'mfa');
    last = await request({ url: '/v1/auth/login/mfa', body: { challengeToken, code: '000000' } });
    if (i < 10) {
      t.equal(last.body.code, 'mfa_code_invalid');
      remaining.push(last.body.attemptsRemaining);
    }
  }
  // The third login's count says where the account lock comes (session 13: it said 4 of the
  // challenge's 5 when the next wrong code locked code entry for 15 minutes).
  t.same(remaining, [4, 3, 2, 1, 0, 4, 3, 2, 1], 'the first of the challenge and the account lock');
  t.equal(last!.status, 423, 'the 10th wrong code locks');
  t.equal(last!.body.code, 'mfa_locked');
  t.equal(last!.headers['retry-after'], '900');
  t.equal(last!.body.retryAfter, 900);
  // Whom to ask when the authenticator is lost (help page): the organisation's active administrators and support.
  t.same(last!.body.contact, { support: app.ctx.config.supportContact, language: 'en', administrators: [{ name: 'Ada Admin', email: admin.user.email }] });
  t.match(last!.body.detail, /Ask your organisation's administrator \(Ada Admin/);

  clock.advance(60);
  challengeToken = await challengeFor(app, user.id, 'mfa');
  const locked = await request({ url: '/v1/auth/login/mfa', body: { challengeToken, code: currentTotp(app, totpSecret!) } });
  t.equal(locked.status, 423, 'even the right code while locked');
  t.equal(locked.body.contact?.administrators?.[0]?.email, admin.user.email, 'the contact on every locked answer');
  t.equal(locked.headers['retry-after'], '840');
  const flow = await app.ctx.db.flowToken.findFirstOrThrow({ where: { userId: user.id, state: 'PENDING' } });
  t.equal(flow.attempts, 0, 'a locked account spends no challenge attempts');

  clock.advance(840);
  challengeToken = await challengeFor(app, user.id, 'mfa');
  t.equal((await request({ url: '/v1/auth/login/mfa', body: { challengeToken, code: currentTotp(app, totpSecret!) } })).status, 200);
  t.equal((await auditOf(app, user.id, 'mfa.locked')).length, 1);

  // The next lock is longer (growing schedule).
  for (let i = 1; i <= 10; i++) {
    if ((i - 1) % 5 === 0) challengeToken = await challengeFor(app, user.id, 'mfa');
    last = await request({ url: '/v1/auth/login/mfa', body: { challengeToken, code: '000000' } });
  }
  t.equal(last!.headers['retry-after'], '1800');
});

t.test('no secrets or codes in logs', async (t) => {
  const { app, logs } = await buildTestApp(t, { LOG_LEVEL: 'trace' });
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app, { withTotp: false });
  const challengeToken = await challengeFor(app, user.id, 'mfa_enrollment');
  const { secret, tokens } = await enrolAtLogin(t, app, request, challengeToken);
  const code = currentTotp(app, secret);
  const joined = logs.join('\n');
  t.ok(logs.length > 0);
  for (const value of [secret, code, challengeToken, tokens.accessToken, tokens.refreshToken, ...tokens.recoveryCodes]) {
    t.notOk(joined.includes(value), 'secret value absent from the log');
  }
  t.notOk(joined.includes(secretOf(`otpauth://totp/x?secret=${secret}`)));
});
