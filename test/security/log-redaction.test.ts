import type { FastifyInstance } from 'fastify';
import t, { type Test } from 'tap';
import { sha256Hex } from '../../src/lib/tokens.js';
import { totpCode } from '../../src/lib/totp.js';
import { GOOD_PASSWORD, OTHER_PASSWORD, deliverMail, tokenFromLink } from '../helpers/accounts.js';
import { buildTestApp } from '../helpers/app.js';
import type { FakeClock } from '../helpers/clock.js';
import { createOrganization, createUser, signIn } from '../helpers/factories.js';
import { api } from '../helpers/http.js';
import { startSmtpSink, type SmtpSink } from '../helpers/smtp-sink.js';

/**
 * Logs never contain passwords, codes, secrets, tokens or e-mail-link URLs (security.md item 27,
 * issue 2 item 10). The app runs at LOG_LEVEL=trace (everything it would ever log) with real SMTP,
 * and a whole account's life goes through HTTP — every request carrying an Authorization header
 * and a Cookie: invitation, activation, MFA enrolment, login with a code, refresh, introspection
 * with HTTP Basic, password change, forgotten password and reset, login with a recovery code,
 * removal and re-enrolment of MFA, logout. Every secret value the journey saw (sent or received,
 * including the links and tokens from the delivered mails and the TOTP secrets) is then searched
 * for in every captured log line.
 *
 * The scanner is proven able to fail: the same journey against an app whose logger serialises
 * request headers and bodies must be caught.
 */

const CLIENT_ID = 'cso';
const CLIENT_SECRET = 'cso-client-secret-Zq8w3e5r7t9y';
const ORG_NAME = 'Meadow Trading GmbH';

const PASSWORDS = {
  initial: 'Mossy granite whistles 4711',
  wrong: 'Wrong guess of a password 0815',
  changed: GOOD_PASSWORD,
  reset: OTHER_PASSWORD,
  rejected: 'password123456', // refused by the policy (common), still a password typed by a user
};

type Journey = { secrets: Map<string, string>; requests: number };

/** The complete account journey through HTTP. Returns every secret it handled, by name. */
async function journey(t: Test, app: FastifyInstance, clock: FakeClock, sink: SmtpSink): Promise<Journey> {
  const secrets = new Map<string, string>();
  const keep = (name: string, value: unknown) => {
    if (typeof value !== 'string' || value.length < 6) throw new Error(`secret ${name} missing or too short: ${String(value)}`);
    secrets.set(name, value);
    return value;
  };
  const cookie = keep('cookie', 'sid=cookie-secret-b7f3a9d1e5c2; theme=dark');
  const basic = keep('basic authorization', `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`);
  keep('client secret', CLIENT_SECRET);
  for (const [name, value] of Object.entries(PASSWORDS)) keep(`password ${name}`, value);

  const raw = api(app);
  let requests = 0;
  /** Every request carries a cookie, and an Authorization header (a bearer token where one is known). */
  const request: typeof raw = (options) => {
    requests++;
    const headers: Record<string, string> = { cookie, 'user-agent': 'log-redaction-test', ...options.headers };
    if (!options.token && !headers.authorization) headers.authorization = `Bearer ${secrets.get('access token 1') ?? 'bearer-placeholder-1234567890'}`;
    return raw({ ...options, headers });
  };
  const code = (secret: string) => {
    clock.advance(30); // each code once: the next step gets the next one
    return keep(`totp code ${secrets.size}`, totpCode(secret, Math.floor(clock.now().getTime() / 1000)));
  };
  const deliver = async () => {
    await deliverMail(app);
    await sink.waitFor(await app.ctx.db.mailOutbox.count({ where: { sentAt: { not: null } } }));
  };
  const lastMail = (subject: string) => {
    const mail = [...sink.messages].reverse().find((m) => m.subject.includes(subject));
    if (!mail) throw new Error(`no mail "${subject}"`);
    return mail;
  };

  // An administrator (signed in directly: not what this test is about) invites the user.
  const org = await createOrganization(app.ctx.db, { name: ORG_NAME });
  const admin = await createUser(app.ctx.db, app, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'], termsAccepted: true, preferencesSet: true });
  const adminToken = keep('admin access token', (await signIn(app, admin.user)).accessToken);
  const email = 'lena.logtest@meadow.test';
  const invited = await request({ url: '/v1/organization/users', token: adminToken, body: { email, name: 'Lena Logtest' } });
  t.equal(invited.status, 201, 'invited');
  await deliver();
  const activationMail = lastMail('activate your account');
  const activationToken = keep('activation token', tokenFromLink(activationMail.text, '/activate'));
  keep('activation link', /https:\/\/\S+\/activate\?token=[^\s"<>]+/.exec(activationMail.text)![0]);
  keep('activation query', `token=${activationToken}`);

  // Activation → first-login MFA enrolment (secret, otpauth URI, QR) → verify → tokens + recovery codes.
  t.equal((await request({ url: '/v1/activation/inspect', body: { token: activationToken } })).status, 200, 'link inspected');
  const rejected = await request({ url: '/v1/activation', body: { token: activationToken, password: PASSWORDS.rejected } });
  t.equal(rejected.status, 422, 'a common password is refused');
  const activated = await request({ url: '/v1/activation', body: { token: activationToken, password: PASSWORDS.initial } });
  t.equal(activated.status, 200, 'activated');
  const challenge1 = keep('challenge token 1', activated.body.challengeToken);
  const enrolment = await request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken: challenge1 } });
  t.equal(enrolment.status, 200, 'enrolment started');
  const totpSecret = keep('totp secret', enrolment.body.secret);
  keep('otpauth uri', enrolment.body.otpauthUri);
  keep('qr data url', enrolment.body.qrCode.pngDataUrl.slice(100, 200));
  const badCode = await request({ url: '/v1/auth/login/mfa-enrollment/verify', body: { challengeToken: challenge1, code: '000000' } });
  t.equal(badCode.status, 400, 'a wrong code is refused');
  const enrolled = await request({ url: '/v1/auth/login/mfa-enrollment/verify', body: { challengeToken: challenge1, code: code(totpSecret) } });
  t.equal(enrolled.status, 200, 'enrolled');
  keep('access token 1', enrolled.body.accessToken);
  keep('refresh token 1', enrolled.body.refreshToken);
  const recoveryCodes = enrolled.body.recoveryCodes as string[];
  recoveryCodes.forEach((c, i) => keep(`recovery code ${i}`, c));

  // Login: a wrong password, then password + code.
  t.equal((await request({ url: '/v1/auth/login', body: { email, password: PASSWORDS.wrong } })).status, 401, 'wrong password');
  const login = await request({ url: '/v1/auth/login', body: { email, password: PASSWORDS.initial } });
  t.equal(login.body.next, 'mfa');
  const challenge2 = keep('challenge token 2', login.body.challengeToken);
  const loggedIn = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: challenge2, code: code(totpSecret) } });
  t.equal(loggedIn.status, 200, 'logged in with a code');
  const access2 = keep('access token 2', loggedIn.body.accessToken);
  const refresh2 = keep('refresh token 2', loggedIn.body.refreshToken);

  // Refresh, introspection with HTTP Basic, /me, a token in the query string (refused).
  const refreshed = await request({ url: '/v1/auth/refresh', body: { refreshToken: refresh2 } });
  t.equal(refreshed.status, 200, 'refreshed');
  const access3 = keep('access token 3', refreshed.body.accessToken);
  keep('refresh token 3', refreshed.body.refreshToken);
  t.equal((await request({ url: '/v1/auth/refresh', body: { refreshToken: 'r'.repeat(43) } })).status, 401, 'unknown refresh token');
  const introspected = await request({ url: '/v1/tokens/introspect', headers: { authorization: basic }, body: { token: access3 } });
  t.equal(introspected.body.active, true, 'introspected');
  const form = await raw({
    method: 'POST',
    url: '/v1/tokens/introspect',
    headers: { authorization: basic, cookie, 'content-type': 'application/x-www-form-urlencoded' },
    payload: `token=${encodeURIComponent(access2)}&token_type_hint=access_token`,
  });
  requests++;
  t.equal(form.status, 200, 'introspected (form-encoded)');
  t.equal((await request({ url: '/v1/me', token: access3 })).status, 200, '/me');
  const inQuery = await request({ url: `/v1/me?access_token=${encodeURIComponent(access3)}`, token: access3 });
  t.equal(inQuery.status, 401, 'a token in the URL is refused');

  // Password change (a wrong current password first).
  const wrongCurrent = await request({ method: 'PUT', url: '/v1/me/password', token: access3, body: { currentPassword: PASSWORDS.wrong, newPassword: PASSWORDS.changed } });
  t.equal(wrongCurrent.status, 403, 'wrong current password');
  const changed = await request({ method: 'PUT', url: '/v1/me/password', token: access3, body: { currentPassword: PASSWORDS.initial, newPassword: PASSWORDS.changed } });
  t.equal(changed.status, 204, 'password changed');

  // Forgotten password → reset link from the mail → reset.
  t.equal((await request({ url: '/v1/password/forgot', body: { email } })).status, 202, 'reset requested');
  await deliver();
  const resetMail = lastMail('reset your password');
  const resetToken = keep('reset token', tokenFromLink(resetMail.text, '/reset-password'));
  keep('reset link', /https:\/\/\S+\/reset-password\?token=[^\s"<>]+/.exec(resetMail.text)![0]);
  t.equal((await request({ url: '/v1/password/reset', body: { token: resetToken, password: PASSWORDS.reset } })).status, 204, 'reset');

  // Login with a recovery code instead of the phone.
  const login3 = await request({ url: '/v1/auth/login', body: { email, password: PASSWORDS.reset } });
  const challenge3 = keep('challenge token 3', login3.body.challengeToken);
  const badRecovery = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: challenge3, recoveryCode: 'zzzz-zzzz-zzzz' } });
  t.equal(badRecovery.status, 400, 'unknown recovery code');
  const recovered = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: challenge3, recoveryCode: recoveryCodes[0] } });
  t.equal(recovered.status, 200, 'logged in with a recovery code');
  const access4 = keep('access token 4', recovered.body.accessToken);
  keep('refresh token 4', recovered.body.refreshToken);

  // New phone: remove MFA (password), enrol again (new secret), new recovery codes, logout.
  t.equal((await request({ method: 'DELETE', url: '/v1/me/mfa', token: access4, body: { password: PASSWORDS.reset } })).status, 204, 'MFA removed');
  const again = await request({ url: '/v1/me/mfa/totp', token: access4, body: undefined, method: 'POST' });
  t.equal(again.status, 200, 'new enrolment');
  const totpSecret2 = keep('totp secret 2', again.body.secret);
  keep('otpauth uri 2', again.body.otpauthUri);
  const verified = await request({ url: '/v1/me/mfa/totp/verify', token: access4, body: { code: code(totpSecret2) } });
  t.equal(verified.status, 200, 'new factor confirmed');
  (verified.body.recoveryCodes as string[]).forEach((c, i) => keep(`new recovery code ${i}`, c));
  const regenerated = await request({ url: '/v1/me/mfa/recovery-codes', token: access4, body: { password: PASSWORDS.reset } });
  t.equal(regenerated.status, 200, 'recovery codes regenerated');
  (regenerated.body.recoveryCodes as string[]).forEach((c, i) => keep(`regenerated recovery code ${i}`, c));
  t.equal((await request({ method: 'POST', url: '/v1/auth/logout', token: access4 })).status, 204, 'logged out');

  await deliver(); // password changed, MFA removed, ... notifications: through SMTP too
  t.ok(sink.messages.length >= 5, `mails went through SMTP (${sink.messages.length})`);
  // Other forms a secret could take in a log line.
  for (const [name, value] of [...secrets]) {
    if (name.startsWith('access token') || name.startsWith('admin access')) keep(`${name} signature`, value.split('.')[2]!);
    if (name.startsWith('password')) keep(`${name} (JSON)`, JSON.stringify(value).slice(1, -1));
  }
  keep('token hash', sha256Hex(resetToken)); // what the database stores must not reach logs either
  return { secrets, requests };
}

/** The secrets found in the log lines, with the first line that has each. */
function leaks(logs: string[], secrets: Map<string, string>): { name: string; line: string }[] {
  const found: { name: string; line: string }[] = [];
  for (const [name, value] of secrets) {
    // Digits-only values (TOTP codes) must stand alone: not inside a timestamp or a duration.
    const digits = /^[0-9]+$/.test(value) ? new RegExp(`(?<![0-9.])${value}(?![0-9])`) : undefined;
    const variants = [value, encodeURIComponent(value)];
    const line = logs.find((l) => (digits ? digits.test(l) : variants.some((v) => l.includes(v))));
    if (line) found.push({ name, line: line.slice(0, 300) });
  }
  return found;
}

t.test('a whole account journey at LOG_LEVEL=trace leaves no password, code, token, secret or link in the logs', async (t) => {
  const sink = await startSmtpSink(t);
  const { app, clock, logs } = await buildTestApp(t, {
    LOG_LEVEL: 'trace',
    SMTP_URL: sink.url,
    SERVICE_CLIENTS: `${CLIENT_ID}:${sha256Hex(CLIENT_SECRET)}`,
  });
  const { secrets, requests } = await journey(t, app, clock, sink);

  // The logs really cover the journey: otherwise "nothing found" would prove nothing.
  const parsed = logs.map((l) => JSON.parse(l) as { level: number; msg?: string; req?: { path?: string } });
  const incoming = parsed.filter((l) => l.msg === 'incoming request');
  t.ok(incoming.length >= requests, `every request was logged (${incoming.length} of ${requests})`);
  for (const path of ['/v1/activation', '/v1/auth/login/mfa', '/v1/auth/refresh', '/v1/tokens/introspect', '/v1/password/reset', '/v1/me/password']) {
    t.ok(incoming.some((l) => l.req?.path === path), `${path} is in the logs`);
  }
  t.ok(parsed.some((l) => l.msg === 'request completed'), 'responses are logged');
  t.ok(secrets.size >= 50, `${secrets.size} secret values collected`);

  const found = leaks(logs, secrets);
  t.same(found, [], 'no secret value in any log line');
  t.notMatch(logs.join('\n'), /[?&](token|access_token)=/, 'no URL with a token in it');
  t.notMatch(logs.join('\n'), /otpauth:\/\//, 'no otpauth URI');
});

t.test('the scanner catches a logger that serialises request headers and bodies', async (t) => {
  // Same app and journey, but with the mistake this suite guards against: a logger that writes
  // the request's headers and the parsed body (as a string, which no redaction path can reach).
  const sink = await startSmtpSink(t);
  const { app, clock, logs } = await buildTestApp(
    t,
    { LOG_LEVEL: 'trace', SMTP_URL: sink.url, SERVICE_CLIENTS: `${CLIENT_ID}:${sha256Hex(CLIENT_SECRET)}` },
    {
      loggerOptions: (options) => ({
        ...options,
        serializers: {
          req: (req: { method: string; url: string; headers: Record<string, unknown> }) => ({ method: req.method, url: req.url, headers: JSON.stringify(req.headers) }),
          res: (reply: { statusCode: number; request?: { body?: unknown } }) => ({ statusCode: reply.statusCode, body: JSON.stringify(reply.request?.body ?? null) }),
        },
      }),
    },
  );
  const { secrets } = await journey(t, app, clock, sink);
  const found = new Set(leaks(logs, secrets).map((l) => l.name));
  for (const name of ['cookie', 'basic authorization', 'password initial', 'password wrong', 'activation token', 'challenge token 1', 'refresh token 2', 'recovery code 0', 'reset token', 'access token 3']) {
    t.ok(found.has(name), `the scanner finds the leaked ${name}`);
  }
});
