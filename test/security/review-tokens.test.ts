import t from 'tap';
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createOrganization, createUser, currentTotp, signIn } from '../helpers/factories.js';
import { secretOf } from '../integration/mfa/helpers.js';

/**
 * Security review, MFA bypass for relying parties (product rule 1, security.md item 17): after a
 * self-service MFA removal the caller's session stays, restricted to enrolling again in THIS service.
 * Its refresh token must not keep minting access tokens that other apps (CSO 3.0 verifies offline
 * with the JWKS, aud "cso") accept as a full sign-in for the rest of the session's 7 days.
 */

t.test('a session without an active factor refreshes into tokens only this service accepts', async (t) => {
  const { app, config } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user, password } = await createUser(app.ctx.db, app, { organizationId: org.id });
  const session = await signIn(app, user);
  const jwks = createLocalJWKSet((await request({ url: '/.well-known/jwks.json' })).body);
  const verifyAs = (token: string, audience: string) => jwtVerify(token, jwks, { issuer: config.jwt.issuer, audience });

  t.same(decodeJwt(session.accessToken).aud, [...config.jwt.audiences], 'a full sign-in is for every configured audience');

  t.equal((await request({ method: 'DELETE', url: '/v1/me/mfa', token: session.accessToken, body: { password } })).status, 204);
  const refreshed = await request({ url: '/v1/auth/refresh', body: { refreshToken: session.refreshToken } });
  t.equal(refreshed.status, 200, 'the session itself lives on (to enrol again)');
  t.same(refreshed.body.requiredActions.slice(0, 1), ['mfa_enrollment']);
  const restricted = refreshed.body.accessToken as string;
  t.same(decodeJwt(restricted).aud, [config.jwt.issuer], 'only our own audience');
  for (const audience of config.jwt.audiences) {
    await t.rejects(verifyAs(restricted, audience), `an offline verifier for "${audience}" refuses it`);
  }

  // In this service it still does what the restricted session may do: enrol again.
  t.equal((await request({ url: '/v1/me', token: restricted })).status, 200);
  t.equal((await request({ url: '/v1/me/sessions', token: restricted })).body.code, 'mfa_enrollment_required');
  const started = await request({ method: 'POST', url: '/v1/me/mfa/totp', token: restricted });
  t.equal(started.status, 200);
  const code = currentTotp(app, secretOf(started.body.otpauthUri));
  t.equal((await request({ url: '/v1/me/mfa/totp/verify', token: restricted, body: { code } })).status, 200);

  // Enrolled again: the next refresh is a full sign-in once more.
  const whole = await request({ url: '/v1/auth/refresh', body: { refreshToken: refreshed.body.refreshToken } });
  t.equal(whole.status, 200);
  t.same(decodeJwt(whole.body.accessToken).aud, [...config.jwt.audiences]);
  await verifyAs(whole.body.accessToken, 'cso');
  t.pass('CSO accepts the token of the re-enrolled session');
});

t.test('kid/jwk/jku header injection: never trusted, never a 5xx', async (t) => {
  const { app, config } = await buildTestApp(t);
  const request = api(app);
  const { generateKeyPair, exportJWK, SignJWT } = await import('jose');
  const { user } = await createUser(app.ctx.db, app);
  const session = await signIn(app, user);
  const claims = decodeJwt(session.accessToken);
  const attacker = await generateKeyPair('EdDSA', { extractable: true });
  const attackerJwk = await exportJWK(attacker.publicKey);
  const forge = (header: Record<string, unknown>) =>
    new SignJWT({ ...claims, roles: ['USER', 'CUSTOMER_ADMIN', 'SUPPORT'] })
      .setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt', ...header })
      .sign(attacker.privateKey);
  const kid = app.ctx.signer.signingKey().kid;
  const cases: [string, Record<string, unknown>][] = [
    ['embedded jwk with our kid', { kid, jwk: attackerJwk }],
    ['embedded jwk, no kid', { jwk: attackerJwk }],
    ['jku to an attacker JWKS', { kid, jku: 'https://evil.example/jwks.json' }],
    ['x5u', { kid, x5u: 'https://evil.example/cert.pem' }],
    ['kid path traversal', { kid: '../../../../dev/null' }],
    ['kid SQL', { kid: "' OR '1'='1" }],
    ['kid object', { kid: { $ne: null } }],
    ['kid __proto__', { kid: '__proto__' }],
    ['kid very long', { kid: 'k'.repeat(2000) }],
  ];
  for (const [label, header] of cases) {
    const res = await request({ url: '/v1/me', token: await forge(header) });
    t.equal(res.status, 401, `${label}: 401`);
    t.equal(res.body.code, 'token_invalid', `${label}: token_invalid`);
  }
  t.equal((await request({ url: '/v1/me', token: session.accessToken })).status, 200, 'the genuine token still works');
  t.ok(config.jwt.algorithm);
});
