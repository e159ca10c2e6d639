import t from 'tap';
import { decodeJwt, SignJWT } from 'jose';
import { buildTestApp } from '../../helpers/app.js';
import { api } from '../../helpers/http.js';
import { createOrganization, createUser, signIn } from '../../helpers/factories.js';
import { sha256Hex } from '../../../src/lib/tokens.js';
import { revokeUserSessions } from '../../../src/modules/sessions/revoke.js';

const CSO_SECRET = 'cso-secret-0123456789abcdef';
const SHOP_SECRET = 'another secret value';
const env = { SERVICE_CLIENTS: `cso:${sha256Hex(CSO_SECRET)},shop-backend:${sha256Hex(SHOP_SECRET)}:webshop` };
const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;

t.test('introspection requires client authentication', async (t) => {
  const { app } = await buildTestApp(t, env);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  const tokens = await signIn(app, user);
  const body = { token: tokens.accessToken };

  for (const [label, headers] of [
    ['no credentials', {}],
    ['wrong secret', { authorization: basic('cso', 'wrong') }],
    ['unknown client', { authorization: basic('nobody', CSO_SECRET) }],
    ["another client's secret", { authorization: basic('shop-backend', CSO_SECRET) }],
    ['malformed', { authorization: 'Basic !!!' }],
    ['a user access token instead', { authorization: `Bearer ${tokens.accessToken}` }],
  ] as const) {
    const res = await request({ url: '/v1/tokens/introspect', body, headers });
    t.equal(res.status, 401, label);
    t.equal(res.body.code, 'invalid_client', label);
    t.match(res.headers['www-authenticate'], /^Basic realm=/, label);
    t.notOk('active' in res.body, `${label}: no token information`);
  }
});

t.test("a client listed twice has two valid secrets while one is rotated; neither works for another client", async (t) => {
  const NEW_SECRET = 'cso-secret-rotated-9876543210';
  const { app } = await buildTestApp(t, { SERVICE_CLIENTS: `${env.SERVICE_CLIENTS},cso:${sha256Hex(NEW_SECRET)}` });
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  const body = { token: (await signIn(app, user)).accessToken };
  const introspect = (id: string, secret: string) => request({ url: '/v1/tokens/introspect', body, headers: { authorization: basic(id, secret) } });

  for (const secret of [CSO_SECRET, NEW_SECRET]) {
    const res = await introspect('cso', secret);
    t.same([res.status, res.body.active], [200, true], 'either secret of cso');
  }
  for (const [id, secret] of [['cso', 'wrong'], ['shop-backend', NEW_SECRET], ['nobody', NEW_SECRET]] as const) {
    const res = await introspect(id, secret);
    t.same([res.status, res.body.code], [401, 'invalid_client'], `${id} with another secret`);
  }
});

t.test('introspection: active only for a valid token of a live session; exactly {active:false} otherwise', async (t) => {
  const { app, config, clock } = await buildTestApp(t, env);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'] });
  const tokens = await signIn(app, user);
  const introspect = (token: string, contentType: 'json' | 'form' = 'json') =>
    contentType === 'json'
      ? request({ url: '/v1/tokens/introspect', body: { token }, headers: { authorization: basic('cso', CSO_SECRET) } })
      : request({
          url: '/v1/tokens/introspect',
          payload: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
          headers: { authorization: basic('cso', CSO_SECRET), 'content-type': 'application/x-www-form-urlencoded' },
        });

  const active = await introspect(tokens.accessToken);
  t.equal(active.status, 200);
  t.equal(active.headers['cache-control'], 'no-store');
  const claims = decodeJwt(tokens.accessToken);
  t.same(active.body, {
    active: true,
    token_type: 'Bearer',
    iss: config.jwt.issuer,
    sub: user.id,
    aud: ['webshop', 'cso'],
    exp: claims.exp,
    iat: claims.iat,
    jti: claims.jti,
    sid: claims.sid,
    org: org.id,
    roles: ['USER', 'CUSTOMER_ADMIN'],
    amr: ['pwd', 'otp'],
    terms: null,
    terms_current: false,
  });
  t.notOk('client_id' in active.body, 'no client_id: in RFC 7662 it names the client a token was issued to, not the caller');
  t.equal((await introspect(tokens.accessToken, 'form')).body.active, true, 'RFC 7662 form encoding works too');
  // The terms as of now, like the roles: accepted after the token was issued shows at once.
  const accepted = await request({ url: '/v1/me/terms', token: tokens.accessToken, body: { version: config.termsVersion, email: user.email } });
  t.equal(accepted.status, 200);
  t.equal((await introspect(tokens.accessToken)).body.terms, config.termsVersion, 'the accepted terms version');
  t.equal(decodeJwt(tokens.accessToken).terms, null, 'where the token still says none');

  const inactive = async (token: string, label: string) => {
    const res = await introspect(token);
    t.equal(res.status, 200, label);
    t.equal(res.raw, '{"active":false}', `${label}: exactly {"active": false}`);
  };
  await inactive('garbage', 'unknown token');
  await inactive(tokens.refreshToken, 'refresh token');
  const [h, p, sig] = tokens.accessToken.split('.') as [string, string, string];
  const flipped = `${sig.slice(0, 10)}${sig[10] === 'A' ? 'B' : 'A'}${sig.slice(11)}`;
  await inactive(`${h}.${p}.${flipped}`, 'bad signature');

  // Revocation is seen at once: logout, password reset, blocking.
  const second = await signIn(app, user);
  await request({ url: '/v1/auth/logout', method: 'POST', token: tokens.accessToken });
  await inactive(tokens.accessToken, 'after logout');
  t.equal((await introspect(second.accessToken)).body.active, true, 'other session unaffected');
  await app.ctx.db.$transaction((tx) => revokeUserSessions(tx, app.ctx.clock, user.id, 'password_reset'));
  await inactive(second.accessToken, 'after password reset (all sessions revoked)');

  const third = await signIn(app, user);
  await app.ctx.db.user.update({ where: { id: user.id }, data: { status: 'BLOCKED' } });
  await inactive(third.accessToken, 'blocked user');
  await app.ctx.db.user.update({ where: { id: user.id }, data: { status: 'ACTIVE' } });
  t.equal((await introspect(third.accessToken)).body.active, true);

  // After the user removed their MFA the session may only enrol again: not active for other services.
  await app.ctx.db.totpFactor.deleteMany({ where: { userId: user.id } });
  await inactive(third.accessToken, 'MFA removed');
  await app.ctx.db.totpFactor.create({ data: { userId: user.id, status: 'ACTIVE', secretCiphertext: 'x', encryptionKeyId: 'x' } });
  t.equal((await introspect(third.accessToken)).body.active, true);

  // Expired at exp, to the second: no leeway that a verifier with none (jose's default) would not give.
  const exp = decodeJwt(third.accessToken).exp! * 1000;
  clock.set(new Date(exp - 1000));
  t.equal((await introspect(third.accessToken)).body.active, true, 'one second before exp');
  clock.set(new Date(exp));
  await inactive(third.accessToken, 'at exp');
  clock.advance(10);
  await inactive(third.accessToken, 'expired');
});

t.test('RFC 7662 clients: the 401 carries the OAuth error member; a client_id beside the credentials must name the same client', async (t) => {
  const { app } = await buildTestApp(t, env);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  const { accessToken } = await signIn(app, user);
  const form = (params: Record<string, string>, authorization = basic('cso', CSO_SECRET)) =>
    request({
      url: '/v1/tokens/introspect',
      payload: new URLSearchParams(params).toString(),
      headers: { authorization, 'content-type': 'application/x-www-form-urlencoded' },
    });

  const refused = await form({ token: accessToken }, basic('cso', 'wrong'));
  t.equal(refused.status, 401);
  t.match(refused.body, { code: 'invalid_client', error: 'invalid_client' });
  t.equal((await form({ token: accessToken, client_id: 'cso' })).body.active, true, 'client_id of the authenticated client');
  for (const clientId of ['shop-backend', 'CSO', '']) {
    const other = await form({ token: accessToken, client_id: clientId });
    t.equal(other.status, 401, `client_id ${JSON.stringify(clientId)}`);
    t.match(other.body, { code: 'invalid_client', error: 'invalid_client' });
    t.notOk('active' in other.body);
  }
  t.equal((await form({ token: accessToken, client_secret: CSO_SECRET })).status, 400, 'a secret in the body is not taken');
});

t.test('a client that authenticated once does not open the door to other secrets', async (t) => {
  const { app } = await buildTestApp(t, env);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app.ctx);
  const body = { token: (await signIn(app, user)).accessToken };
  const introspect = (authorization: string) => request({ url: '/v1/tokens/introspect', body, headers: { authorization } });

  for (let i = 0; i < 2; i++) t.equal((await introspect(basic('cso', CSO_SECRET))).body.active, true, `the right secret, call ${i + 1}`);
  for (const [label, authorization] of [
    ['a wrong secret for the same client', basic('cso', 'wrong')],
    ['the right secret with one character more', basic('cso', `${CSO_SECRET}x`)],
    ['the right secret under another client id', basic('shop-backend', CSO_SECRET)],
  ] as const) {
    const res = await introspect(authorization);
    t.equal(res.status, 401, label);
    t.equal(res.body.code, 'invalid_client', label);
  }
  const again = await introspect(basic('cso', CSO_SECRET));
  t.equal(again.body.active, true, 'and the right one still works');
});

t.test('a client sees as active only tokens for its audiences (RFC 7662 §4)', async (t) => {
  const ERP_SECRET = 'erp-secret-0123456789abcdef';
  const { app } = await buildTestApp(t, {
    JWT_AUDIENCES: 'webshop,cso',
    SERVICE_CLIENTS: `${env.SERVICE_CLIENTS},erp:${sha256Hex(ERP_SECRET)}:cso|webshop`,
  });
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  const { accessToken } = await signIn(app, user);
  const introspect = (id: string, secret: string) => request({ url: '/v1/tokens/introspect', body: { token: accessToken }, headers: { authorization: basic(id, secret) } });
  for (const [id, secret] of [['cso', CSO_SECRET], ['shop-backend', SHOP_SECRET], ['erp', ERP_SECRET]] as const) {
    t.equal((await introspect(id, secret)).body.active, true, `${id}: the token is for one of its audiences`);
  }
  // A token for some of the audiences only (none is issued so today): its claims re-signed with the service's own key.
  const key = app.ctx.signer.signingKey();
  const csoOnly = await new SignJWT({ ...decodeJwt(accessToken), aud: ['cso'] })
    .setProtectedHeader({ alg: key.algorithm, kid: key.kid, typ: 'at+jwt' })
    .sign(key.privateKey);
  const forCso = (id: string, secret: string) => request({ url: '/v1/tokens/introspect', body: { token: csoOnly }, headers: { authorization: basic(id, secret) } });
  t.equal((await forCso('cso', CSO_SECRET)).body.active, true, 'cso: yes');
  t.equal((await forCso('erp', ERP_SECRET)).body.active, true, 'erp (cso|webshop): yes');
  t.equal((await forCso('shop-backend', SHOP_SECRET)).raw, '{"active":false}', 'shop-backend (webshop only): not its audience');
});

t.test('an unknown client id is refused whatever the secret, the dummy compared in its place included, and stays under the per-IP ceiling (mutation review, session 20)', async (t) => {
  const { app } = await buildTestApp(t, { ...env, RATE_LIMIT_ENABLED: 'true', RATE_LIMIT_GLOBAL_PER_MINUTE: '5' });
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: (await createOrganization(app.ctx.db)).id });
  const tokens = await signIn(app, user);
  // An unknown id is compared with sha256('no such client') for equal work: that secret, in the
  // source for anyone to read, must not open the door (nor the authenticated clients' exemption
  // from the per-IP ceiling) for an id SERVICE_CLIENTS does not list.
  for (let i = 0; i < 6; i++) {
    const res = await request({ url: '/v1/tokens/introspect', body: { token: tokens.accessToken }, headers: { authorization: basic(`nobody-${i}`, 'no such client') } });
    if (i < 5) {
      t.equal(res.status, 401, `attempt ${i + 1}`);
      t.equal(res.body.code, 'invalid_client');
    } else {
      t.equal(res.status, 429, 'failed client logins count towards the per-IP ceiling');
    }
  }
});

t.test('a 415 on introspection names both bodies it takes; other routes name JSON (integrator review, session 30)', async (t) => {
  const { app } = await buildTestApp(t, env);
  const introspect = await app.inject({
    method: 'POST',
    url: '/v1/tokens/introspect',
    headers: { authorization: basic('cso', CSO_SECRET), 'content-type': 'text/plain' },
    payload: 'token=abc',
  });
  t.equal(introspect.statusCode, 415);
  t.equal(introspect.json().code, 'unsupported_media_type');
  t.equal(introspect.json().detail, 'Send JSON (Content-Type: application/json) or a form (Content-Type: application/x-www-form-urlencoded).');
  const login = await app.inject({ method: 'POST', url: '/v1/auth/login', headers: { 'content-type': 'text/plain' }, payload: 'x' });
  t.equal(login.statusCode, 415);
  t.equal(login.json().detail, 'Send JSON with Content-Type: application/json.');
});

t.test('terms_current says whether the accepted terms are the current version, as it is now (integrator review, session 30)', async (t) => {
  const { app } = await buildTestApp(t, env);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user: behind } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id, termsAccepted: 'v0-old' });
  const { user: current } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id, termsAccepted: true });
  const { user: none } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  const introspect = async (token: string) => (await request({ url: '/v1/tokens/introspect', body: { token }, headers: { authorization: basic('cso', CSO_SECRET) } })).body;
  const tokens = { behind: (await signIn(app, behind)).accessToken, current: (await signIn(app, current)).accessToken, none: (await signIn(app, none)).accessToken };
  t.match(await introspect(tokens.behind), { active: true, terms: 'v0-old', terms_current: false });
  t.match(await introspect(tokens.current), { active: true, terms: app.ctx.config.termsVersion, terms_current: true });
  t.match(await introspect(tokens.none), { active: true, terms: null, terms_current: false });
  // Accepting the current version shows at once, with the token already issued.
  await app.ctx.db.user.update({ where: { id: behind.id }, data: { termsVersion: app.ctx.config.termsVersion, termsAcceptedAt: app.ctx.clock.now() } });
  t.match(await introspect(tokens.behind), { terms_current: true });
});
