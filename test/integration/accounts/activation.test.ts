import t from 'tap';
import { buildTestApp } from '../../helpers/app.js';
import { api } from '../../helpers/http.js';
import { startSmtpSink } from '../../helpers/smtp-sink.js';
import { createOrganization, createUser } from '../../helpers/factories.js';
import { auditEvents, deliverMail, GOOD_PASSWORD, inviteUser, OTHER_PASSWORD, tokenFromLink } from '../../helpers/accounts.js';
import { sendActivation } from '../../../src/modules/activation/activation.service.js';
import { issueFlowToken } from '../../../src/modules/flows/flow-tokens.js';
import { adminWorld, auditOf, mailsTo } from '../organization/helpers.js';
import { lastMail } from '../../helpers/outbox.js';
import { createSupportUser } from '../../../src/modules/support/bootstrap.service.js';
import { cliOrigin } from '../../../src/modules/support/cli-origin.js';

t.test('activation: the e-mailed link shows whose account it is, sets the password and leads to the MFA set-up', async (t) => {
  const sink = await startSmtpSink(t);
  const { app } = await buildTestApp(t, { SMTP_URL: sink.url });
  const request = api(app);
  const org = await createOrganization(app.ctx.db, { name: 'Acme Tools GmbH' });
  const { user, expiresAt } = await inviteUser(app, { organizationId: org.id, email: 'Anna.Berg@Example.test', name: 'Anna Berg' });

  await deliverMail(app);
  t.equal(sink.messages.length, 1);
  const mail = sink.messages[0]!;
  t.equal(mail.subject, 'ALSO Webshop: activate your account');
  t.match(mail.text, 'at Acme Tools GmbH');
  const token = tokenFromLink(mail.text, '/activate');
  t.match(mail.text, `https://shop.example.test/activate?token=${token}`, 'link from APP_BASE_URL');
  t.ok(token.length >= 43, 'at least 256 bits');
  t.equal(expiresAt.getTime(), app.ctx.clock.now().getTime() + 7 * 24 * 3600 * 1000, '7 days');

  const info = await request({ url: '/v1/activation/inspect', body: { token } });
  t.equal(info.status, 200);
  t.same(info.body, {
    email: 'Anna.Berg@Example.test',
    name: 'Anna Berg',
    organizationName: 'Acme Tools GmbH',
    language: 'en',
    expiresAt: expiresAt.toISOString(),
    passwordPolicy: { minLength: 12, maxLength: 1024 },
  });
  t.equal(info.headers['cache-control'], 'no-store');
  t.equal((await request({ url: '/v1/activation/inspect', body: { token } })).status, 200, 'inspecting does not use the link up');

  // The policy applies (and a rejected password leaves the link usable).
  for (const [password, code] of [
    ['short pw 1', 'password_too_short'],
    ['password1234', 'password_common'],
    ['anna.berg was here 2026', 'password_contains_context'],
    ['acme tools forever 99', 'password_contains_context'],
    ['my also webshop account!', 'password_contains_context'],
    ['x'.repeat(1025), 'password_too_long'],
  ] as const) {
    const res = await request({ url: '/v1/activation', body: { token, password } });
    t.equal(res.status, 422, code);
    t.equal(res.body.code, code);
    t.match(res.headers['content-type'], /application\/problem\+json/);
  }
  t.equal((await request({ url: '/v1/activation', body: { token, password: 'short pw 1' } })).body.minLength, 12);

  const done = await request({ url: '/v1/activation', body: { token, password: GOOD_PASSWORD } });
  t.equal(done.status, 200);
  t.equal(done.body.next, 'mfa_enrollment');
  t.type(done.body.challengeToken, 'string');
  t.equal(done.body.expiresIn, 300);
  t.equal(done.headers['cache-control'], 'no-store');
  t.notOk('accessToken' in done.body || 'refreshToken' in done.body, 'no session before MFA');

  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.equal(row.status, 'ACTIVE');
  t.ok(row.emailVerifiedAt);
  t.ok(row.passwordChangedAt);
  t.match(row.passwordHash, /^\$argon2id\$/);
  t.notMatch(row.passwordHash, GOOD_PASSWORD);
  const challenge = await app.ctx.db.flowToken.findFirstOrThrow({ where: { userId: user.id, purpose: 'LOGIN_CHALLENGE' } });
  t.same(challenge.data, { next: 'mfa_enrollment', amr: ['pwd'] });

  const audit = (await auditEvents(app, user.id)).map((e) => e.type);
  t.ok(audit.includes('user.activated'));

  // Single use.
  const again = await request({ url: '/v1/activation', body: { token, password: OTHER_PASSWORD } });
  t.equal(again.status, 410);
  t.equal(again.body.code, 'link_used');
  t.equal(again.body.linkState, 'used', 'the page can tell a used link from a replaced one');
  t.equal((await request({ url: '/v1/activation/inspect', body: { token } })).body.code, 'link_used');

  // And the password works for the login password step.
  const login = await request({ url: '/v1/auth/login', body: { email: 'anna.berg@example.test', password: GOOD_PASSWORD } });
  t.equal(login.status, 200);
  t.equal(login.body.next, 'mfa_enrollment');
  t.notMatch(JSON.stringify(sink.messages), GOOD_PASSWORD, 'passwords are never mailed');
});

t.test('activation links: invalid, expired, replaced by a resent one', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);

  const invalid = await request({ url: '/v1/activation/inspect', body: { token: 'x'.repeat(43) } });
  t.equal(invalid.status, 400);
  t.equal(invalid.body.code, 'link_invalid');
  t.equal((await request({ url: '/v1/activation', body: { token: 'short', password: GOOD_PASSWORD } })).body.code, 'link_invalid');

  const first = await inviteUser(app);
  // Resending voids the older link.
  const { link } = await app.ctx.db.$transaction((tx) =>
    sendActivation(tx, app.ctx, { user: first.user, organizationName: null, actorUserId: null, by: 'cli' }),
  );
  const second = tokenFromLink(link);
  const old = await request({ url: '/v1/activation', body: { token: first.token, password: GOOD_PASSWORD } });
  t.equal(old.status, 410);
  t.equal(old.body.code, 'link_used');
  t.equal(old.body.linkState, 'replaced', 'session 13: "use the newest e-mail", not "already used"');
  t.match(old.body.detail, /newest e-mail/);
  // The invitee cannot ask for a new link themselves: the answer says whom to ask.
  t.same(old.body.contact, { support: app.ctx.config.supportContact, language: 'en', administrators: [] }, 'whom to ask for a new invitation');
  t.match(old.body.detail, `ask ${app.ctx.config.supportContact}`);
  t.equal((await request({ url: '/v1/activation/inspect', body: { token: second } })).status, 200);

  // A reset link is not an activation link.
  const { user: active } = await createUser(app.ctx.db, app);
  await request({ url: '/v1/password/forgot', body: { email: active.email } });
  const resetToken = tokenFromLink((await lastMail(app, { toAddress: active.email })).textBody);
  t.equal((await request({ url: '/v1/activation/inspect', body: { token: resetToken } })).body.code, 'link_invalid');

  clock.advance(7 * 24 * 3600);
  const expired = await request({ url: '/v1/activation/inspect', body: { token: second } });
  t.equal(expired.status, 410);
  t.equal(expired.body.code, 'link_expired');
  t.same(expired.body.contact, { support: app.ctx.config.supportContact, language: 'en', administrators: [] });
  t.equal((await request({ url: '/v1/activation', body: { token: second, password: GOOD_PASSWORD } })).body.code, 'link_expired');
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: first.user.id } })).status, 'INVITED');
});

t.test('two concurrent activations with one link: exactly one wins', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, token } = await inviteUser(app);
  const results = await Promise.all(
    [GOOD_PASSWORD, OTHER_PASSWORD, GOOD_PASSWORD, OTHER_PASSWORD].map((password) =>
      request({ url: '/v1/activation', body: { token, password } }),
    ),
  );
  const statuses = results.map((r) => r.status).sort();
  t.same(statuses, [200, 410, 410, 410]);
  t.ok(results.filter((r) => r.status === 410).every((r) => r.body.code === 'link_used'));
  const challenges = await app.ctx.db.flowToken.count({ where: { userId: user.id, purpose: 'LOGIN_CHALLENGE' } });
  t.equal(challenges, 1, 'one challenge issued');
  t.equal((await auditEvents(app, user.id)).filter((e) => e.type === 'user.activated').length, 1);
  // The winner's password is the one stored.
  const winner = results.findIndex((r) => r.status === 200);
  const password = [GOOD_PASSWORD, OTHER_PASSWORD, GOOD_PASSWORD, OTHER_PASSWORD][winner]!;
  const row = await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } });
  t.ok((await app.ctx.hasher.verify(row.passwordHash!, password)).valid);
});

t.test('a blocked invited account cannot be activated; the holder of the link learns whom to contact', async (t) => {
  const { app } = await buildTestApp(t, { SUPPORT_CONTACT: 'Support <help@example.test>' });
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  await createUser(app.ctx.db, app, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Olga Admin', email: 'olga@example.test' });
  const { user, token } = await inviteUser(app, { organizationId: org.id });
  await app.ctx.db.user.update({ where: { id: user.id }, data: { status: 'BLOCKED', blockedAt: app.ctx.clock.now() } });
  const res = await request({ url: '/v1/activation', body: { token, password: GOOD_PASSWORD } });
  t.equal(res.status, 403);
  t.equal(res.body.code, 'account_blocked');
  t.same(res.body.contact, { support: 'Support <help@example.test>', language: 'en', administrators: [{ name: 'Olga Admin', email: 'olga@example.test' }] });
});

t.test('an invited user blocked through the API learns from the activation link that the account is blocked', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, app, clock } = w;
  const invited = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'new@alpha.test', name: 'New Person' } });
  t.equal(invited.status, 201);
  const token = tokenFromLink((await mailsTo(app, 'new@alpha.test'))[0]!.textBody);
  // Blocking voids the user's pending links (the link no longer works either way).
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${invited.body.id}/block`, token: adminA.token })).status, 200);

  for (const [url, body] of [['/v1/activation/inspect', { token }], ['/v1/activation', { token, password: GOOD_PASSWORD }]] as const) {
    const res = await request({ url, body });
    t.equal(res.status, 403, url);
    t.equal(res.body.code, 'account_blocked');
    t.same(res.body.contact?.administrators, [{ name: 'Alice Admin', email: adminA.user.email }], 'says whom to contact');
  }
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: invited.body.id } })).status, 'BLOCKED', 'nothing changed');

  // A link that was used before the block (an activated colleague's) tells nothing about a later block.
  const other = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'used@alpha.test', name: 'Used Link' } });
  const usedToken = tokenFromLink((await mailsTo(app, 'used@alpha.test'))[0]!.textBody);
  t.equal((await request({ url: '/v1/activation', body: { token: usedToken, password: GOOD_PASSWORD } })).status, 200);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${other.body.id}/block`, token: adminA.token })).status, 200);
  const used = await request({ url: '/v1/activation/inspect', body: { token: usedToken } });
  t.same([used.status, used.body.code], [410, 'link_used'], 'a used link: link_used, not account_blocked');

  // Everyone else gets the answer they got before.
  const unknown = await request({ url: '/v1/activation', body: { token: 'x'.repeat(43), password: GOOD_PASSWORD } });
  t.same([unknown.status, unknown.body.code], [400, 'link_invalid'], 'a token that does not exist');
  clock.advance(7 * 24 * 3600);
  t.equal((await request({ url: '/v1/activation/inspect', body: { token } })).body.code, 'link_used', 'an expired voided link, as before');
  clock.advance(-7 * 24 * 3600);
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${invited.body.id}/unblock`, token: adminA.token })).body.status, 'INVITED');
  t.equal((await request({ url: '/v1/activation/inspect', body: { token } })).body.code, 'link_used', 'unblocked: the voided link stays void');

  // Unblocked, the invited user gets a fresh invitation (not "you can sign in again": there is no password yet).
  const mails = await mailsTo(app, 'new@alpha.test');
  t.same(mails.map((m) => m.template), ['activation', 'account_blocked', 'activation'], 'a new activation mail, no unblocked notice');
  const fresh = tokenFromLink(mails.at(-1)!.textBody);
  t.equal((await request({ url: '/v1/activation/inspect', body: { token: fresh } })).status, 200, 'the new link works');
  const [resent] = await auditOf(app, 'user.activation_resent', invited.body.id);
  t.match(resent, { actorUserId: adminA.user.id, details: { via: 'unblocked' } });
});

t.test('the activation mail states the username and whom to ask for a new link, by who sent it', async (t) => {
  const w = await adminWorld(t, { SUPPORT_CONTACT: 'the e-business team (help@example.test)' });
  const { request, adminA, support, app } = w;
  const activationMail = (address: string) => lastMail(app, { template: 'activation', toAddress: address });
  const askAdministrator = "If it has expired, ask your organisation's administrator to send a new one.";
  const askSupport = 'If it has expired, ask the e-business team (help@example.test) to send a new one.';

  // An administrator invites a member: the address as typed (case kept) is the username, and the administrator sends new links.
  const invited = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: "Ulf.O'Neil@alpha.test", name: 'Ulf User' } });
  t.equal(invited.status, 201);
  const stored = (await app.ctx.db.user.findUniqueOrThrow({ where: { id: invited.body.id } })).email;
  t.equal(stored, "Ulf.O'Neil@alpha.test");
  const byAdmin = await activationMail(stored);
  t.match(byAdmin.textBody, `Your ALSO Webshop username: ${stored}\n`, 'the username, exactly as stored');
  t.match(byAdmin.htmlBody, 'Your ALSO Webshop username: Ulf.O&#39;Neil@alpha.test</p>', 'escaped like every value');
  t.match(byAdmin.textBody, askAdministrator);
  t.notMatch(byAdmin.textBody, 'help@example.test');
  // So does a link the administrator sends again.
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${invited.body.id}/activation-email`, token: adminA.token })).status, 200);
  t.match((await activationMail(stored)).textBody, askAdministrator);

  // Support creates an organisation with its first administrator: there is no administrator to ask yet.
  const created = await request({
    method: 'POST',
    url: '/v1/support/organizations',
    token: support.token,
    body: { customerNumber: 'G-1', name: 'Gamma GmbH', administrator: { email: 'Greta@Gamma.test', name: 'Greta' } },
  });
  t.equal(created.status, 201);
  const bySupport = await activationMail('Greta@Gamma.test');
  t.match(bySupport.textBody, 'Your ALSO Webshop username: Greta@Gamma.test\n');
  t.match(bySupport.textBody, askSupport);
  t.notMatch(bySupport.textBody, 'administrator to send');

  // The operator creates a support user at the command line: only the operators send support staff
  // a new link (resend-support-activation), so they are named, not support (mail review, session 25).
  await createSupportUser(app.ctx, { email: 'Sina@Shop.test', name: 'Sina' }, cliOrigin({}));
  const byCli = await activationMail('Sina@Shop.test');
  t.match(byCli.textBody, 'Your ALSO Webshop username: Sina@Shop.test\n');
  t.match(byCli.textBody, 'If it has expired, ask the ALSO Webshop operations team to send a new one.');
  t.notMatch(byCli.textBody, 'help@example.test');
  t.notMatch(byCli.textBody, 'administrator to send');
});

t.test("an expired invitation names the organisation's administrators to ask for a new one; an activated account's used link names nobody", async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  await createUser(app.ctx.db, app, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Ada Admin', email: 'ada@reseller.test' });
  const invited = await inviteUser(app, { organizationId: org.id });
  const used = await inviteUser(app, { organizationId: org.id });
  t.equal((await request({ url: '/v1/activation', body: { token: used.token, password: GOOD_PASSWORD } })).status, 200);

  clock.advance(7 * 24 * 3600 + 1);
  const expired = await request({ url: '/v1/activation/inspect', body: { token: invited.token } });
  t.equal(expired.body.code, 'link_expired');
  t.same(expired.body.contact, { support: app.ctx.config.supportContact, language: 'en', administrators: [{ name: 'Ada Admin', email: 'ada@reseller.test' }] });
  t.match(expired.body.detail, /Ada Admin <ada@reseller\.test>/);
  const usedAgain = await request({ url: '/v1/activation/inspect', body: { token: used.token } });
  t.equal(usedAgain.body.code, 'link_used');
  t.notOk(usedAgain.body.contact, 'the account is active: nothing more to tell');
});

t.test("an activated account's replaced invitation link names nobody to ask (mutation review, session 22)", async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  await createUser(app.ctx.db, app, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Ada Admin', email: 'ada@reseller.test' });
  const first = await inviteUser(app, { organizationId: org.id });
  const { link } = await app.ctx.db.$transaction((tx) =>
    sendActivation(tx, app.ctx, { user: first.user, organizationName: null, actorUserId: null, by: 'cli' }),
  );
  const before = await request({ url: '/v1/activation/inspect', body: { token: first.token } });
  t.same([before.body.linkState, before.body.contact?.administrators], ['replaced', [{ name: 'Ada Admin', email: 'ada@reseller.test' }]], 'while invited: whom to ask');
  t.equal((await request({ url: '/v1/activation', body: { token: tokenFromLink(link), password: GOOD_PASSWORD } })).status, 200);

  for (const [url, body] of [['/v1/activation/inspect', { token: first.token }], ['/v1/activation', { token: first.token, password: OTHER_PASSWORD }]] as const) {
    const res = await request({ url, body });
    t.same([res.status, res.body.code, res.body.linkState], [410, 'link_used', 'replaced'], url);
    t.notOk(res.body.contact, `${url}: the account is active, nobody to name`);
    t.notMatch(res.body.detail, 'ada@reseller.test', url);
  }
});

t.test("the activation is in the organisation's audit log, naming who sent the invitation (mutation review, session 22)", async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, app } = w;
  const invited = await request({ method: 'POST', url: '/v1/organization/users', token: adminA.token, body: { email: 'ivy@alpha.test', name: 'Ivy Invited' } });
  t.equal(invited.status, 201);
  const token = tokenFromLink((await mailsTo(app, 'ivy@alpha.test'))[0]!.textBody);
  t.equal((await request({ url: '/v1/activation', body: { token, password: GOOD_PASSWORD } })).status, 200);
  const [activated] = await auditOf(app, 'user.activated', invited.body.id);
  t.match(activated, { actorUserId: invited.body.id, organizationId: w.orgA.id, details: { invitedBy: adminA.user.id } });
  const log = await request({ url: `/v1/organization/audit-events?userId=${invited.body.id}`, token: adminA.token });
  t.equal(log.status, 200);
  t.ok(log.body.items.some((e: { type: string }) => e.type === 'user.activated'), 'the administrators see it');
});

t.test('inspect of an activation link that expired while the request waited for a database connection: link_expired (review of session 32)', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { token, expiresAt } = await inviteUser(app, { organizationId: org.id });
  clock.advance((expiresAt.getTime() - clock.now().getTime()) / 1000 - 5);
  const pool = app.ctx.pool;
  const held = await Promise.all(Array.from({ length: pool.options.max ?? 10 }, () => pool.connect()));
  const pending = request({ url: '/v1/activation/inspect', body: { token } });
  while (pool.waitingCount === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  clock.advance(10); // the link expires while the request waits
  for (const client of held) client.release();
  const res = await pending;
  t.equal(res.status, 410, `status (body ${JSON.stringify(res.body)})`);
  t.equal(res.body.code, 'link_expired');
});

t.test('a pending link of another purpose of an invited account is no activation link, at inspect and at activation (review of session 32)', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await inviteUser(app, { organizationId: org.id });
  for (const purpose of ['PASSWORD_RESET', 'MFA_RESET', 'EMAIL_CHANGE', 'LOGIN_CHALLENGE'] as const) {
    const { token } = await app.ctx.db.$transaction((tx) => issueFlowToken(tx, app.ctx.clock, { userId: user.id, purpose, ttlSeconds: 3600 }));
    t.equal((await request({ url: '/v1/activation/inspect', body: { token } })).body.code, 'link_invalid', `${purpose} at inspect`);
    t.equal((await request({ url: '/v1/activation', body: { token, password: GOOD_PASSWORD } })).body.code, 'link_invalid', `${purpose} at activation`);
  }
});
