import t from 'tap';
import { loadConfig } from '../../src/config.js';
import { sha256Hex } from '../../src/lib/tokens.js';
import { buildTestApp } from '../helpers/app.js';
import { api, type ApiResponse } from '../helpers/http.js';
import { createUser, currentTotp, signIn } from '../helpers/factories.js';
import { GOOD_PASSWORD, inviteUser, tokenFromLink } from '../helpers/accounts.js';
import { adminWorld } from '../integration/organization/helpers.js';
import { secretOf } from '../integration/mfa/helpers.js';
import { lastMail } from '../helpers/outbox.js';

/**
 * security.md items 18, 19, 21 and 22 through the HTTP API:
 *  18. the default refresh lifetimes (12 h idle, 7 days absolute), at both edges;
 *  19. logout, blocking, password reset and every kind of MFA reset end the affected sessions:
 *      the refresh token fails and introspection answers exactly {"active":false} at once;
 *  21. every response that carries a token or a secret says Cache-Control: no-store (the list of
 *      such operations is taken from the app's OpenAPI document, so a new one cannot be missed);
 *  22. the login challenge lives at most 5 minutes.
 */

const HOUR = 3600;
const CLIENT_SECRET = 'bar-introspection-client-secret';
const BASIC = `Basic ${Buffer.from(`bar:${CLIENT_SECRET}`).toString('base64')}`;
const SERVICE_CLIENTS = `bar:${sha256Hex(CLIENT_SECRET)}:cso`;

t.test('refresh tokens by default: 12 h idle timeout, 7 days absolute lifetime', async (t) => {
  const defaults = loadConfig({});
  t.same(defaults.refresh, { idleTtlSeconds: 12 * HOUR, absoluteTtlSeconds: 7 * 24 * HOUR, reuseGraceSeconds: 10, maxPerSession: 5000 });
  const { app, config, clock } = await buildTestApp(t);
  t.same(config.refresh, defaults.refresh, 'the test app runs on the defaults');
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app);
  const refresh = (refreshToken: string) => request({ url: '/v1/auth/refresh', body: { refreshToken } });

  const idle = await signIn(app, user);
  const justInTime = await signIn(app, user);
  t.equal(idle.refreshExpiresIn, 12 * HOUR);
  clock.advance(12 * HOUR - 1);
  t.equal((await refresh(justInTime.refreshToken)).status, 200, 'unused for 11:59:59: still refreshes');
  clock.advance(1);
  const expired = await refresh(idle.refreshToken);
  t.equal(expired.status, 401, 'unused for 12 h: expired');
  t.equal(expired.body.code, 'refresh_token_expired');

  // Used every 11 hours: lives exactly 7 days, not a second longer.
  let tokens = await signIn(app, user);
  for (let hours = 11; hours <= 165; hours += 11) {
    clock.advance(11 * HOUR);
    const res = await refresh(tokens.refreshToken);
    t.equal(res.status, 200, `refreshed at ${hours} h`);
    tokens = res.body;
  }
  t.equal(tokens.refreshExpiresIn, 3 * HOUR, 'at 165 h the idle window is capped by the absolute end (168 h)');
  clock.advance(3 * HOUR - 1);
  const last = await refresh(tokens.refreshToken);
  t.equal(last.status, 200, 'at 167:59:59 still alive');
  t.equal(last.body.refreshExpiresIn, 1);
  clock.advance(1);
  const over = await refresh(last.body.refreshToken);
  t.equal(over.status, 401, 'at 168 h (7 days): over');
  t.equal(over.body.code, 'refresh_token_expired');
});

t.test('logout, block, password reset and MFA resets: refresh fails and introspection says {"active":false} at once', async (t) => {
  const w = await adminWorld(t, { SERVICE_CLIENTS });
  const { request, app } = w;
  const introspect = (token: string) => request({ url: '/v1/tokens/introspect', headers: { authorization: BASIC }, body: { token } });
  const twoSessions = async (email: string, options: { recoveryCodes?: number } = {}) => {
    const member = await w.member(w.orgA.id, { email, ...options });
    return { member, a: await signIn(app, member.user), b: await signIn(app, member.user) };
  };
  const assertEnded = async (label: string, session: { accessToken: string; refreshToken: string }) => {
    const res = await request({ url: '/v1/auth/refresh', body: { refreshToken: session.refreshToken } });
    t.equal(res.status, 401, `${label}: refresh → 401`);
    t.equal(res.body.code, 'refresh_token_invalid', `${label}: refresh_token_invalid`);
    const intro = await introspect(session.accessToken);
    t.equal(intro.status, 200, `${label}: introspection answers`);
    t.equal(intro.raw, '{"active":false}', `${label}: exactly {"active":false}`);
    const me = await request({ url: '/v1/me', token: session.accessToken });
    t.equal(me.body.code, 'token_invalid', `${label}: the access token is refused here too`);
  };
  const assertAlive = async (label: string, session: { accessToken: string }) => {
    t.equal((await introspect(session.accessToken)).body.active, true, `${label}: still active`);
  };

  // Logout ends this session only.
  const lo = await twoSessions('logout@alpha.test');
  await assertAlive('before logout', lo.a);
  t.equal((await request({ method: 'POST', url: '/v1/auth/logout', token: lo.a.accessToken })).status, 204);
  await assertEnded('logout', lo.a);
  await assertAlive('the other session after logout', lo.b);

  // Blocking by an administrator ends every session.
  const bl = await twoSessions('blocked@alpha.test');
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${bl.member.user.id}/block`, token: w.adminA.token })).status, 200);
  await assertEnded('block (session 1)', bl.a);
  await assertEnded('block (session 2)', bl.b);

  // Blocking by support too.
  const sb = await twoSessions('support.blocked@alpha.test');
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${sb.member.user.id}/block`, token: w.support.token })).status, 200);
  await assertEnded('support block', sb.a);

  // Password reset through the e-mailed link.
  const pr = await twoSessions('reset@alpha.test');
  t.equal((await request({ url: '/v1/password/forgot', body: { email: 'reset@alpha.test' } })).status, 202);
  const resetMail = await lastMail(app, { toAddress: 'reset@alpha.test', template: 'password_reset' });
  const reset = await request({ url: '/v1/password/reset', body: { token: tokenFromLink(resetMail.textBody, '/reset-password'), password: GOOD_PASSWORD } });
  t.equal(reset.status, 204);
  await assertEnded('password reset (session 1)', pr.a);
  await assertEnded('password reset (session 2)', pr.b);

  // MFA reset by the customer administrator.
  const am = await twoSessions('admin.mfa@alpha.test');
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${am.member.user.id}/mfa-reset`, token: w.adminA.token })).status, 200);
  await assertEnded('admin MFA reset (session 1)', am.a);
  await assertEnded('admin MFA reset (session 2)', am.b);

  // Support-verified MFA reset, confirmed by the user from the e-mail.
  const sm = await twoSessions('support.mfa@alpha.test');
  t.equal((await request({ method: 'POST', url: `/v1/support/users/${sm.member.user.id}/mfa-reset-request`, token: w.support.token })).status, 202);
  await assertAlive('support MFA reset requested, not yet confirmed', sm.a);
  const confirmMail = await lastMail(app, { toAddress: 'support.mfa@alpha.test', template: 'mfa_reset_confirm' });
  t.equal((await request({ url: '/v1/mfa-reset/confirm', body: { token: tokenFromLink(confirmMail.textBody, '/confirm-mfa-reset') } })).status, 200);
  await assertEnded('support-verified MFA reset (session 1)', sm.a);
  await assertEnded('support-verified MFA reset (session 2)', sm.b);

  // Self-service removal: the other sessions end; the caller's own is no longer a valid login for
  // anyone else (introspection inactive) although it may still enrol again here.
  const ss = await twoSessions('self.mfa@alpha.test');
  t.equal((await request({ method: 'DELETE', url: '/v1/me/mfa', token: ss.a.accessToken, body: { password: ss.member.password } })).status, 204);
  await assertEnded('self-service MFA removal (other session)', ss.b);
  const own = await introspect(ss.a.accessToken);
  t.equal(own.raw, '{"active":false}', 'self-service MFA removal: the own session introspects as inactive');
});

type Operation = { responses?: Record<string, { content?: Record<string, { schema?: Schema }> }> };
type Schema = { $ref?: string; properties?: Record<string, Schema>; items?: Schema; anyOf?: Schema[]; oneOf?: Schema[]; allOf?: Schema[] };

const SECRET_FIELDS = new Set(['accessToken', 'refreshToken', 'challengeToken', 'secret', 'otpauthUri', 'recoveryCodes', 'token']);

function fieldsOf(schema: Schema | undefined, components: Record<string, Schema>, seen = new Set<string>()): string[] {
  if (!schema) return [];
  if (schema.$ref) {
    const name = schema.$ref.split('/').pop()!;
    if (seen.has(name)) return [];
    seen.add(name);
    return fieldsOf(components[name], components, seen);
  }
  const out: string[] = [];
  for (const list of [schema.anyOf, schema.oneOf, schema.allOf]) for (const s of list ?? []) out.push(...fieldsOf(s, components, seen));
  for (const [name, s] of Object.entries(schema.properties ?? {})) out.push(name, ...fieldsOf(s, components, seen));
  out.push(...fieldsOf(schema.items, components, seen));
  return out;
}

t.test('every response that carries a token or a secret says Cache-Control: no-store', async (t) => {
  const { app } = await buildTestApp(t, { SERVICE_CLIENTS });
  const request = api(app);
  const seen = new Map<string, ApiResponse>();
  const call = async (key: string, options: Parameters<typeof request>[0]) => {
    const res = await request(options);
    t.ok(res.status >= 200 && res.status < 300, `${key}: ${res.status} ${res.body?.code ?? ''}`);
    seen.set(key, res);
    return res;
  };

  // Activation → first-login enrolment → tokens.
  const invited = await inviteUser(app);
  await call('POST /v1/activation/inspect', { url: '/v1/activation/inspect', body: { token: invited.token } });
  const activated = await call('POST /v1/activation', { url: '/v1/activation', body: { token: invited.token, password: GOOD_PASSWORD } });
  const enrolment = await call('POST /v1/auth/login/mfa-enrollment', { url: '/v1/auth/login/mfa-enrollment', body: { challengeToken: activated.body.challengeToken } });
  const secret = secretOf(enrolment.body.otpauthUri);
  await call('POST /v1/auth/login/mfa-enrollment/verify', {
    url: '/v1/auth/login/mfa-enrollment/verify',
    body: { challengeToken: activated.body.challengeToken, code: currentTotp(app, secret) },
  });

  // Password + code → tokens → refresh → introspection.
  const { user, password, totpSecret } = await createUser(app.ctx.db, app);
  const login = await call('POST /v1/auth/login', { url: '/v1/auth/login', body: { email: user.email, password } });
  const tokens = await call('POST /v1/auth/login/mfa', { url: '/v1/auth/login/mfa', body: { challengeToken: login.body.challengeToken, code: currentTotp(app, totpSecret!) } });
  const refreshed = await call('POST /v1/auth/refresh', { url: '/v1/auth/refresh', body: { refreshToken: tokens.body.refreshToken } });
  await call('POST /v1/tokens/introspect', { url: '/v1/tokens/introspect', headers: { authorization: BASIC }, body: { token: refreshed.body.accessToken } });

  // The signed-in user's own MFA.
  const access = refreshed.body.accessToken as string;
  await call('POST /v1/me/mfa/recovery-codes', { url: '/v1/me/mfa/recovery-codes', token: access, body: { password } });
  t.equal((await request({ method: 'DELETE', url: '/v1/me/mfa', token: access, body: { password } })).status, 204);
  const again = await call('POST /v1/me/mfa/totp', { method: 'POST', url: '/v1/me/mfa/totp', token: access });
  await call('POST /v1/me/mfa/totp/verify', { url: '/v1/me/mfa/totp/verify', token: access, body: { code: currentTotp(app, secretOf(again.body.otpauthUri)) } });

  for (const [key, res] of seen) {
    t.match(String(res.headers['cache-control']), /(^|,\s*)no-store(\s*,|$)/, `${key}: Cache-Control no-store`);
  }

  // The operations whose success answer holds a token or a secret, per the app's own document:
  // each must be among the ones exercised above.
  const doc = app.swagger() as unknown as { paths: Record<string, Record<string, Operation>>; components: { schemas: Record<string, Schema> } };
  const carrying: string[] = [];
  for (const [path, operations] of Object.entries(doc.paths)) {
    for (const [method, operation] of Object.entries(operations)) {
      const success = Object.entries(operation.responses ?? {}).filter(([status]) => status.startsWith('2'));
      const fields = success.flatMap(([, r]) => Object.values(r.content ?? {}).flatMap((c) => fieldsOf(c.schema, doc.components.schemas)));
      if (fields.some((f) => SECRET_FIELDS.has(f))) carrying.push(`${method.toUpperCase()} ${path}`);
    }
  }
  t.ok(carrying.length >= 9, `${carrying.length} operations answer with tokens or secrets`);
  for (const key of carrying) t.ok(seen.has(key), `${key} is exercised and checked`);
});

t.test('the login challenge lives at most 5 minutes', async (t) => {
  t.equal(loadConfig({}).loginChallengeTtlSeconds, 300, 'default 5 min');
  t.throws(() => loadConfig({ LOGIN_CHALLENGE_TTL_SECONDS: '301' }), { name: 'ConfigError', message: /LOGIN_CHALLENGE_TTL_SECONDS/ }, 'more is refused');

  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user, password, totpSecret } = await createUser(app.ctx.db, app);
  const login = () => request({ url: '/v1/auth/login', body: { email: user.email, password } });

  const first = await login();
  t.equal(first.body.expiresIn, 300);
  const row = await app.ctx.db.flowToken.findUniqueOrThrow({ where: { tokenHash: sha256Hex(first.body.challengeToken) } });
  t.equal(row.expiresAt.getTime() - row.createdAt.getTime(), 300_000, 'stored expiry: 5 min');
  clock.advance(299);
  const inTime = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: first.body.challengeToken, code: currentTotp(app, totpSecret!) } });
  t.equal(inTime.status, 200, 'the code step works at 4:59');

  clock.advance(60);
  const second = await login();
  clock.advance(300);
  const late = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: second.body.challengeToken, code: currentTotp(app, totpSecret!) } });
  t.equal(late.status, 410, 'at 5:00 the challenge is over');
  t.equal(late.body.code, 'challenge_expired');

  // The enrolment challenge handed out by activation lives 5 minutes as well.
  const invited = await inviteUser(app);
  const activated = await request({ url: '/v1/activation', body: { token: invited.token, password: GOOD_PASSWORD } });
  t.equal(activated.body.expiresIn, 300);
  clock.advance(300);
  const enrol = await request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken: activated.body.challengeToken } });
  t.equal(enrol.status, 410);
  t.equal(enrol.body.code, 'challenge_expired');
});

t.test('tokens are read only from headers and bodies: credential routes refuse them in the URL, link routes refuse any query string', async (t) => {
  const { app } = await buildTestApp(t, { SERVICE_CLIENTS });
  const request = api(app);
  const { user, password, totpSecret } = await createUser(app.ctx.db, app);
  const login = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  const challengeToken = login.body.challengeToken as string;

  // A login challenge in the query string of the code step: refused before anything else, not used up.
  const inQuery = await request({ url: `/v1/auth/login/mfa?challengeToken=${challengeToken}`, body: { challengeToken, code: currentTotp(app, totpSecret!) } });
  t.equal(inQuery.status, 401);
  t.equal(inQuery.body.code, 'token_in_query');
  const tokens = await request({ url: '/v1/auth/login/mfa', body: { challengeToken, code: currentTotp(app, totpSecret!) } });
  t.equal(tokens.status, 200, 'the challenge was not consumed by the refused request');

  // Introspection with the token in the URL.
  const intro = await request({ url: `/v1/tokens/introspect?token=${tokens.body.accessToken}`, headers: { authorization: BASIC }, body: { token: tokens.body.accessToken } });
  t.equal(intro.status, 401);
  t.equal(intro.body.code, 'token_in_query');
  t.equal(intro.headers['www-authenticate'], 'Basic realm="webshop-auth", charset="UTF-8"', "the service clients' scheme");

  // E-mail link routes take the token from the body only: a valid one in the URL is never read,
  // and the answer is the same token_in_query as everywhere (session 15: it was 400 validation_failed
  // on the public routes, which declared no 401).
  const invited = await inviteUser(app);
  const inspect = await request({ url: `/v1/activation/inspect?token=${invited.token}`, body: { token: invited.token } });
  t.same({ status: inspect.status, code: inspect.body.code }, { status: 401, code: 'token_in_query' }, 'the token in the URL is refused');
  const publicRoutes: [string, string, object][] = [
    ['activation', '/v1/activation?token=x', { token: invited.token, password: GOOD_PASSWORD }],
    ['forgotten password', '/v1/password/forgot?token=x', { email: user.email }],
    ['logout by refresh token', '/v1/auth/revoke?refreshToken=x', { refreshToken: 'r'.repeat(43) }],
    ['MFA-reset confirmation', '/v1/mfa-reset/confirm?token=x', { token: 'z'.repeat(43) }],
  ];
  for (const [label, url, body] of publicRoutes) {
    const res = await request({ url, body });
    t.same({ status: res.status, code: res.body.code }, { status: 401, code: 'token_in_query' }, label);
    t.notOk(res.headers['www-authenticate'], `${label}: public, so no challenge`);
  }
  t.equal((await request({ url: '/v1/activation/inspect', body: { token: invited.token } })).status, 200, 'and the link still works');
  await request({ url: '/v1/password/forgot', body: { email: user.email } });
  const mail = await lastMail(app, { toAddress: user.email, template: 'password_reset' });
  const resetToken = tokenFromLink(mail.textBody, '/reset-password');
  const reset = await request({ url: `/v1/password/reset?token=${resetToken}`, body: { token: 'y'.repeat(43), password: GOOD_PASSWORD } });
  t.same({ status: reset.status, code: reset.body.code }, { status: 401, code: 'token_in_query' }, 'the reset token in the URL is refused');
  t.equal((await request({ url: '/v1/password/reset', body: { token: resetToken, password: GOOD_PASSWORD } })).status, 204, 'and still unused');
});

/** RFC 6749 §5.1: a token response carries Cache-Control: no-store and Pragma: no-cache (src/http/no-store.ts). */
t.test('a token response also says Pragma: no-cache, for HTTP/1.0 caches (mutation review, session 21)', async (t) => {
  const { app } = await buildTestApp(t);
  const { user } = await createUser(app.ctx.db, app);
  const res = await api(app)({ url: '/v1/auth/refresh', body: { refreshToken: (await signIn(app, user)).refreshToken } });
  t.equal(res.status, 200);
  t.equal(res.headers['cache-control'], 'no-store');
  t.equal(res.headers.pragma, 'no-cache');
});
