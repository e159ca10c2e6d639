import t from 'tap';
import { buildTestApp } from '../../helpers/app.js';
import { api } from '../../helpers/http.js';
import { createUser, signIn } from '../../helpers/factories.js';
import { GOOD_PASSWORD } from '../../helpers/accounts.js';

type Route = { method: 'POST' | 'PUT'; url: string; valid: Record<string, unknown>; auth?: boolean };

const token = 'A'.repeat(43);
const routes: Route[] = [
  { method: 'POST', url: '/v1/auth/login', valid: { email: 'a@example.test', password: 'whatever password' } },
  { method: 'POST', url: '/v1/activation/inspect', valid: { token } },
  { method: 'POST', url: '/v1/activation', valid: { token, password: GOOD_PASSWORD } },
  { method: 'POST', url: '/v1/password/forgot', valid: { email: 'a@example.test' } },
  { method: 'POST', url: '/v1/password/reset', valid: { token, password: GOOD_PASSWORD } },
  { method: 'PUT', url: '/v1/me/password', valid: { currentPassword: 'x', newPassword: GOOD_PASSWORD }, auth: true },
];

t.test('bad input on every account route: 400/413/415 problem+json, never 500', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app);
  const { accessToken } = await signIn(app, user);

  for (const route of routes) {
    const auth = route.auth ? { token: accessToken } : {};
    const firstKey = Object.keys(route.valid)[0]!;
    const cases: { name: string; status: number; code?: string; payload?: string; body?: unknown; headers?: Record<string, string> }[] = [
      { name: 'unknown field', status: 400, code: 'validation_failed', body: { ...route.valid, isAdmin: true } },
      { name: 'missing field', status: 400, code: 'validation_failed', body: { ...route.valid, [firstKey]: undefined } },
      { name: 'wrong type', status: 400, code: 'validation_failed', body: { ...route.valid, [firstKey]: 12345 } },
      { name: 'null', status: 400, code: 'validation_failed', body: { ...route.valid, [firstKey]: null } },
      { name: 'array body', status: 400, code: 'validation_failed', body: [route.valid] },
      { name: 'malformed JSON', status: 400, code: 'malformed_json', payload: '{"email": "a@', headers: { 'content-type': 'application/json' } },
      { name: 'empty body', status: 400, payload: '', headers: { 'content-type': 'application/json' } },
      { name: 'not JSON', status: 415, code: 'unsupported_media_type', payload: 'email=a', headers: { 'content-type': 'application/x-www-form-urlencoded' } },
      { name: 'oversize', status: 413, code: 'payload_too_large', body: { ...route.valid, [firstKey]: 'x'.repeat(17 * 1024) } },
    ];
    for (const c of cases) {
      const res = await request({ method: route.method, url: route.url, ...auth, ...(c.payload !== undefined ? { payload: c.payload } : { body: c.body }), headers: c.headers });
      t.equal(res.status, c.status, `${route.url}: ${c.name}`);
      t.match(res.headers['content-type'], /application\/problem\+json/, `${route.url}: ${c.name} is problem+json`);
      if (c.code) t.equal(res.body.code, c.code, `${route.url}: ${c.name} code`);
    }
  }

  // Field-specific rules.
  const email = await request({ url: '/v1/auth/login', body: { email: 'not-an-email', password: 'x' } });
  t.equal(email.status, 400);
  t.same(email.body.errors.map((e: { path: string }) => e.path), ['body.email']);
  t.equal((await request({ url: '/v1/auth/login', body: { email: 'a@example.test', password: '' } })).status, 400);
  t.equal((await request({ url: '/v1/password/forgot', body: { email: 'x'.repeat(400) + '@example.test' } })).status, 400);
  t.equal((await request({ url: '/v1/activation/inspect', body: { token: 'x'.repeat(600) } })).status, 400);
  // Tokens of the right shape but unknown, and junk tokens, are answered as link problems.
  t.equal((await request({ url: '/v1/activation/inspect', body: { token: '../../etc/passwd' } })).body.code, 'link_invalid');
  t.equal((await request({ url: '/v1/password/reset', body: { token: "' OR 1=1 --          ", password: GOOD_PASSWORD } })).body.code, 'link_invalid');
});

t.test('each field error carries a code to translate, with the limit or the allowed values (frontend review, session 28)', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const errorsOf = async (options: Parameters<typeof request>[0]) => {
    const res = await request(options);
    t.equal(res.status, 400, JSON.stringify(options.url));
    return res.body.errors as Record<string, unknown>[];
  };
  t.same(await errorsOf({ url: '/v1/auth/login', body: { email: 'not-an-email', password: 'x' } }), [
    { path: 'body.email', message: 'must be an e-mail address', code: 'invalid_format', format: 'regex' },
  ]);
  t.match(await errorsOf({ url: '/v1/auth/login', body: {} }), [
    { path: 'body.email', code: 'required' },
    { path: 'body.password', code: 'required' },
  ]);
  t.match(await errorsOf({ url: '/v1/auth/login', body: { email: 'a@example.test', password: 12 } }), [{ path: 'body.password', code: 'invalid_type' }]);
  t.match(await errorsOf({ url: '/v1/auth/login', body: { email: 'a@example.test', password: '' } }), [{ path: 'body.password', code: 'too_small', minimum: 1 }]);
  t.match(await errorsOf({ url: '/v1/auth/login', body: { email: 'a@example.test', password: 'x', isAdmin: true } }), [{ path: 'body', code: 'unrecognized_keys', keys: ['isAdmin'] }]);
  t.match(await errorsOf({ url: '/v1/auth/login/mfa', body: { challengeToken: 'A'.repeat(43), code: '123456', recoveryCode: 'abcd-efgh-jkmn' } }), [
    { path: 'body.recoveryCode', code: 'only_one_of' },
    { path: 'body.code', code: 'only_one_of' },
  ]);
  const many = Array.from({ length: 500 }, (_, i) => `k${i}=1`).join('&');
  const flood = await request({ method: 'GET', url: `/healthz?${many}` });
  t.same(flood.body.errors, [{ path: 'querystring', code: 'unrecognized_keys', message: `Unrecognized keys: ${Array.from({ length: 10 }, (_, i) => `"k${i}"`).join(', ')} and 490 more`, keys: Array.from({ length: 10 }, (_, i) => `k${i}`) }], 'unknown parameters: one entry, the first ten named (attacker review, session 28)');
  t.ok(flood.body && JSON.stringify(flood.body).length < 2000, 'the answer stays small');

  const { user } = await createUser(app.ctx.db, app, { roles: ['USER', 'CUSTOMER_ADMIN'] });
  const { accessToken } = await signIn(app, user);
  t.match(await errorsOf({ method: 'GET', url: '/v1/organization/users?limit=1000', token: accessToken }), [{ path: 'querystring.limit', code: 'too_big', maximum: 100 }]);
  t.match(await errorsOf({ method: 'GET', url: '/v1/organization/users?status=GONE', token: accessToken }), [
    { path: 'querystring.status', code: 'invalid_value', values: ['INVITED', 'ACTIVE', 'BLOCKED'] },
  ]);
  t.match(await errorsOf({ method: 'GET', url: '/v1/organization/users?colour=red', token: accessToken }), [{ path: 'querystring', code: 'unrecognized_keys', keys: ['colour'] }]);
});
