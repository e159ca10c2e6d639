import t from 'tap';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { checkContract } from '../helpers/contract.js';
import { callerWith, fillPath, listOperations, rolesFor, type OpenApiDoc } from '../helpers/openapi-ops.js';
import { createOrganization, createUser, signIn } from '../helpers/factories.js';

/**
 * POST/PUT/PATCH/DELETE operations that take no request body (logout, POST /v1/me/mfa/totp, the
 * customer-admin and support actions on /users/{id}/...). Fastify still parses whatever body they
 * receive, so they can answer 415 (another content type), 400 malformed_json and 413
 * payload_too_large: their OpenAPI operation must declare those statuses (standard-responses.ts),
 * or a client generated from the document has no branch for them.
 */

t.test('operations without a request body declare every status a body can provoke', async (t) => {
  const { app } = await buildTestApp(t);
  const doc = app.swagger() as unknown as OpenApiDoc;
  const ops = listOperations(doc).filter((op) => op.method !== 'GET' && !op.body);
  t.ok(ops.length >= 10, `operations without a body: ${ops.map((o) => o.operationId).join(', ')}`);
  const violations: string[] = [];
  for (const op of ops) {
    const headers: Record<string, string> = {};
    if (op.auth === 'bearer') headers.authorization = `Bearer ${(await callerWith(app, await rolesFor(app, op))).token}`;
    const url = fillPath(op.path, {});
    const sends: [string, string, string][] = [
      ['text/plain', 'text/plain', 'hello'],
      ['malformed JSON', 'application/json', '{'],
      ['17 KiB JSON', 'application/json', JSON.stringify({ pad: 'x'.repeat(17 * 1024) })],
    ];
    for (const [label, type, payload] of sends) {
      const res = await app.inject({ method: op.method, url, headers: { ...headers, 'content-type': type }, payload });
      const v = checkContract(app, op.method, url, res.statusCode, res.headers['content-type'] as string, JSON.parse(res.body), res.headers);
      if (v) violations.push(`${op.operationId} [${label}] → ${res.statusCode} ${JSON.parse(res.body).code}: ${v}`);
    }
  }
  t.same(violations, [], 'no undeclared answers');
});

/**
 * security.md item 28: "unknown fields → 400/413 problem+json"; item 25: "unknown body fields are
 * rejected (no mass assignment)". Operations without a body/query schema refuse any (input-guard.ts);
 * an empty JSON object is no body.
 */
t.test('operations without a body or query schema reject unknown fields', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user: admin } = await createUser(app.ctx.db, app, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'] });
  const { user: target } = await createUser(app.ctx.db, app, { organizationId: org.id });
  const token = (await signIn(app, admin)).accessToken;

  const reset = await request({ url: `/v1/organization/users/${target.id}/password-reset`, token, body: { roles: ['SUPPORT'], isAdmin: true } });
  t.equal(reset.status, 400, `unknown body fields on an admin action: 400 (got ${reset.status})`);
  const me = await request({ url: '/v1/me?isAdmin=true&organizationId=x', token });
  t.equal(me.status, 400, `unknown query parameters on GET /v1/me: 400 (got ${me.status})`);
  const logout = await request({ url: '/v1/auth/logout', token, body: { allSessions: true } });
  t.equal(logout.status, 400, `unknown body fields on logout: 400 (got ${logout.status})`);
  t.same(logout.body.errors, [{ path: 'body', message: 'this operation takes no request body', code: 'invalid' }], 'the error names the body');
  t.match(me.body.errors, [{ path: 'querystring', code: 'unrecognized_keys', keys: ['isAdmin', 'organizationId'] }], 'and each parameter');
  const emptyObject = await request({ url: '/v1/auth/logout', token, body: {} });
  t.equal(emptyObject.status, 204, 'an empty JSON object is no body: logged out');
});

/**
 * The introspection route accepts application/x-www-form-urlencoded (RFC 7662 clients send that)
 * and its OpenAPI requestBody lists it next to application/json, so a generated client can send it.
 * Only introspection: refresh (once served by the same plugin-scoped parser) is JSON like every other route.
 */
t.test('the request content types a route accepts are the ones its OpenAPI operation lists', async (t) => {
  const { app } = await buildTestApp(t, { SERVICE_CLIENTS: `cso:${(await import('../../src/lib/tokens.js')).sha256Hex('s'.repeat(32))}` });
  const basic = `Basic ${Buffer.from(`cso:${'s'.repeat(32)}`).toString('base64')}`;
  const res = await app.inject({
    method: 'POST',
    url: '/v1/tokens/introspect',
    headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
    payload: 'token=abc',
  });
  t.equal(res.statusCode, 200, 'form-encoded introspection is answered');
  const twice = await app.inject({
    method: 'POST',
    url: '/v1/tokens/introspect',
    headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' },
    payload: 'token=abc&token=def',
  });
  t.same([twice.statusCode, twice.json().code, twice.json().errors], [400, 'validation_failed', [{ path: 'body.token', message: 'sent more than once', code: 'invalid' }]], 'a parameter sent twice is refused (RFC 6749 §3.1; fuzzing review, session 24)');
  const doc = app.swagger() as unknown as { paths: Record<string, Record<string, { requestBody: { content: Record<string, unknown> } }>> };
  const types = Object.keys(doc.paths['/v1/tokens/introspect']!.post!.requestBody.content);
  t.ok(types.includes('application/x-www-form-urlencoded'), `the document lists form encoding (lists: ${types.join(', ')})`);

  const refresh = await api(app)({
    url: '/v1/auth/refresh',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: `refreshToken=${'r'.repeat(43)}`,
  });
  t.equal(refresh.status, 415, 'refresh refuses a form body');
  t.equal(refresh.body.code, 'unsupported_media_type');
  const refreshDoc = doc.paths['/v1/auth/refresh']!.post!.requestBody.content;
  t.same(Object.keys(refreshDoc), ['application/json'], 'and its document lists JSON only');
});

/**
 * Found by session 13's frontend walkthrough: a fetch wrapper that sends `Content-Type:
 * application/json` on every request broke logout and POST /v1/me/mfa/totp with an empty body
 * (400 "must not be empty"). An empty JSON body is now no body: operations without one answer as
 * usual; operations that need one say `body: required`, as when nothing at all was sent.
 */
t.test('an empty body sent as application/json is no body', async (t) => {
  const { app } = await buildTestApp(t);
  const { user } = await createUser(app.ctx.db, app);
  const session = await signIn(app, user);
  const post = (url: string, headers: Record<string, string>) => app.inject({ method: 'POST', url, headers, payload: '' });
  const json = { 'content-type': 'application/json' };

  const logout = await post('/v1/auth/logout', { ...json, authorization: `Bearer ${session.accessToken}` });
  t.equal(logout.statusCode, 204, 'logout with the header and no body');

  for (const headers of [json, {}]) {
    const login = await post('/v1/auth/login', headers);
    t.equal(login.statusCode, 400);
    t.equal(login.json().code, 'validation_failed');
    t.same(login.json().errors, [{ path: 'body', message: 'required', code: 'required' }], `the body is named as missing (${JSON.stringify(headers)})`);
  }
  const spaces = await app.inject({ method: 'POST', url: '/v1/auth/login', headers: json, payload: '  ' });
  t.equal(spaces.json().code, 'malformed_json', 'white space is no empty body: not JSON');
  const poisoned = await app.inject({ method: 'POST', url: '/v1/auth/login', headers: json, payload: '{"__proto__":{"admin":true},"email":"a@b.test","password":"x"}' });
  t.equal(poisoned.json().code, 'malformed_json', "Fastify's prototype-poisoning check still applies");
});

/** input-guard.ts: only an empty JSON object counts as no body; an array, even an empty one, is a body. */
t.test('an empty JSON array is a body: an operation without one refuses it and does nothing (mutation review, session 21)', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app);
  const token = (await signIn(app, user)).accessToken;
  const logout = await request({ url: '/v1/auth/logout', token, body: [] });
  t.same([logout.status, logout.body.code], [400, 'validation_failed']);
  t.same(logout.body.errors, [{ path: 'body', message: 'this operation takes no request body', code: 'invalid' }]);
  t.equal((await request({ url: '/v1/me', token })).status, 200, 'still signed in');
});

/**
 * Fastify reads no body for GET: one sent along was ignored without a word, 20 KiB ones too
 * (input fuzzing review, session 24). Every GET operation now refuses it, as declared.
 */
t.test('GET operations refuse a request body without reading it: 400 validation_failed, declared', async (t) => {
  const { app } = await buildTestApp(t);
  const doc = app.swagger() as unknown as OpenApiDoc;
  // Service-client operations answer 401 first without credentials (authentication runs before).
  const ops = listOperations(doc).filter((op) => op.method === 'GET' && op.auth !== 'basic');
  t.ok(ops.length >= 15, `GET operations: ${ops.length}`);
  const violations: string[] = [];
  for (const op of ops) {
    const headers: Record<string, string> = {};
    if (op.auth === 'bearer') headers.authorization = `Bearer ${(await callerWith(app, await rolesFor(app, op))).token}`;
    const url = fillPath(op.path, {});
    for (const payload of ['{"isAdmin":true}', JSON.stringify({ pad: 'x'.repeat(20 * 1024) })]) {
      const res = await app.inject({ method: 'GET', url, headers: { ...headers, 'content-type': 'application/json' }, payload });
      const body = JSON.parse(res.body);
      if (res.statusCode !== 400 || body.code !== 'validation_failed' || body.errors?.[0]?.path !== 'body') {
        violations.push(`${op.operationId} [${payload.length} bytes] → ${res.statusCode} ${body.code}`);
      }
      const v = checkContract(app, 'GET', url, res.statusCode, res.headers['content-type'] as string, body, res.headers);
      if (v) violations.push(`${op.operationId}: ${v}`);
    }
  }
  t.same(violations, [], 'every GET operation refuses a body');
  const without = await app.inject({ method: 'GET', url: '/healthz', headers: { 'content-type': 'application/json', 'content-length': '0' } });
  t.equal(without.statusCode, 200, 'Content-Length: 0 is no body');
});
