import t from 'tap';
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';
import { sha256Hex } from '../../src/lib/tokens.js';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createOrganization, createUser, currentTotp, signIn } from '../helpers/factories.js';
import { secretOf } from '../integration/mfa/helpers.js';

/**
 * Found by session 14's review of sessions and tokens: what apps verifying offline (CSO 3.0 with the
 * JWKS) and introspection are told must agree with the session.
 *  - security.md item 18: an access token issued shortly before its session's absolute end lived up
 *    to ACCESS_TOKEN_TTL_SECONDS past it, and offline verifiers have only `exp` to go by.
 *  - A restricted token (audience: this service alone, after a self-service MFA removal) was
 *    introspected active once the session had enrolled again, while JWKS verifiers refuse it.
 */

const SECRET = 'cso-secret-0123456789abcdef';
const basic = `Basic ${Buffer.from(`cso:${SECRET}`).toString('base64')}`;

t.test('an access token never outlives its session: exp and expiresIn stop at the absolute end', async (t) => {
  const { app, clock, config } = await buildTestApp(t, {
    SERVICE_CLIENTS: `cso:${sha256Hex(SECRET)}`,
    REFRESH_ABSOLUTE_TTL_SECONDS: '3600',
    REFRESH_IDLE_TTL_SECONDS: '3600',
    ACCESS_TOKEN_TTL_SECONDS: '900',
  });
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: (await createOrganization(app.ctx.db)).id });
  const first = await signIn(app, user);
  t.equal(first.expiresIn, 900, 'far from the end: the full lifetime');
  const session = await app.ctx.db.session.findUniqueOrThrow({ where: { id: decodeJwt(first.accessToken).sid as string } });
  const sessionEnd = Math.floor(session.expiresAt.getTime() / 1000);

  clock.advance(3500); // 100 s before the absolute end
  const refreshed = await request({ url: '/v1/auth/refresh', body: { refreshToken: first.refreshToken } });
  t.equal(refreshed.status, 200);
  t.equal(decodeJwt(refreshed.body.accessToken).exp, sessionEnd, 'exp is the session’s end');
  t.equal(refreshed.body.expiresIn, 100, 'and expiresIn says so');
  t.equal(refreshed.body.refreshExpiresIn, 100);

  const jwks = createLocalJWKSet((await request({ url: '/.well-known/jwks.json' })).body);
  const verify = (at: Date) => jwtVerify(refreshed.body.accessToken, jwks, { issuer: config.jwt.issuer, audience: 'cso', currentDate: at });
  t.ok(await verify(clock.now()), 'CSO accepts it while the session lives');
  clock.advance(101);
  await t.rejects(verify(clock.now()), { code: 'ERR_JWT_EXPIRED' }, 'and refuses it once the session has ended, like this service');
  t.equal((await request({ url: '/v1/me', token: refreshed.body.accessToken })).status, 401);
});

t.test('a restricted token (this service’s audience only) is introspected inactive, also once its session has enrolled again', async (t) => {
  const { app, config } = await buildTestApp(t, { SERVICE_CLIENTS: `cso:${sha256Hex(SECRET)}` });
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app, { organizationId: (await createOrganization(app.ctx.db)).id });
  const session = await signIn(app, user);
  t.equal((await request({ method: 'DELETE', url: '/v1/me/mfa', token: session.accessToken, body: { password } })).status, 204);
  const rotated = (await request({ url: '/v1/auth/refresh', body: { refreshToken: session.refreshToken } })).body;
  const restricted = rotated.accessToken as string;
  t.same(decodeJwt(restricted).aud, [config.jwt.issuer]);
  const introspect = async (token: string) => (await request({ url: '/v1/tokens/introspect', headers: { authorization: basic }, body: { token } })).body;
  t.same(await introspect(restricted), { active: false }, 'before re-enrolment');

  const started = await request({ method: 'POST', url: '/v1/me/mfa/totp', token: restricted });
  const verified = await request({ url: '/v1/me/mfa/totp/verify', token: restricted, body: { code: currentTotp(app, secretOf(started.body.otpauthUri)) } });
  t.equal(verified.status, 200);
  t.same(await introspect(restricted), { active: false }, 'after re-enrolment: still no token for other apps');
  const full = (await request({ url: '/v1/auth/refresh', body: { refreshToken: rotated.refreshToken } })).body;
  t.equal((await introspect(full.accessToken)).active, true, 'the next refresh’s token is');
});
