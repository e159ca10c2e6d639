import t from 'tap';
import { deliverDueMail } from '../../../src/modules/mail/mail.worker.js';
import { startSmtpSink } from '../../helpers/smtp-sink.js';
import { adminWorld, auditOf } from '../organization/helpers.js';
import { lastMail } from '../../helpers/outbox.js';
import { currentTotp } from '../../helpers/factories.js';
import { challengeFor } from '../mfa/helpers.js';

const tokenFrom = (text: string) => {
  const match = /https:\/\/shop\.example\.test\/[a-z/-]+\?token=([A-Za-z0-9_%-]+)/.exec(text);
  if (!match) throw new Error(`no link in: ${text}`);
  return decodeURIComponent(match[1]!);
};

t.test('support-verified MFA reset: link to the stored address, confirmation resets, both mails arrive', async (t) => {
  const sink = await startSmtpSink(t);
  const w = await adminWorld(t, { SMTP_URL: sink.url });
  const { request, support, app, clock } = w;
  const u = await w.member(w.orgA.id, { email: 'Paula.Phone@alpha.test', name: 'Paula', recoveryCodes: 10 });
  const userToken = await w.tokenFor(u.user);
  const path = `/v1/support/users/${u.user.id}/mfa-reset-request`;

  t.match((await request({ url: path, token: support.token })).body, { state: 'none', requestedAt: null });

  const started = await request({ method: 'POST', url: path, token: support.token });
  t.equal(started.status, 202);
  t.match(started.body, { state: 'pending', requestedBy: { id: support.user.id, name: 'Sam Support' }, confirmedAt: null });
  t.equal(new Date(started.body.expiresAt).getTime() - new Date(started.body.requestedAt).getTime(), 24 * 3600 * 1000, '24 hours');
  t.notMatch(started.raw, /token|confirm-mfa-reset|mfa-reset\/confirm/, 'support never sees the link');
  t.equal(await app.ctx.db.totpFactor.count({ where: { userId: u.user.id } }), 1, 'nothing is reset yet');
  t.match((await auditOf(app, 'mfa.reset_requested', u.user.id))[0], { actorUserId: support.user.id, organizationId: w.orgA.id });

  await deliverDueMail(app.ctx, app.ctx.mailTransport, 10);
  const [confirmMail] = await sink.waitFor(1);
  t.same(confirmMail!.to.map((a) => a.toLowerCase()), ['paula.phone@alpha.test'], 'sent to the stored address');
  t.match(confirmMail!.subject, 'confirm the reset of your 2-step login');
  const token = tokenFrom(confirmMail!.text);

  clock.advance(3600);
  const confirmed = await request({ method: 'POST', url: '/v1/mfa-reset/confirm', body: { token } });
  t.equal(confirmed.status, 200);
  t.same(confirmed.body, { status: 'mfa_reset', next: 'login' });
  t.equal(await app.ctx.db.totpFactor.count({ where: { userId: u.user.id } }), 0);
  t.equal(await app.ctx.db.recoveryCode.count({ where: { userId: u.user.id } }), 0);
  t.equal((await request({ url: '/v1/me', token: userToken })).status, 401, 'sessions ended');
  const ended = await app.ctx.db.session.findMany({ where: { userId: u.user.id }, select: { revokedReason: true } });
  t.same(ended, [{ revokedReason: 'mfa_reset_by_support' }], 'ended for the support-verified reset (mutation review, session 22)');
  t.match((await auditOf(app, 'mfa.reset_confirmed', u.user.id))[0], { subjectUserId: u.user.id, details: { requestedById: support.user.id, sessionsRevoked: 1 } });

  await deliverDueMail(app.ctx, app.ctx.mailTransport, 10);
  const mails = await sink.waitFor(2);
  t.match(mails[1]!.subject, 'you can now set up a new 2-step login');
  t.match(mails[1]!.text, 'support team reset the 2-step login of your account at your request', 'says who reset it (product.md: "and by whom")');
  t.same(mails[1]!.to.map((a) => a.toLowerCase()), ['paula.phone@alpha.test']);

  support.token = await w.tokenFor(support.user); // the clock moved past the access token's lifetime
  const state = await request({ url: path, token: support.token });
  t.match(state.body, { state: 'confirmed', requestedBy: { id: support.user.id } });
  t.ok(state.body.confirmedAt);

  const reused = await request({ method: 'POST', url: '/v1/mfa-reset/confirm', body: { token } });
  t.equal(reused.status, 410);
  t.equal(reused.body.code, 'link_used');

  const login = await request({ method: 'POST', url: '/v1/auth/login', body: { email: 'paula.phone@alpha.test', password: u.password } });
  t.equal(login.body.next, 'mfa_enrollment', 'the next login sets up a new authenticator');
  t.notMatch(w.logs.join('\n'), token, 'the token never reaches the logs');
});

t.test('concurrent confirmations: exactly one wins; newer requests void older links; expiry', async (t) => {
  const w = await adminWorld(t);
  const { request, support, app, clock } = w;
  const u = await w.member(w.orgA.id, { email: 'race@alpha.test' });
  const path = `/v1/support/users/${u.user.id}/mfa-reset-request`;
  const linkToken = async () => {
    const mail = await lastMail(app, { template: 'mfa_reset_confirm', toAddress: 'race@alpha.test' });
    return tokenFrom(mail.textBody);
  };

  await request({ method: 'POST', url: path, token: support.token });
  const older = await linkToken();
  clock.advance(5);
  await request({ method: 'POST', url: path, token: support.token });
  const newer = await linkToken();
  t.not(older, newer);
  const stale = await request({ method: 'POST', url: '/v1/mfa-reset/confirm', body: { token: older } });
  t.equal(stale.status, 410, 'a newer request voids the older link');
  t.equal(stale.body.code, 'link_used');

  const results = await Promise.all(Array.from({ length: 8 }, () => request({ method: 'POST', url: '/v1/mfa-reset/confirm', body: { token: newer } })));
  t.same(results.map((r) => r.status).sort(), [200, 410, 410, 410, 410, 410, 410, 410], 'one winner');
  t.equal((await auditOf(app, 'mfa.reset_confirmed', u.user.id)).length, 1);
  t.equal(await app.ctx.db.mailOutbox.count({ where: { template: 'mfa_reset_done' } }), 1, 'one done-mail');

  // Expiry after 24 h: visible to support, refused to the user.
  const v = await w.member(w.orgA.id, { email: 'slow@alpha.test' });
  await request({ method: 'POST', url: `/v1/support/users/${v.user.id}/mfa-reset-request`, token: support.token });
  const mail = await lastMail(app, { toAddress: 'slow@alpha.test' });
  clock.advance(24 * 3600 + 1);
  support.token = await w.tokenFor(support.user);
  t.equal((await request({ url: `/v1/support/users/${v.user.id}/mfa-reset-request`, token: support.token })).body.state, 'expired');
  const late = await request({ method: 'POST', url: '/v1/mfa-reset/confirm', body: { token: tokenFrom(mail.textBody) } });
  t.equal(late.status, 410);
  t.equal(late.body.code, 'link_expired');
  t.equal(await app.ctx.db.totpFactor.count({ where: { userId: v.user.id } }), 1);

  const bogus = await request({ method: 'POST', url: '/v1/mfa-reset/confirm', body: { token: 'x'.repeat(43) } });
  t.equal(bogus.status, 400);
  t.equal(bogus.body.code, 'link_invalid');
  // A token of another purpose: the login challenge that the password alone gets (found by session
  // 20's mutation review: dropping the purpose check let it remove the user's authenticator).
  const challenge = await challengeFor(app, v.user.id, 'mfa');
  const crossed = await request({ method: 'POST', url: '/v1/mfa-reset/confirm', body: { token: challenge } });
  t.equal(crossed.status, 400, 'a login challenge is no MFA-reset link');
  t.equal(crossed.body.code, 'link_invalid');
  t.equal(await app.ctx.db.totpFactor.count({ where: { userId: v.user.id, status: 'ACTIVE' } }), 1, 'the authenticator stays');
});

t.test('a block voids a pending request; preconditions and who may ask', async (t) => {
  const w = await adminWorld(t);
  const { request, support, app, adminA } = w;
  const u = await w.member(w.orgA.id, { email: 'blockme@alpha.test' });
  const path = `/v1/support/users/${u.user.id}/mfa-reset-request`;
  await request({ method: 'POST', url: path, token: support.token });
  const mail = await lastMail(app, { template: 'mfa_reset_confirm' });
  await request({ method: 'POST', url: `/v1/organization/users/${u.user.id}/block`, token: adminA.token });
  t.equal((await request({ url: path, token: support.token })).body.state, 'voided');
  // The holder of the voided link learns why, and whom to contact (as with activation and reset links).
  const afterBlock = await request({ method: 'POST', url: '/v1/mfa-reset/confirm', body: { token: tokenFrom(mail.textBody) } });
  t.equal(afterBlock.status, 403);
  t.equal(afterBlock.body.code, 'account_blocked');
  t.match(afterBlock.body.contact, { administrators: [{ name: 'Alice Admin' }] });
  t.equal(await app.ctx.db.totpFactor.count({ where: { userId: u.user.id, status: 'ACTIVE' } }), 1, 'the factor stays');
  t.equal((await request({ method: 'POST', url: path, token: support.token })).body.code, 'user_blocked');

  const noMfa = await w.member(w.orgA.id, { withTotp: false });
  const none = await request({ method: 'POST', url: `/v1/support/users/${noMfa.user.id}/mfa-reset-request`, token: support.token });
  t.equal(none.status, 409);
  t.equal(none.body.code, 'mfa_not_enrolled');
  const invited = await w.member(w.orgA.id, { status: 'INVITED' });
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${invited.user.id}/mfa-reset-request`, token: support.token })).body.code, 'user_not_activated');
  const missing = await request({ method: 'POST', url: '/v1/support/users/00000000-0000-7000-8000-000000000000/mfa-reset-request', token: support.token });
  t.equal(missing.body.code, 'user_not_found');

  const other = await w.member(w.orgA.id);
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${other.user.id}/mfa-reset-request`, token: adminA.token })).status, 403, 'admins reset directly, not by verified request');
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${support.user.id}/mfa-reset-request`, token: support.token })).body.code, 'self_service_required');
});

t.test("the organisation's only administrator: support's verified reset works; the administrator cannot reset their own MFA", async (t) => {
  const w = await adminWorld(t);
  const { request, support, app, adminA } = w;
  t.equal(await app.ctx.db.user.count({ where: { organizationId: w.orgA.id, roles: { has: 'CUSTOMER_ADMIN' } } }), 1, 'the only administrator');

  const own = await request({ method: 'POST', url: `/v1/organization/users/${adminA.user.id}/mfa-reset`, token: adminA.token });
  t.equal(own.status, 409);
  t.equal(own.body.code, 'self_service_required', 'their own MFA goes through the self-service endpoints');
  t.equal(await app.ctx.db.totpFactor.count({ where: { userId: adminA.user.id } }), 1, 'nothing was reset');

  // A lost phone of the only administrator: nobody in the organisation can reset it, support can.
  const started = await request({ method: 'POST', url: `/v1/support/users/${adminA.user.id}/mfa-reset-request`, token: support.token });
  t.equal(started.status, 202);
  const mail = await lastMail(app, { template: 'mfa_reset_confirm', toAddress: adminA.user.email });
  const confirmed = await request({ method: 'POST', url: '/v1/mfa-reset/confirm', body: { token: tokenFrom(mail.textBody) } });
  t.equal(confirmed.status, 200);
  t.equal(await app.ctx.db.totpFactor.count({ where: { userId: adminA.user.id } }), 0);

  const login = await request({ method: 'POST', url: '/v1/auth/login', body: { email: adminA.user.email, password: adminA.password } });
  t.equal(login.status, 200);
  t.equal(login.body.next, 'mfa_enrollment', 'the next login sets up a new authenticator');
});

t.test('a set-up the user has not finished (PENDING factor) can be reset by an administrator: the QR code shown goes, the next login starts afresh', async (t) => {
  const w = await adminWorld(t);
  const { request, app, adminA } = w;
  const u = await w.member(w.orgA.id, { withTotp: false });
  const login = await request({ method: 'POST', url: '/v1/auth/login', body: { email: u.user.email, password: u.password } });
  t.equal(login.body.next, 'mfa_enrollment');
  const enrolment = await request({ method: 'POST', url: '/v1/auth/login/mfa-enrollment', body: { challengeToken: login.body.challengeToken } });
  t.equal(enrolment.status, 200);

  const reset = await request({ method: 'POST', url: `/v1/organization/users/${u.user.id}/mfa-reset`, token: adminA.token });
  t.equal(reset.status, 200);
  t.equal(await app.ctx.db.totpFactor.count({ where: { userId: u.user.id } }), 0, 'the pending secret is gone');
  const late = await request({
    method: 'POST',
    url: '/v1/auth/login/mfa-enrollment/verify',
    body: { challengeToken: login.body.challengeToken, code: currentTotp(app, enrolment.body.secret) },
  });
  t.equal(late.status, 410, 'the challenge of the set-up that was reset is void');
  t.equal(late.body.code, 'challenge_used');
  const again = await request({ method: 'POST', url: '/v1/auth/login', body: { email: u.user.email, password: u.password } });
  t.equal(again.body.next, 'mfa_enrollment', 'the next login sets up afresh');
});

t.test('code entry locked during the first set-up (no working factor yet): the administrator reset and the support-verified reset lift the lock; a link about a lock the user outlasted dies when the set-up is finished', async (t) => {
  const w = await adminWorld(t);
  const { request, support, app, adminA, clock } = w;
  const lockDuringSetUp = async () => {
    const u = await w.member(w.orgA.id, { withTotp: false });
    const login = await request({ method: 'POST', url: '/v1/auth/login', body: { email: u.user.email, password: u.password } });
    await request({ method: 'POST', url: '/v1/auth/login/mfa-enrollment', body: { challengeToken: login.body.challengeToken } });
    let last = login;
    for (let round = 0; round < 2; round++) {
      const challenge = (await request({ method: 'POST', url: '/v1/auth/login', body: { email: u.user.email, password: u.password } })).body.challengeToken;
      for (let i = 0; i < 5; i++) {
        last = await request({ method: 'POST', url: '/v1/auth/login/mfa-enrollment/verify', body: { challengeToken: challenge, code: '000000' } });
      }
    }
    t.equal(last.status, 423, 'ten wrong codes during the set-up lock code entry');
    t.equal(last.body.code, 'mfa_locked');
    const locked = await request({ method: 'POST', url: '/v1/auth/login', body: { email: u.user.email, password: u.password } });
    t.equal(locked.body.code, 'mfa_locked', 'the login answers the lock too');
    return u;
  };
  const loginsToEnrolment = async (u: { user: { email: string }; password: string | null }) =>
    (await request({ method: 'POST', url: '/v1/auth/login', body: { email: u.user.email, password: u.password } })).body.next;

  // The administrator the lock's message names can help.
  const byAdmin = await lockDuringSetUp();
  const reset = await request({ method: 'POST', url: `/v1/organization/users/${byAdmin.user.id}/mfa-reset`, token: adminA.token });
  t.equal(reset.status, 200);
  t.equal(await loginsToEnrolment(byAdmin), 'mfa_enrollment', 'lock lifted: the set-up starts again');

  // So can support, after verifying the stored address.
  const bySupport = await lockDuringSetUp();
  const asked = await request({ method: 'POST', url: `/v1/support/users/${bySupport.user.id}/mfa-reset-request`, token: support.token });
  t.equal(asked.status, 202);
  const mail = await lastMail(app, { template: 'mfa_reset_confirm', toAddress: bySupport.user.email });
  t.equal((await request({ method: 'POST', url: '/v1/mfa-reset/confirm', body: { token: tokenFrom(mail.textBody) } })).status, 200);
  t.equal(await loginsToEnrolment(bySupport), 'mfa_enrollment', 'lock lifted by the confirmation');

  // A user who waits the lock out and finishes the set-up: the link sent meanwhile removes nothing.
  const waited = await lockDuringSetUp();
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${waited.user.id}/mfa-reset-request`, token: support.token })).status, 202);
  const stale = await lastMail(app, { template: 'mfa_reset_confirm', toAddress: waited.user.email });
  clock.advance(16 * 60);
  const login = await request({ method: 'POST', url: '/v1/auth/login', body: { email: waited.user.email, password: waited.password } });
  const enrolment = await request({ method: 'POST', url: '/v1/auth/login/mfa-enrollment', body: { challengeToken: login.body.challengeToken } });
  const verified = await request({
    method: 'POST',
    url: '/v1/auth/login/mfa-enrollment/verify',
    body: { challengeToken: login.body.challengeToken, code: currentTotp(app, enrolment.body.secret) },
  });
  t.equal(verified.status, 200, 'the set-up finishes after the lock');
  const late = await request({ method: 'POST', url: '/v1/mfa-reset/confirm', body: { token: tokenFrom(stale.textBody) } });
  t.equal(late.status, 410);
  t.equal(late.body.code, 'link_used');
  t.equal(await app.ctx.db.totpFactor.count({ where: { userId: waited.user.id, status: 'ACTIVE' } }), 1, 'the new factor stays');
});

t.test('a link already used keeps answering link_used after a later block: only a link the block voided tells its holder the account is blocked', async (t) => {
  const w = await adminWorld(t);
  const { request, support, app, adminA } = w;
  const u = await w.member(w.orgA.id);
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${u.user.id}/mfa-reset-request`, token: support.token })).status, 202);
  const token = tokenFrom((await lastMail(app, { template: 'mfa_reset_confirm' })).textBody);
  t.equal((await request({ method: 'POST', url: '/v1/mfa-reset/confirm', body: { token } })).status, 200);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${u.user.id}/block`, token: adminA.token })).status, 200);
  const again = await request({ method: 'POST', url: '/v1/mfa-reset/confirm', body: { token } });
  t.same([again.status, again.body.code], [410, 'link_used'], 'the used link tells nothing about the block');
  t.notMatch(again.raw, adminA.user.email, 'nor who administers the account');
});

t.test("support sees the state of the newest MFA-reset request only, never another link's (mutation review, session 22)", async (t) => {
  const w = await adminWorld(t);
  const { request, support, clock } = w;
  const u = await w.member(w.orgA.id, { email: 'state@alpha.test' });
  const path = `/v1/support/users/${u.user.id}/mfa-reset-request`;

  // A password-reset link pending for the user is no MFA-reset request.
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${u.user.id}/password-reset`, token: support.token })).status, 200);
  t.match((await request({ url: path, token: support.token })).body, { state: 'none', requestedAt: null, expiresAt: null });

  const first = await request({ method: 'POST', url: path, token: support.token });
  t.equal(first.body.state, 'pending');
  clock.advance(5);
  const second = await request({ method: 'POST', url: path, token: support.token });
  t.equal(second.status, 202);
  t.match(second.body, { state: 'pending', requestedAt: clock.now().toISOString() }, 'the answer describes the new request');
  t.match((await request({ url: path, token: support.token })).body, { state: 'pending', requestedAt: clock.now().toISOString() }, 'not the older one it voided');
});

t.test('the request reads expired from the very moment the link stops working (mutation review, session 22)', async (t) => {
  const w = await adminWorld(t);
  const { request, support, app, clock } = w;
  const u = await w.member(w.orgA.id, { email: 'edge@alpha.test' });
  const path = `/v1/support/users/${u.user.id}/mfa-reset-request`;
  const started = await request({ method: 'POST', url: path, token: support.token });
  const token = tokenFrom((await lastMail(app, { template: 'mfa_reset_confirm', toAddress: 'edge@alpha.test' })).textBody);
  clock.set(new Date(started.body.expiresAt));
  support.token = await w.tokenFor(support.user);
  t.equal((await request({ url: path, token: support.token })).body.state, 'expired');
  const late = await request({ method: 'POST', url: '/v1/mfa-reset/confirm', body: { token } });
  t.same([late.status, late.body.code], [410, 'link_expired'], 'as the confirmation says');
});

t.test('a confirmation for an account blocked after the link was sent removes nothing, even if the link was not voided (mutation review, session 22)', async (t) => {
  const w = await adminWorld(t);
  const { request, support, app } = w;
  const u = await w.member(w.orgA.id, { email: 'raced@alpha.test' });
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${u.user.id}/mfa-reset-request`, token: support.token })).status, 202);
  const token = tokenFrom((await lastMail(app, { template: 'mfa_reset_confirm', toAddress: 'raced@alpha.test' })).textBody);
  // A block that raced the click: the status is written, the link not voided yet.
  await app.ctx.db.user.update({ where: { id: u.user.id }, data: { status: 'BLOCKED', blockedAt: new Date() } });
  const confirmed = await request({ method: 'POST', url: '/v1/mfa-reset/confirm', body: { token } });
  t.same([confirmed.status, confirmed.body.code], [403, 'account_blocked']);
  t.equal(await app.ctx.db.totpFactor.count({ where: { userId: u.user.id, status: 'ACTIVE' } }), 1, 'the authenticator stays');
  t.same(await auditOf(app, 'mfa.reset_confirmed', u.user.id), []);
  t.equal(await app.ctx.db.mailOutbox.count({ where: { template: 'mfa_reset_done' } }), 0);
});
