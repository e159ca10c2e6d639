import t from 'tap';
import { buildTestApp } from '../../helpers/app.js';
import { api } from '../../helpers/http.js';
import { startSmtpSink } from '../../helpers/smtp-sink.js';
import { createOrganization, createUser, currentTotp, signIn } from '../../helpers/factories.js';
import { auditEvents, deliverMail, GOOD_PASSWORD, inviteUser, OTHER_PASSWORD, tokenFromLink } from '../../helpers/accounts.js';
import { adminWorld, auditOf, mailsTo } from '../organization/helpers.js';
import { lastMail, outboxMails } from '../../helpers/outbox.js';
import { RESET_LINK_MIN_INTERVAL_SECONDS } from '../../../src/modules/password/forgot-password.js';
import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH } from '../../../src/lib/password-policy.js';

t.test('forgot password: always the same 202, a link only for active accounts, built from APP_BASE_URL', async (t) => {
  const sink = await startSmtpSink(t);
  const { app } = await buildTestApp(t, { SMTP_URL: sink.url, TRUST_PROXY: 'loopback' });
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app, { name: 'Rita Reset' });
  const { user: invited } = await inviteUser(app);
  const { user: blocked } = await createUser(app.ctx.db, app, { status: 'BLOCKED' });
  await deliverMail(app);
  sink.messages.length = 0;

  const answers = [];
  for (const email of ['nobody@example.test', invited.email, blocked.email, user.email.toUpperCase()]) {
    answers.push(
      await request({
        url: '/v1/password/forgot',
        body: { email },
        // Spoofed host headers must not change where the link points.
        headers: { host: 'evil.example', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'http' },
      }),
    );
  }
  for (const res of answers) {
    t.equal(res.status, 202);
    t.equal(res.raw, answers[0]!.raw, 'same body');
    t.same(Object.keys(res.headers).sort(), Object.keys(answers[0]!.headers).sort(), 'same headers');
  }
  t.equal(answers[0]!.body.status, 'accepted');

  await deliverMail(app);
  t.equal(sink.messages.length, 1, 'only the active account got a mail');
  const mail = sink.messages[0]!;
  t.same(mail.to.map((a) => a.toLowerCase()), [user.email.toLowerCase()]);
  t.equal(mail.subject, 'ALSO Webshop: reset your password');
  t.notMatch(mail.text + mail.html, 'evil.example');
  const token = tokenFromLink(mail.text, '/reset-password');
  t.match(mail.text, `https://shop.example.test/reset-password?token=${token}`);
  const flow = await app.ctx.db.flowToken.findFirstOrThrow({ where: { userId: user.id, purpose: 'PASSWORD_RESET' } });
  t.equal(flow.expiresAt.getTime() - flow.createdAt.getTime(), 30 * 60 * 1000, '30 minutes');

  const requested = (await auditEvents(app)).filter((e) => e.type === 'password.reset_requested');
  t.equal(requested.length, 4, 'every request is audited');
});

t.test('reset: sets the password, ends every session, keeps MFA, does not sign in, notifies; login then asks for the code', async (t) => {
  const sink = await startSmtpSink(t);
  const { app, logs } = await buildTestApp(t, { SMTP_URL: sink.url });
  const request = api(app);
  const { user, password: oldPassword } = await createUser(app.ctx.db, app);
  const factorsBefore = await app.ctx.db.totpFactor.findMany({ where: { userId: user.id } });
  const session = await signIn(app, user);
  const pendingLogin = await request({ url: '/v1/auth/login', body: { email: user.email, password: oldPassword } });
  t.equal(pendingLogin.body.next, 'mfa');

  await request({ url: '/v1/password/forgot', body: { email: user.email } });
  await deliverMail(app);
  const token = tokenFromLink(sink.messages[0]!.text, '/reset-password');

  const weak = await request({ url: '/v1/password/reset', body: { token, password: 'password123456' } });
  t.equal(weak.status, 422);
  t.equal(weak.body.code, 'password_common');

  const res = await request({ url: '/v1/password/reset', body: { token, password: GOOD_PASSWORD } });
  t.equal(res.status, 204, 'no tokens: a reset never signs in');
  t.equal(res.raw, '');

  // Every session is over at once.
  const refresh = await request({ url: '/v1/auth/refresh', body: { refreshToken: session.refreshToken } });
  t.equal(refresh.status, 401);
  const sessions = await app.ctx.db.session.findMany({ where: { userId: user.id } });
  t.ok(sessions.length > 0 && sessions.every((s) => s.revokedAt && s.revokedReason === 'password_reset'));
  // The half-done login with the old password cannot be finished.
  t.equal((await app.ctx.db.flowToken.findFirstOrThrow({ where: { userId: user.id, purpose: 'LOGIN_CHALLENGE' } })).state, 'VOIDED');

  t.same(await app.ctx.db.totpFactor.findMany({ where: { userId: user.id } }), factorsBefore, 'MFA untouched');

  t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password: oldPassword } })).status, 401, 'old password gone');
  const login = await request({ url: '/v1/auth/login', body: { email: user.email, password: GOOD_PASSWORD } });
  t.equal(login.status, 200);
  t.equal(login.body.next, 'mfa', 'login after a reset still asks for the code');

  await deliverMail(app);
  t.equal(sink.messages.length, 2);
  t.equal(sink.messages[1]!.subject, 'ALSO Webshop: your password was changed');

  const types = (await auditEvents(app, user.id)).map((e) => e.type);
  t.ok(types.includes('password.reset_requested') && types.includes('password.reset_completed'));

  const reused = await request({ url: '/v1/password/reset', body: { token, password: OTHER_PASSWORD } });
  t.equal(reused.status, 410);
  t.equal(reused.body.code, 'link_used');

  const logged = logs.join('\n');
  t.ok(logs.length > 0);
  for (const secret of [oldPassword!, GOOD_PASSWORD, 'password123456', token, pendingLogin.body.challengeToken, session.refreshToken, 'reset-password?token']) {
    t.notMatch(logged, secret, 'no password, token or link in the logs');
  }
});

t.test('reset links: expire after 30 minutes, are replaced by newer ones, and are not activation links', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app);
  const linkFor = async () => {
    await request({ url: '/v1/password/forgot', body: { email: user.email } });
    const mail = await lastMail(app, { toAddress: user.email });
    return tokenFromLink(mail.textBody, '/reset-password');
  };

  const first = await linkFor();
  clock.advance(30 * 60);
  const expired = await request({ url: '/v1/password/reset', body: { token: first, password: GOOD_PASSWORD } });
  t.equal(expired.status, 410);
  t.equal(expired.body.code, 'link_expired');

  clock.advance(RESET_LINK_MIN_INTERVAL_SECONDS);
  const a = await linkFor();
  clock.advance(RESET_LINK_MIN_INTERVAL_SECONDS);
  const b = await linkFor();
  t.equal((await request({ url: '/v1/password/reset', body: { token: a, password: GOOD_PASSWORD } })).body.code, 'link_used', 'replaced');
  t.equal((await request({ url: '/v1/password/reset', body: { token: b, password: GOOD_PASSWORD } })).status, 204);

  const { token: activation } = await inviteUser(app);
  const wrongPurpose = await request({ url: '/v1/password/reset', body: { token: activation, password: GOOD_PASSWORD } });
  t.equal(wrongPurpose.status, 400);
  t.equal(wrongPurpose.body.code, 'link_invalid');
});

t.test("reset links per account: one a minute and five an hour; requests beyond get the same 202 but neither void the pending link nor send mail", async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app);
  const forgot = (ip: string) => app.inject({ method: 'POST', url: '/v1/password/forgot', payload: { email: user.email }, remoteAddress: ip });
  const resetMails = async () => (await outboxMails(app, { where: { toAddress: user.email, template: 'password_reset' } })).length;

  t.equal((await forgot('198.51.100.7')).statusCode, 202);
  const victims = tokenFromLink((await lastMail(app, { toAddress: user.email })).textBody, '/reset-password');
  const flood = await Promise.all(Array.from({ length: 20 }, (_, i) => forgot(`192.0.2.${i + 1}`)));
  t.ok(flood.every((r) => r.statusCode === 202 && r.body === flood[0]!.body), 'the same 202 for every request');
  t.equal(await resetMails(), 1, 'no more mail within the minute');
  const throttled = await auditEvents(app, user.id);
  t.ok(throttled.some((e) => e.type === 'password.reset_requested' && (e.details as { reason?: string }).reason === 'throttled'), 'audited as throttled');
  const inspect = await request({ url: '/v1/password/reset', body: { token: victims, password: OTHER_PASSWORD } });
  t.equal(inspect.status, 204, "the owner's link survived the flood");

  let sent = 1;
  for (let i = 0; i < 6; i++) {
    clock.advance(61);
    await forgot('192.0.2.200');
    sent = await resetMails();
  }
  t.equal(sent, 5, 'five links an hour, however far apart the requests');
  const latest = tokenFromLink((await lastMail(app, { toAddress: user.email })).textBody, '/reset-password');
  t.not(latest, victims);
  t.equal((await request({ url: '/v1/password/reset', body: { token: latest, password: GOOD_PASSWORD } })).status, 204, 'the newest mailed link works');

  clock.advance(3600);
  await forgot('192.0.2.201');
  t.equal(await resetMails(), 6, 'an hour later, a new link');

  // Five links within minutes, all expired before the hour is over: the owner's own request still gets one.
  for (let i = 0; i < 4; i++) {
    clock.advance(61);
    await forgot('192.0.2.202');
  }
  t.equal(await resetMails(), 10);
  clock.advance(35 * 60);
  await forgot('198.51.100.7');
  t.equal(await resetMails(), 11, 'with no usable link left, the hourly cap does not apply');
});

t.test('two concurrent resets with one link: exactly one wins', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app);
  await request({ url: '/v1/password/forgot', body: { email: user.email } });
  const token = tokenFromLink((await lastMail(app, { toAddress: user.email })).textBody);
  const passwords = [GOOD_PASSWORD, OTHER_PASSWORD, GOOD_PASSWORD, OTHER_PASSWORD, GOOD_PASSWORD];
  const results = await Promise.all(passwords.map((password) => request({ url: '/v1/password/reset', body: { token, password } })));
  t.same(results.map((r) => r.status).sort(), [204, 410, 410, 410, 410]);
  t.equal((await auditEvents(app, user.id)).filter((e) => e.type === 'password.reset_completed').length, 1);
  t.equal(await app.ctx.db.mailOutbox.count({ where: { toAddress: user.email, template: 'password_changed' } }), 1, 'one notification');
  const winner = passwords[results.findIndex((r) => r.status === 204)]!;
  t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password: winner } })).status, 200);
});

t.test('a login lock never blocks the reset flow, and a completed reset lifts it', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user, password } = await createUser(app.ctx.db, app, { organizationId: org.id });
  for (let i = 0; i < 25; i++) await request({ url: '/v1/auth/login', body: { email: user.email, password: 'wrong password 123' } });
  t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password } })).status, 401, 'locked hard');

  const forgot = await request({ url: '/v1/password/forgot', body: { email: user.email } });
  t.equal(forgot.status, 202);
  const mail = (await outboxMails(app, { where: { toAddress: user.email, template: 'password_reset' } })).at(-1);
  t.ok(mail, 'the locked account still gets its reset link');
  const reset = await request({ url: '/v1/password/reset', body: { token: tokenFromLink(mail!.textBody), password: GOOD_PASSWORD } });
  t.equal(reset.status, 204);

  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.same([row.failedPasswordCount, row.passwordLockedUntil, row.passwordLockouts], [0, null, 0], 'lock lifted');
  t.equal((await request({ url: '/v1/auth/login', body: { email: user.email, password: GOOD_PASSWORD } })).status, 200);
});

t.test('a blocked account cannot use a reset link', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app);
  await request({ url: '/v1/password/forgot', body: { email: user.email } });
  const token = tokenFromLink((await lastMail(app, { toAddress: user.email })).textBody);
  await app.ctx.db.user.update({ where: { id: user.id }, data: { status: 'BLOCKED', blockedAt: app.ctx.clock.now() } });
  const res = await request({ url: '/v1/password/reset', body: { token, password: GOOD_PASSWORD } });
  t.equal(res.status, 403);
  t.equal(res.body.code, 'account_blocked');
  t.ok(res.body.contact);
});

t.test('a user blocked through the API after asking for a reset link learns from the link that the account is blocked', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, app } = w;
  const member = await w.member(w.orgA.id, { email: 'member@alpha.test' });
  await request({ url: '/v1/password/forgot', body: { email: 'member@alpha.test' } });
  const token = tokenFromLink((await mailsTo(app, 'member@alpha.test')).find((m) => m.template === 'password_reset')!.textBody);
  // Blocking voids the user's pending links.
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${member.user.id}/block`, token: adminA.token })).status, 200);

  const res = await request({ url: '/v1/password/reset', body: { token, password: GOOD_PASSWORD } });
  t.equal(res.status, 403);
  t.equal(res.body.code, 'account_blocked');
  t.same(res.body.contact?.administrators, [{ name: 'Alice Admin', email: adminA.user.email }], 'says whom to contact');
  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: member.user.id } });
  t.equal(row.passwordHash, member.user.passwordHash, 'the password is unchanged');

  // Unblocked, the voided link stays void: link_used as for any replaced link.
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${member.user.id}/unblock`, token: adminA.token })).body.status, 'ACTIVE');
  const after = await request({ url: '/v1/password/reset', body: { token, password: GOOD_PASSWORD } });
  t.same([after.status, after.body.code], [410, 'link_used']);
});

t.test("one account's reset request leaves every other account's pending reset link alone (mutation review, session 22)", async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user: first } = await createUser(app.ctx.db, app);
  const { user: second } = await createUser(app.ctx.db, app);
  t.equal((await request({ url: '/v1/password/forgot', body: { email: first.email } })).status, 202);
  const firstLink = tokenFromLink((await lastMail(app, { toAddress: first.email, template: 'password_reset' })).textBody, '/reset-password');
  // Anyone may ask for a link for another address: that must not void the first account's link.
  t.equal((await request({ url: '/v1/password/forgot', body: { email: second.email } })).status, 202);
  t.equal(await app.ctx.db.mailOutbox.count({ where: { toAddress: second.email, template: 'password_reset' } }), 1, 'the second account got its link');
  const res = await request({ url: '/v1/password/reset', body: { token: firstLink, password: GOOD_PASSWORD } });
  t.equal(res.status, 204, "the first account's link still works");
});

t.test("a reset request voids only older reset links: a login of the account half-done before it can still be finished (mutation review, session 22)", async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, password, totpSecret } = await createUser(app.ctx.db, app);
  const pendingLogin = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(pendingLogin.body.next, 'mfa');

  // Anyone who knows the address can ask for a reset link; that alone must not break the owner's login.
  t.equal((await request({ url: '/v1/password/forgot', body: { email: user.email } })).status, 202);
  t.equal(await app.ctx.db.mailOutbox.count({ where: { toAddress: user.email, template: 'password_reset' } }), 1, 'a link was sent');

  const done = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: pendingLogin.body.challengeToken, code: currentTotp(app, totpSecret!) } });
  t.equal(done.status, 200, 'the login started before the request is finished with the code');
  t.ok(done.body.accessToken);
});

t.test('five reset links an hour are counted over the whole hour, not only over the life of a link (mutation review, session 22)', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const { user } = await createUser(app.ctx.db, app);
  const forgot = () => app.inject({ method: 'POST', url: '/v1/password/forgot', payload: { email: user.email } });
  const resetMails = async () => (await outboxMails(app, { where: { toAddress: user.email, template: 'password_reset' } })).length;

  // Four links in the first minutes, the fifth at minute 29: still usable at minute 35.
  for (let i = 0; i < 4; i++) {
    t.equal((await forgot()).statusCode, 202);
    clock.advance(61);
  }
  clock.advance(29 * 60 - 4 * 61);
  await forgot();
  t.equal(await resetMails(), 5);
  clock.advance(6 * 60);
  t.equal((await forgot()).statusCode, 202);
  t.equal(await resetMails(), 5, 'the sixth within the hour sends nothing while the fifth link is still usable');
});

t.test('"forgot password" for an invited or a blocked account is audited with that reason, and no mail (mutation review, session 22)', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user: invited } = await inviteUser(app);
  const { user: blocked } = await createUser(app.ctx.db, app, { status: 'BLOCKED' });
  for (const email of [invited.email, blocked.email]) t.equal((await request({ url: '/v1/password/forgot', body: { email } })).status, 202);
  const detailsOf = async (id: string) =>
    (await auditEvents(app, id)).filter((e) => e.type === 'password.reset_requested').map((e) => e.details);
  t.match(await detailsOf(invited.id), [{ by: 'self', mailSent: false, reason: 'invited' }]);
  t.match(await detailsOf(blocked.id), [{ by: 'self', mailSent: false, reason: 'blocked' }]);
});

t.test('a reset with a link an administrator had sent: the completion audit names who asked for it; the change time is recorded (mutation review, session 22)', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, app, clock } = w;
  const member = await w.member(w.orgA.id, { email: 'member@alpha.test' });
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${member.user.id}/password-reset`, token: adminA.token })).status, 200);
  const token = tokenFromLink((await mailsTo(app, 'member@alpha.test')).find((m) => m.template === 'password_reset')!.textBody, '/reset-password');
  clock.advance(120);
  t.equal((await request({ url: '/v1/password/reset', body: { token, password: GOOD_PASSWORD } })).status, 204);
  const [completed] = await auditOf(app, 'password.reset_completed', member.user.id);
  t.match(completed?.details, { requestedBy: adminA.user.id });
  // password_changed_at is what a login still checking the old password is refused by (login.service.ts).
  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: member.user.id } });
  t.same(row.passwordChangedAt, clock.now(), 'passwordChangedAt is the time of the reset');
});

t.test('the reset mail tells the truth: who sent it, and whether the next sign-in asks for the authenticator or its set-up (desk review, session 23)', async (t) => {
  const w = await adminWorld(t);
  const { request, clock, adminA } = w;
  const carl = await w.member(w.orgA.id, { name: 'Carl Phoneless', email: 'carl@alpha.test' });
  const latestReset = async () => (await mailsTo(w.app, 'carl@alpha.test')).filter((m) => m.template === 'password_reset').at(-1)!.textBody;

  t.equal((await request({ url: '/v1/password/forgot', body: { email: 'carl@alpha.test' } })).status, 202);
  t.match(await latestReset(), 'we received a request to reset the password');
  t.match(await latestReset(), 'you still need your authenticator app', 'an enrolled user keeps the authenticator');

  // Lost phone: the administrator resets the MFA, then sends a reset mail.
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${carl.user.id}/mfa-reset`, token: adminA.token })).status, 200);
  clock.advance(RESET_LINK_MIN_INTERVAL_SECONDS);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${carl.user.id}/password-reset`, token: adminA.token })).status, 200);
  const byAdmin = await latestReset();
  t.match(byAdmin, "your organisation's administrator Alice Admin sent you this link");
  t.notMatch(byAdmin, 'If you did not ask for this');
  t.notMatch(byAdmin, 'still need your authenticator', 'no authenticator any more');
  t.match(byAdmin, 'At your next sign-in you set up the 2-step login');

  clock.advance(RESET_LINK_MIN_INTERVAL_SECONDS);
  t.equal((await request({ url: '/v1/password/forgot', body: { email: 'carl@alpha.test' } })).status, 202);
  t.match(await latestReset(), 'At your next sign-in you set up the 2-step login', "the user's own request says so too");
});

t.test('the reset page checks its link before the user types a password: whose account, until when, the password rules; used, replaced, expired and blocked links say so (frontend review, session 28)', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app);
  const inspect = (token: string) => request({ url: '/v1/password/reset/inspect', body: { token } });
  const linkFor = async () => {
    await request({ url: '/v1/password/forgot', body: { email: user.email } });
    return tokenFromLink((await lastMail(app, { toAddress: user.email })).textBody, '/reset-password');
  };

  const first = await linkFor();
  const seen = await inspect(first);
  t.equal(seen.status, 200);
  t.same(seen.body, {
    email: user.email,
    language: 'en',
    expiresAt: new Date(clock.now().getTime() + 30 * 60_000).toISOString(),
    passwordPolicy: { minLength: PASSWORD_MIN_LENGTH, maxLength: PASSWORD_MAX_LENGTH },
  });
  t.equal(seen.headers['cache-control'], 'no-store');
  t.equal((await inspect(first)).status, 200, 'looking does not use the link up');

  clock.advance(RESET_LINK_MIN_INTERVAL_SECONDS);
  const second = await linkFor();
  const replaced = await inspect(first);
  t.same([replaced.status, replaced.body.code, replaced.body.linkState], [410, 'link_used', 'replaced'], 'a newer link replaced it');
  t.equal((await request({ url: '/v1/password/reset', body: { token: second, password: GOOD_PASSWORD } })).status, 204);
  const used = await inspect(second);
  t.same([used.status, used.body.code, used.body.linkState], [410, 'link_used', 'used']);

  clock.advance(RESET_LINK_MIN_INTERVAL_SECONDS);
  const third = await linkFor();
  await app.ctx.db.user.update({ where: { id: user.id }, data: { status: 'BLOCKED', blockedAt: clock.now() } });
  const blocked = await inspect(third);
  t.same([blocked.status, blocked.body.code], [403, 'account_blocked']);
  t.ok(blocked.body.contact, 'with whom to contact');
  await app.ctx.db.user.update({ where: { id: user.id }, data: { status: 'ACTIVE', blockedAt: null } });
  clock.advance(30 * 60);
  t.same([(await inspect(third)).status, (await inspect(third)).body.code], [410, 'link_expired']);

  const { token: activation } = await inviteUser(app);
  t.same([(await inspect(activation)).status, (await inspect(activation)).body.code], [400, 'link_invalid'], 'an activation link is no reset link');
  const extra = await request({ url: '/v1/password/reset/inspect', body: { token: first, password: GOOD_PASSWORD } });
  t.same([extra.status, extra.body.code], [400, 'validation_failed']);
});
