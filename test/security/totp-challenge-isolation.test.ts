import t from 'tap';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createUser, currentTotp } from '../helpers/factories.js';
import { sha256Hex } from '../../src/lib/tokens.js';

/**
 * security.md item 22: the login challenge (between password and code) works on no other
 * endpoint: not as a bearer token on any protected route, not as a refresh token, not for
 * introspection, not as an e-mail link token. And none of those attempts uses it up.
 */

const CLIENT_SECRET = 'cso-client-secret-for-tests';
const SAMPLE_UUID = '0190a000-0000-7000-8000-000000000000';

type Operation = { security?: Record<string, string[]>[]; requestBody?: unknown };

t.test('a login challenge is refused everywhere except the MFA step', async (t) => {
  const { app } = await buildTestApp(t, { SERVICE_CLIENTS: `cso:${sha256Hex(CLIENT_SECRET)}` });
  const request = api(app);
  const { user, password, totpSecret } = await createUser(app.ctx.db, app);
  const login = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(login.status, 200);
  t.equal(login.body.next, 'mfa');
  const challenge: string = login.body.challengeToken;

  // As a bearer token, on every protected operation of the document.
  const doc = app.swagger() as unknown as { paths: Record<string, Record<string, Operation>> };
  let protectedCount = 0;
  for (const [path, operations] of Object.entries(doc.paths)) {
    for (const [method, operation] of Object.entries(operations)) {
      if (!operation.security?.some((s) => 'bearerAuth' in s)) continue;
      protectedCount++;
      const url = path.replace(/\{[^}]+\}/g, SAMPLE_UUID);
      const res = await request({
        method: method.toUpperCase() as 'GET',
        url,
        token: challenge,
        ...(operation.requestBody ? { body: {} } : {}),
      });
      t.equal(res.status, 401, `${method.toUpperCase()} ${path} refuses the challenge as bearer token`);
      t.equal(res.body.code, 'token_invalid');
    }
  }
  t.ok(protectedCount >= 10, `${protectedCount} protected operations checked`);

  const refresh = await request({ url: '/v1/auth/refresh', body: { refreshToken: challenge } });
  t.equal(refresh.status, 401);
  t.equal(refresh.body.code, 'refresh_token_invalid');

  const basic = `Basic ${Buffer.from(`cso:${CLIENT_SECRET}`).toString('base64')}`;
  const introspection = await request({ url: '/v1/tokens/introspect', headers: { authorization: basic }, body: { token: challenge } });
  t.equal(introspection.status, 200);
  t.same(introspection.body, { active: false });

  // As an e-mail link token.
  const links: [string, object][] = [
    ['/v1/activation/inspect', { token: challenge }],
    ['/v1/activation', { token: challenge, password: 'a long and unusual passphrase 4 me' }],
    ['/v1/password/reset', { token: challenge, password: 'a long and unusual passphrase 4 me' }],
    ['/v1/password/reset/inspect', { token: challenge }],
    ['/v1/email-change/confirm', { token: challenge }],
    ['/v1/email-change/undo', { token: challenge }],
    ['/v1/mfa-reset/confirm', { token: challenge }],
  ];
  for (const [url, body] of links) {
    if (!(url in doc.paths)) continue;
    const res = await request({ url, body });
    t.ok(res.status >= 400 && res.status < 500, `${url} refuses it (${res.status} ${res.body.code})`);
    t.match(res.body.code, /^link_/, `${url}: ${res.body.code}`);
  }

  // None of the above touched the challenge: it still completes the login, once.
  const flow = await app.ctx.db.flowToken.findUniqueOrThrow({ where: { tokenHash: sha256Hex(challenge) } });
  t.equal(flow.state, 'PENDING');
  t.equal(flow.attempts, 0);
  const done = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: challenge, code: currentTotp(app, totpSecret!) } });
  t.equal(done.status, 200);

  // The tokens it produced are not challenges either.
  for (const token of [done.body.accessToken, done.body.refreshToken]) {
    const r = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: token, code: currentTotp(app, totpSecret!, 1) } });
    // An access token is longer than any challenge (validation refuses it); a refresh token is unknown.
    t.ok(['challenge_invalid', 'validation_failed'].includes(r.body.code), r.body.code);
  }
});
