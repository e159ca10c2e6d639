import t from 'tap';
import type { FastifyInstance } from 'fastify';
import { totpCode } from '../../../src/lib/totp.js';
import { deliverDueMail } from '../../../src/modules/mail/mail.worker.js';
import { buildTestApp } from '../../helpers/app.js';
import { createUser, signIn } from '../../helpers/factories.js';
import { api } from '../../helpers/http.js';
import { startSmtpSink, type SmtpSink } from '../../helpers/smtp-sink.js';

/**
 * The seed journeys of the help page, end to end through HTTP, with every mail going through real
 * SMTP into the sink:
 *  1. support creates an organisation → the administrator activates, enrols TOTP, accepts the
 *     terms, sets preferences → invites a user → the user activates and logs in → loses the phone
 *     → the administrator resets the MFA → the user logs in and enrols again;
 *  2. the support-verified MFA reset: request → confirmation mail → confirm → "set up a new MFA" mail.
 * Audit rows are checked for every step.
 */

const linkToken = (text: string, path: string) => {
  const match = new RegExp(`https://shop\\.example\\.test${path}\\?token=([A-Za-z0-9_%-]+)`).exec(text);
  if (!match) throw new Error(`no ${path} link in: ${text}`);
  return decodeURIComponent(match[1]!);
};

/** Runs the outbox worker once and waits until the sink holds every mail written so far. */
async function deliver(app: FastifyInstance, sink: SmtpSink) {
  await deliverDueMail(app.ctx, app.ctx.mailTransport, 50);
  return sink.waitFor(await app.ctx.db.mailOutbox.count());
}

/** The mail to `address` whose subject contains `subject` (delivery order is not guaranteed). */
function mailTo(sink: SmtpSink, address: string, subject: string) {
  const mail = sink.to(address).find((m) => m.subject.includes(subject));
  if (!mail) throw new Error(`no mail "${subject}" to ${address}: ${sink.to(address).map((m) => m.subject).join(' | ')}`);
  return mail;
}

t.test('seed journey: support → admin → user → lost phone → admin reset → re-enrolment', async (t) => {
  const sink = await startSmtpSink(t);
  const { app, clock } = await buildTestApp(t, { SMTP_URL: sink.url });
  const request = api(app);
  const now = () => Math.floor(clock.now().getTime() / 1000);
  const audit = async (type: string, subjectUserId?: string) =>
    app.ctx.db.auditEvent.findMany({ where: { type, ...(subjectUserId ? { subjectUserId } : {}) }, orderBy: { createdAt: 'asc' } });

  const support = await createUser(app.ctx.db, app, { roles: ['SUPPORT'], name: 'Sam Support' });
  const supportToken = (await signIn(app, support.user)).accessToken;

  // 1. Support creates the organisation with its first administrator.
  const created = await request({
    method: 'POST',
    url: '/v1/support/organizations',
    token: supportToken,
    body: { customerNumber: '4711', name: 'Müller Elektro GmbH', administrator: { email: 'Anna.Admin@mueller.test', name: 'Anna Admin' } },
  });
  t.equal(created.status, 201);
  const orgId = created.body.organization.id as string;
  const adminId = created.body.administrator.id as string;
  t.equal((await audit('organization.created'))[0]?.actorUserId, support.user.id);

  // 2. The administrator activates from the e-mail, enrols TOTP, accepts terms, sets preferences.
  await deliver(app, sink);
  const activationMail = mailTo(sink, 'anna.admin@mueller.test', 'activate your account');
  t.match(activationMail.text, 'Müller Elektro GmbH');
  const inspect = await request({ method: 'POST', url: '/v1/activation/inspect', body: { token: linkToken(activationMail.text, '/activate') } });
  t.match(inspect.body, { email: 'Anna.Admin@mueller.test', organizationName: 'Müller Elektro GmbH' });
  const adminPassword = 'violet tram crosses seventeen bridges';
  const activated = await request({
    method: 'POST',
    url: '/v1/activation',
    body: { token: linkToken(activationMail.text, '/activate'), password: adminPassword },
  });
  t.equal(activated.status, 200);
  t.equal(activated.body.next, 'mfa_enrollment');
  const enrol = async (challengeToken: string) => {
    const started = await request({ method: 'POST', url: '/v1/auth/login/mfa-enrollment', body: { challengeToken } });
    t.equal(started.status, 200);
    t.match(started.body.otpauthUri, /^otpauth:\/\/totp\//);
    t.match(started.body.qrCode.svg, '<svg');
    const secret = started.body.secret as string;
    const verified = await request({
      method: 'POST',
      url: '/v1/auth/login/mfa-enrollment/verify',
      body: { challengeToken, code: totpCode(secret, now()) },
    });
    t.equal(verified.status, 200);
    t.equal(verified.body.recoveryCodes.length, 10);
    return { secret, tokens: verified.body };
  };
  const adminEnrolment = await enrol(activated.body.challengeToken);
  const adminToken = adminEnrolment.tokens.accessToken as string;
  t.same(adminEnrolment.tokens.requiredActions, ['accept_terms', 'set_preferences']);

  const me = await request({ url: '/v1/me', token: adminToken });
  const terms = await request({
    method: 'POST',
    url: '/v1/me/terms',
    token: adminToken,
    body: { version: me.body.terms.currentVersion, email: 'anna.admin@MUELLER.test' },
  });
  t.equal(terms.status, 200);
  const prefs = await request({ method: 'PATCH', url: '/v1/me/preferences', token: adminToken, body: { newsletterOptIn: false } });
  t.equal(prefs.status, 200);
  t.same(prefs.body.requiredActions, [], 'nothing left to do');

  // 3. The administrator invites a user.
  const invited = await request({
    method: 'POST',
    url: '/v1/organization/users',
    token: adminToken,
    body: { email: 'ulf.user@mueller.test', name: 'Ulf User' },
  });
  t.equal(invited.status, 201);
  const userId = invited.body.id as string;

  // 4. The user activates, enrols and later logs in with password + code.
  await deliver(app, sink);
  const userActivation = mailTo(sink, 'ulf.user@mueller.test', 'activate your account');
  const userPassword = 'quiet orange kettle hums at dawn';
  const userActivated = await request({
    method: 'POST',
    url: '/v1/activation',
    body: { token: linkToken(userActivation.text, '/activate'), password: userPassword },
  });
  clock.advance(30);
  const userEnrolment = await enrol(userActivated.body.challengeToken);

  clock.advance(30);
  const login = await request({ method: 'POST', url: '/v1/auth/login', body: { email: 'ulf.user@mueller.test', password: userPassword } });
  t.equal(login.body.next, 'mfa');
  const loggedIn = await request({
    method: 'POST',
    url: '/v1/auth/login/mfa',
    body: { challengeToken: login.body.challengeToken, code: totpCode(userEnrolment.secret, now()) },
  });
  t.equal(loggedIn.status, 200);
  const userRefresh = loggedIn.body.refreshToken as string;

  // 5. The user loses the phone; the administrator resets the MFA.
  clock.advance(30);
  const list = await request({ url: '/v1/organization/users?mfa=enrolled', token: adminToken });
  t.same(list.body.items.map((u: { name: string }) => u.name).sort(), ['Anna Admin', 'Ulf User']);
  const reset = await request({ method: 'POST', url: `/v1/organization/users/${userId}/mfa-reset`, token: adminToken });
  t.equal(reset.status, 200);
  t.equal(reset.body.mfa.enrolled, false);
  const refresh = await request({ method: 'POST', url: '/v1/auth/refresh', body: { refreshToken: userRefresh } });
  t.equal(refresh.status, 401, "the user's sessions ended");
  await deliver(app, sink);
  const removedMail = mailTo(sink, 'ulf.user@mueller.test', '2-step login was removed');
  t.match(removedMail.text, 'Anna Admin', 'the mail names who did it');

  // 6. The user logs in again and sets up a new authenticator.
  clock.advance(30);
  const again = await request({ method: 'POST', url: '/v1/auth/login', body: { email: 'ulf.user@mueller.test', password: userPassword } });
  t.equal(again.body.next, 'mfa_enrollment');
  const reEnrolment = await enrol(again.body.challengeToken);
  t.not(reEnrolment.secret, userEnrolment.secret, 'a new secret');
  const old = await request({ method: 'POST', url: '/v1/auth/login', body: { email: 'ulf.user@mueller.test', password: userPassword } });
  clock.advance(30);
  const oldPhone = await request({
    method: 'POST',
    url: '/v1/auth/login/mfa',
    body: { challengeToken: old.body.challengeToken, code: totpCode(userEnrolment.secret, now()) },
  });
  t.equal(oldPhone.status, 400, 'the lost phone no longer works');

  // Audit rows for every step, with actor, subject and organisation.
  const expectations: [string, string | null, string][] = [
    ['organization.created', support.user.id, ''],
    ['user.invited', support.user.id, adminId],
    ['organization.administrator_appointed', support.user.id, adminId],
    ['user.activated', null, adminId],
    ['mfa.enrolled', null, adminId],
    ['user.terms_accepted', adminId, adminId],
    ['user.preferences_changed', adminId, adminId],
    ['user.invited', adminId, userId],
    ['user.activated', null, userId],
    ['mfa.enrolled', null, userId],
    ['login.password_succeeded', null, userId],
    ['login.mfa_succeeded', null, userId],
    ['mfa.reset_by_admin', adminId, userId],
  ];
  for (const [type, actor, subject] of expectations) {
    const rows = await audit(type, subject || undefined);
    t.ok(rows.length >= 1, `audit ${type} for ${subject || 'the organisation'}`);
    const row = rows[0]!;
    if (actor) t.equal(row.actorUserId, actor, `${type}: actor`);
    t.equal(row.organizationId, orgId, `${type}: organisation`);
    t.ok(row.createdAt instanceof Date);
  }
  t.equal((await audit('mfa.enrolled', userId)).length, 2, 'enrolled twice');
  const orgLog = await request({ url: '/v1/organization/audit-events?limit=100', token: adminToken });
  t.ok(orgLog.body.items.some((e: { type: string }) => e.type === 'mfa.reset_by_admin'), 'the administrator can read it');
});

t.test('seed journey: support-verified MFA reset with both mails through SMTP', async (t) => {
  const sink = await startSmtpSink(t);
  const { app, clock } = await buildTestApp(t, { SMTP_URL: sink.url });
  const request = api(app);
  const now = () => Math.floor(clock.now().getTime() / 1000);
  const org = await app.ctx.db.organization.create({ data: { customerNumber: 'V-1', name: 'Verified GmbH' } });
  const support = await createUser(app.ctx.db, app, { roles: ['SUPPORT'], name: 'Sam Support' });
  await createUser(app.ctx.db, app, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'] });
  const user = await createUser(app.ctx.db, app, { organizationId: org.id, email: 'vera@verified.test', name: 'Vera' });
  const supportToken = (await signIn(app, support.user)).accessToken;

  // Support finds the user by e-mail and starts the verified reset.
  const found = await request({ url: '/v1/support/users?email=VERA@verified.test', token: supportToken });
  const id = found.body.items[0].id as string;
  const started = await request({ method: 'POST', url: `/v1/support/users/${id}/mfa-reset-request`, token: supportToken });
  t.equal(started.status, 202);
  await deliver(app, sink);
  const confirmMail = mailTo(sink, 'vera@verified.test', 'confirm the reset of your 2-step login');

  const token = /\?token=([A-Za-z0-9_%-]+)/.exec(confirmMail.text)![1]!;
  const confirmed = await request({ method: 'POST', url: '/v1/mfa-reset/confirm', body: { token: decodeURIComponent(token) } });
  t.equal(confirmed.status, 200);
  await deliver(app, sink);
  const doneMail = mailTo(sink, 'vera@verified.test', 'you can now set up a new 2-step login');
  t.same(doneMail.to.map((a) => a.toLowerCase()), ['vera@verified.test']);
  t.equal((await request({ url: `/v1/support/users/${id}/mfa-reset-request`, token: supportToken })).body.state, 'confirmed');

  const login = await request({ method: 'POST', url: '/v1/auth/login', body: { email: 'vera@verified.test', password: user.password } });
  t.equal(login.body.next, 'mfa_enrollment');
  const started2 = await request({ method: 'POST', url: '/v1/auth/login/mfa-enrollment', body: { challengeToken: login.body.challengeToken } });
  const verified = await request({
    method: 'POST',
    url: '/v1/auth/login/mfa-enrollment/verify',
    body: { challengeToken: login.body.challengeToken, code: totpCode(started2.body.secret, now()) },
  });
  t.equal(verified.status, 200, 'a new authenticator is set up');

  const requested = await app.ctx.db.auditEvent.findFirstOrThrow({ where: { type: 'mfa.reset_requested', subjectUserId: id } });
  t.match(requested, { actorUserId: support.user.id, organizationId: org.id });
  const done = await app.ctx.db.auditEvent.findFirstOrThrow({ where: { type: 'mfa.reset_confirmed', subjectUserId: id } });
  t.match(done, { organizationId: org.id, details: { requestedById: support.user.id } });
});
