import { generateKeyPairSync } from 'node:crypto';
import t, { type Test } from 'tap';
import { decodeJwt, decodeProtectedHeader, SignJWT, UnsecuredJWT, type JWTPayload } from 'jose';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createOrganization, createUser, signIn } from '../helpers/factories.js';
import { issueLoginChallenge } from '../../src/modules/login/challenge.js';
import { issueFlowToken } from '../../src/modules/flows/flow-tokens.js';
import { revokeUserSessions } from '../../src/modules/sessions/revoke.js';

/** security.md item 17: only our own, unexpired access tokens of a live session are accepted. */
t.test('JWT attacks and non-access tokens are refused with 401 token_invalid', async (t) => {
  const { app, config, clock } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  const tokens = await signIn(app, user);
  const claims = decodeJwt(tokens.accessToken);
  const header = decodeProtectedHeader(tokens.accessToken);
  const key = app.ctx.signer.signingKey();

  const me = (token: string) => request({ url: '/v1/me', token });
  const expectInvalid = async (t: Test, token: string, label: string) => {
    const res = await me(token);
    t.equal(res.status, 401, `${label}: 401`);
    t.equal(res.body.code, 'token_invalid', `${label}: token_invalid`);
    t.match(res.headers['www-authenticate'], /^Bearer .*error="invalid_token"/, `${label}: WWW-Authenticate`);
  };

  /** Re-signs the token's claims with OUR key, changed as given: proves the claim check, not the signature. */
  const forge = (changes: JWTPayload, protectedHeader: Record<string, unknown> = {}) =>
    new SignJWT({ ...claims, ...changes })
      .setProtectedHeader({ alg: key.algorithm, kid: key.kid, typ: 'at+jwt', ...protectedHeader })
      .sign(key.privateKey);

  t.equal((await me(tokens.accessToken)).status, 200, 'the genuine token works');

  const missing = await request({ url: '/v1/me' });
  t.equal(missing.status, 401);
  t.equal(missing.body.code, 'unauthenticated');
  t.match(missing.headers['www-authenticate'], /^Bearer realm=/);

  const basic = await request({ url: '/v1/me', headers: { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` } });
  t.equal(basic.body.code, 'unauthenticated', 'a non-bearer Authorization header is no credential');

  await expectInvalid(t, 'not-a-jwt', 'garbage');
  await expectInvalid(t, `${tokens.accessToken}x`, 'tampered signature');
  await expectInvalid(t, 'a'.repeat(5000), 'oversized');

  const [h, p] = tokens.accessToken.split('.');
  const tamperedPayload = Buffer.from(JSON.stringify({ ...claims, roles: ['SUPPORT'] })).toString('base64url');
  await expectInvalid(t, `${h}.${tamperedPayload}.${tokens.accessToken.split('.')[2]}`, 'payload changed (roles escalated)');
  t.ok(p);

  await expectInvalid(t, new UnsecuredJWT({ ...claims }).encode(), 'alg none');
  const noneWithKid = `${Buffer.from(JSON.stringify({ alg: 'none', kid: header.kid, typ: 'at+jwt' })).toString('base64url')}.${p}.`;
  await expectInvalid(t, noneWithKid, 'alg none with our kid');

  // HS256 "key confusion": HMAC keyed with the public key in every form a naive verifier might use.
  const jwks = (await request({ url: '/.well-known/jwks.json' })).body as { keys: { x: string }[] };
  const publicPem = app.ctx.signer.verificationKey(key.kid)!.export({ type: 'spki', format: 'pem' });
  for (const [label, secret] of [
    ['PEM', Buffer.from(publicPem as string)],
    ['raw x', Buffer.from(jwks.keys[0]!.x, 'base64url')],
    ['JWK JSON', Buffer.from(JSON.stringify(jwks.keys[0]))],
  ] as const) {
    const hs = await new SignJWT({ ...claims })
      .setProtectedHeader({ alg: 'HS256', kid: key.kid, typ: 'at+jwt' })
      .sign(new Uint8Array(secret));
    await expectInvalid(t, hs, `HS256 signed with the public key (${label})`);
  }

  const stranger = generateKeyPairSync('ed25519').privateKey;
  await expectInvalid(
    t,
    await new SignJWT({ ...claims }).setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: 'at+jwt' }).sign(stranger),
    'signed by another key under our kid',
  );
  await expectInvalid(t, await forge({}, { kid: 'unknown-kid' }), 'unknown kid');

  await expectInvalid(t, await forge({ iss: 'https://evil.example' }), 'wrong iss');
  await expectInvalid(t, await forge({ aud: 'someone-else' }), 'wrong aud');
  await expectInvalid(t, await forge({ aud: ['someone-else', 'another'] }), 'no audience of ours');
  await expectInvalid(t, await forge({}, { typ: 'JWT' }), 'typ is not at+jwt');
  await expectInvalid(t, await forge({ token_use: 'refresh' }), 'token_use is not access');
  await expectInvalid(t, await forge({ token_use: undefined }), 'no token_use');
  await expectInvalid(t, await forge({ sub: '00000000-0000-7000-8000-000000000000' }), 'sub of another user than the session');
  await expectInvalid(t, await forge({ sid: '00000000-0000-7000-8000-000000000000' }), 'unknown session');
  await expectInvalid(t, await forge({ sid: 'not-a-uuid' }), 'malformed sid');
  await expectInvalid(t, await forge({ exp: undefined }), 'no exp');
  await expectInvalid(t, await forge({ exp: Math.floor(clock.now().getTime() / 1000) - 60 }), 'exp in the past');
  t.equal(
    (await me(await forge({ aud: 'cso' }))).status,
    200,
    'a single audience of ours is accepted (CSO tokens work here too)',
  );

  // Other kinds of tokens of this service used as a bearer token.
  await expectInvalid(t, tokens.refreshToken, 'refresh token');
  const { challenge, link } = await app.ctx.db.$transaction(async (tx) => ({
    challenge: await issueLoginChallenge(tx, app.ctx, user.id, 'mfa'),
    link: await issueFlowToken(tx, app.ctx.clock, { userId: user.id, purpose: 'ACTIVATION', ttlSeconds: 3600 }),
  }));
  await expectInvalid(t, challenge.challengeToken, 'login challenge token');
  await expectInvalid(t, link.token, 'e-mail link token');

  // Expiry (fake clock): valid just before, invalid after exp (+ the 5 s leeway).
  clock.advance(config.jwt.accessTtlSeconds - 1);
  t.equal((await me(tokens.accessToken)).status, 200, 'valid until exp');
  clock.advance(7);
  await expectInvalid(t, tokens.accessToken, 'expired');
});

t.test('tokens in the query string are refused', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  const tokens = await signIn(app, user);

  for (const name of ['access_token', 'accessToken', 'token']) {
    const res = await request({ url: `/v1/me?${name}=${tokens.accessToken}`, token: tokens.accessToken });
    t.equal(res.status, 401, `${name}`);
    t.equal(res.body.code, 'token_in_query');
    t.equal(res.headers['www-authenticate'], 'Bearer realm="webshop-auth"', 'every 401 of a bearer route names its scheme (RFC 9110)');
    t.notMatch(res.raw, tokens.accessToken.slice(-20), 'the token is not echoed');
  }
  const refresh = await request({ url: `/v1/auth/refresh?refresh_token=${tokens.refreshToken}`, body: { refreshToken: tokens.refreshToken } });
  t.equal(refresh.status, 401);
  t.equal(refresh.body.code, 'token_in_query');
  t.equal(refresh.headers['www-authenticate'], undefined, 'a public route: its credentials travel in the body, no HTTP scheme');
  // The refused refresh did not consume the token.
  t.equal((await request({ url: '/v1/auth/refresh', body: { refreshToken: tokens.refreshToken } })).status, 200);
});

t.test('ended sessions and blocked users: the access token stops working at once', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });

  const a = await signIn(app, user);
  t.equal((await request({ url: '/v1/me', token: a.accessToken })).status, 200);
  await app.ctx.db.$transaction((tx) => revokeUserSessions(tx, app.ctx.clock, user.id, 'password_reset'));
  t.equal((await request({ url: '/v1/me', token: a.accessToken })).body.code, 'token_invalid', 'revoked session');

  const b = await signIn(app, user);
  await app.ctx.db.user.update({ where: { id: user.id }, data: { status: 'BLOCKED', blockedAt: app.ctx.clock.now() } });
  t.equal((await request({ url: '/v1/me', token: b.accessToken })).body.code, 'token_invalid', 'blocked user, even with a live session');
});
