import t from 'tap';
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createOrganization, createUser, currentTotp, signIn } from '../helpers/factories.js';
import { GOOD_PASSWORD, tokenFromLink } from '../helpers/accounts.js';
import { lastMail } from '../helpers/outbox.js';
import { challengeFor } from '../integration/mfa/helpers.js';

/** Found by session 25's review of time boundaries: what the API and the mails state about an expiry is never more than it enforces. */

t.test("an access token never outlives its session, also when refreshed in the session's last second", async (t) => {
  const { app, clock, config } = await buildTestApp(t, { REFRESH_ABSOLUTE_TTL_SECONDS: '3600', REFRESH_IDLE_TTL_SECONDS: '3600', ACCESS_TOKEN_TTL_SECONDS: '900' });
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: (await createOrganization(app.ctx.db)).id });
  clock.set(Date.UTC(2026, 10, 28, 9, 0, 0, 700));
  const first = await signIn(app, user);
  const session = await app.ctx.db.session.findUniqueOrThrow({ where: { id: decodeJwt(first.accessToken).sid as string } });
  const end = session.expiresAt.getTime();
  // In its last whole second: a token whose exp (whole seconds) is the session's end, rounded down.
  clock.set(end - 1200);
  const refreshed = await request({ url: '/v1/auth/refresh', body: { refreshToken: first.refreshToken } });
  t.equal(refreshed.status, 200);
  t.ok(decodeJwt(refreshed.body.accessToken).exp! * 1000 <= end, "exp is not past the session's end (README: never past the session's end)");
  t.equal(refreshed.body.expiresIn, decodeJwt(refreshed.body.accessToken).exp! - decodeJwt(refreshed.body.accessToken).iat!, 'expiresIn is its lifetime');
  const jwks = createLocalJWKSet((await request({ url: '/.well-known/jwks.json' })).body);
  clock.set(end + 100);
  await t.rejects(jwtVerify(refreshed.body.accessToken, jwks, { issuer: config.jwt.issuer, audience: 'cso', currentDate: clock.now() }), 'an offline verifier refuses it once the session has ended');
  // Within the second the session ends in, no whole second is left for a token: refused as ended.
  clock.set(end - 200);
  const tooLate = await request({ url: '/v1/auth/refresh', body: { refreshToken: refreshed.body.refreshToken } });
  t.same([tooLate.status, tooLate.body.code], [401, 'refresh_token_expired']);
});

t.test('challengeExpiresIn never promises more time than the challenge has', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app, { withTotp: false });
  const challengeToken = await challengeFor(app, user.id, 'mfa_enrollment');
  const flow = await app.ctx.db.flowToken.findFirstOrThrow({ where: { userId: user.id, purpose: 'LOGIN_CHALLENGE', state: 'PENDING' } });
  clock.set(flow.expiresAt.getTime() - 200);
  const started = await request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken } });
  const stated = started.body.challengeExpiresIn as number;
  const secret = new URL(started.body.otpauthUri).searchParams.get('secret')!;
  clock.advance(stated - 0.001); // still inside the time the answer stated
  const verified = await request({ url: '/v1/auth/login/mfa-enrollment/verify', body: { challengeToken, code: currentTotp(app, secret) } });
  t.equal(verified.status, 200, `confirmed ${stated} s (stated) minus 1 ms later; got ${verified.status} ${verified.body.code}`);
});

t.test('an e-mail link works until at least the time its mail states (the minute, rounded down), and not a minute longer', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  clock.set(Date.UTC(2026, 10, 28, 9, 0, 45, 123));
  const { user } = await createUser(app.ctx.db, app);
  await request({ url: '/v1/password/forgot', body: { email: user.email } });
  const mail = await lastMail(app, { template: 'password_reset' });
  t.match(mail.textBody, 'expires on 28 November 2026 at 10:30 CET');
  const token = tokenFromLink(mail.textBody, '/reset-password');
  const flow = await app.ctx.db.flowToken.findFirstOrThrow({ where: { userId: user.id, purpose: 'PASSWORD_RESET' } });
  t.ok(flow.expiresAt.getTime() >= Date.UTC(2026, 10, 28, 9, 30), 'never refused before the stated time');
  t.ok(flow.expiresAt.getTime() < Date.UTC(2026, 10, 28, 9, 31), 'nor accepted a minute after it');
  clock.set(Date.UTC(2026, 10, 28, 9, 29, 59, 999));
  const inTime = await request({ url: '/v1/password/reset', body: { token, password: GOOD_PASSWORD } });
  t.equal(inTime.status, 204, 'accepted just before the stated time');
});

t.test('expiresIn of the token response is the lifetime its claims give (exp - iat), as RFC 6749 expires_in', async (t) => {
  const { sha256Hex } = await import('../../src/lib/tokens.js');
  const SECRET = 'cso-secret-0123456789abcdef';
  const { app, clock } = await buildTestApp(t, { SERVICE_CLIENTS: `cso:${sha256Hex(SECRET)}` });
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: (await createOrganization(app.ctx.db)).id });
  clock.set(Date.UTC(2026, 10, 28, 9, 0, 0, 700));
  const tokens = await signIn(app, user);
  const { iat, exp } = decodeJwt(tokens.accessToken);
  t.equal(tokens.expiresIn, exp! - iat!);
  clock.set(exp! * 1000 - 1);
  const introspect = () =>
    request({ url: '/v1/tokens/introspect', headers: { authorization: `Basic ${Buffer.from(`cso:${SECRET}`).toString('base64')}` }, body: { token: tokens.accessToken } });
  t.equal((await introspect()).body.active, true, 'active until exp');
  clock.set(exp! * 1000);
  t.equal((await introspect()).body.active, false, 'not from exp on');
});
