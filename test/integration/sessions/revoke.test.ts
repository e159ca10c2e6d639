import t from 'tap';
import { decodeJwt } from 'jose';
import { sha256Hex } from '../../../src/lib/tokens.js';
import { buildTestApp } from '../../helpers/app.js';
import { api } from '../../helpers/http.js';
import { createOrganization, createUser, signIn } from '../../helpers/factories.js';

/**
 * POST /v1/auth/revoke: logout with the refresh token, for a frontend whose access token has expired
 * (a user back after lunch clicks "sign out"). Before, it had to refresh first and log out with the
 * new access token; a frontend that only dropped its tokens left the session alive for up to the
 * idle timeout (12 h) — on a shared computer.
 */

const CSO_SECRET = 'cso-secret-0123456789abcdef';
const basic = `Basic ${Buffer.from(`cso:${CSO_SECRET}`).toString('base64')}`;

t.test('the refresh token ends its session when the access token has expired: refresh, /me and introspection all see it at once', async (t) => {
  const { app, clock, config } = await buildTestApp(t, { SERVICE_CLIENTS: `cso:${sha256Hex(CSO_SECRET)}` });
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  const laptop = await signIn(app, user, ['pwd', 'otp'], { ip: '10.0.0.1', userAgent: 'laptop' });
  const phone = await signIn(app, user);

  clock.advance(config.jwt.accessTtlSeconds + 60);
  t.equal((await request({ url: '/v1/auth/logout', method: 'POST', token: laptop.accessToken })).status, 401, 'logout by access token: expired');

  const res = await request({ url: '/v1/auth/revoke', body: { refreshToken: laptop.refreshToken }, headers: { 'user-agent': 'laptop' } });
  t.equal(res.status, 204);
  t.equal(res.raw, '');
  t.equal((await request({ url: '/v1/auth/refresh', body: { refreshToken: laptop.refreshToken } })).body.code, 'refresh_token_invalid', 'the refresh token is dead');
  clock.advance(-(config.jwt.accessTtlSeconds + 60)); // the access token as it was: valid by its signature and times
  t.equal((await request({ url: '/v1/me', token: laptop.accessToken })).body.code, 'token_invalid', 'its access tokens too');
  const introspected = await request({ url: '/v1/tokens/introspect', headers: { authorization: basic }, body: { token: laptop.accessToken } });
  t.same(introspected.body, { active: false }, 'introspection sees it');
  t.equal((await request({ url: '/v1/me', token: phone.accessToken })).status, 200, 'the other session lives');

  const [audit, ...more] = await app.ctx.db.auditEvent.findMany({ where: { type: 'session.revoked' } });
  t.same(more, []);
  t.match(audit, {
    actorUserId: user.id,
    subjectUserId: user.id,
    organizationId: org.id,
    userAgent: 'laptop',
    details: { sessionId: decodeJwt(laptop.accessToken).sid, reason: 'logout', via: 'refresh_token' },
  });

  const again = await request({ url: '/v1/auth/revoke', body: { refreshToken: laptop.refreshToken } });
  t.equal(again.status, 204, 'again: the same answer');
  t.equal(await app.ctx.db.auditEvent.count({ where: { type: 'session.revoked' } }), 1, 'and nothing more happens');
});

t.test('an already rotated refresh token of the session ends it too (a logout racing a refresh in another tab)', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app.ctx);
  const first = await signIn(app, user);
  const rotated = await request({ url: '/v1/auth/refresh', body: { refreshToken: first.refreshToken } });
  t.equal(rotated.status, 200);

  t.equal((await request({ url: '/v1/auth/revoke', body: { refreshToken: first.refreshToken } })).status, 204);
  t.equal((await request({ url: '/v1/auth/refresh', body: { refreshToken: rotated.body.refreshToken } })).body.code, 'refresh_token_invalid', 'the newest token is dead');
  t.equal((await request({ url: '/v1/me', token: rotated.body.accessToken })).status, 401);
});

t.test('unknown tokens, other kinds of tokens and bad input: nothing ends; 204, or 400 for what is not a token at all', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app.ctx);
  const session = await signIn(app, user);
  const login = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(login.status, 200);

  for (const [what, refreshToken] of [
    ['an unknown token', 'x'.repeat(43)],
    ['a login challenge', login.body.challengeToken],
    ['the access token’s signature', session.accessToken.split('.')[2]!],
  ] as const) {
    t.equal((await request({ url: '/v1/auth/revoke', body: { refreshToken } })).status, 204, what);
  }
  for (const body of [{}, { refreshToken: '' }, { refreshToken: 42 }, { refreshToken: session.refreshToken, sessionId: 'x' }]) {
    const res = await request({ url: '/v1/auth/revoke', body });
    t.equal(res.status, 400, JSON.stringify(body));
    t.equal(res.body.code, 'validation_failed');
  }
  t.equal((await request({ url: '/v1/me', token: session.accessToken })).status, 200, 'the session lives');
  t.equal((await request({ url: '/v1/auth/refresh', body: { refreshToken: session.refreshToken } })).status, 200);
  t.equal(await app.ctx.db.auditEvent.count({ where: { type: 'session.revoked' } }), 0);
});
