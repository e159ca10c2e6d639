import { once } from 'node:events';
import { connect, type AddressInfo } from 'node:net';
import t from 'tap';
import { buildTestApp } from '../helpers/app.js';
import { createOrganization, createUser, signIn } from '../helpers/factories.js';
import { api } from '../helpers/http.js';
import { checkContract } from '../helpers/contract.js';

const SHOP = 'https://shop.example.test';

/**
 * product.md: "Errors are RFC 9457 application/problem+json with a stable machine-readable code."
 * @fastify/cors (strictPreflight) answered an OPTIONS from an allowed origin without
 * Access-Control-Request-Method itself: 400 text/plain "Invalid Preflight Request".
 */
t.test('an incomplete preflight from an allowed origin is a problem+json 4xx', async (t) => {
  const { app } = await buildTestApp(t, { CORS_ORIGINS: SHOP });
  const res = await app.inject({ method: 'OPTIONS', url: '/v1/auth/login', headers: { origin: SHOP } });
  t.ok(res.statusCode >= 400 && res.statusCode < 500, `4xx (${res.statusCode})`);
  t.match(String(res.headers['content-type']), /^application\/problem\+json/, `problem+json (got ${res.headers['content-type']}: ${res.body})`);
  t.equal(JSON.parse(res.body).code, 'validation_failed', 'with a stable code');
  t.match(String(res.headers['content-security-policy']), /default-src 'none'/, 'and the security headers');

  const complete = await app.inject({ method: 'OPTIONS', url: '/v1/auth/login', headers: { origin: SHOP, 'access-control-request-method': 'POST' } });
  t.equal(complete.statusCode, 204, 'a complete preflight is still answered');

  // (mutation review, session 22) The check is for allowed origins only: a foreign origin's
  // OPTIONS, complete or not, stays a plain 404 without CORS headers.
  const foreign = await app.inject({ method: 'OPTIONS', url: '/v1/auth/login', headers: { origin: 'https://evil.example' } });
  t.equal(foreign.statusCode, 404, 'an incomplete foreign preflight is not answered either');
  t.notOk(foreign.headers['access-control-allow-origin']);
});

/**
 * security-headers.ts: "one synchronous onRequest hook sets the recorded set on every response, 404s
 * and errors included". Router errors (frameworkErrors: a path parameter that is not valid
 * percent-encoding or is over-long) are answered before any onRequest hook, so error-handler.ts
 * sets the security headers and CORS for the allowed frontend itself.
 */
t.test('router errors carry the security headers and CORS like every other answer', async (t) => {
  const { app } = await buildTestApp(t, { CORS_ORIGINS: SHOP });
  const org = await createOrganization(app.ctx.db);
  const { user: admin } = await createUser(app.ctx.db, app, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'] });
  const token = (await signIn(app, admin)).accessToken;
  for (const url of ['/v1/organization/users/%zz', `/v1/organization/users/${'a'.repeat(200)}`]) {
    const res = await app.inject({ url, headers: { authorization: `Bearer ${token}`, origin: SHOP } });
    t.equal(res.statusCode, 400, `${url.slice(0, 30)}…: 400`);
    t.match(String(res.headers['content-security-policy']), /default-src 'none'/, 'CSP');
    t.equal(res.headers['x-content-type-options'], 'nosniff', 'nosniff');
    t.equal(res.headers['x-frame-options'], 'DENY', 'X-Frame-Options');
    t.match(String(res.headers['strict-transport-security']), /max-age=31536000/, 'HSTS');
    t.equal(res.headers['access-control-allow-origin'], SHOP, 'the frontend may read the error');
    t.match(String(res.headers['access-control-expose-headers']), /X-Request-Id/, 'and its request id');
    t.match(String(res.headers.vary), /Origin/, 'Vary: Origin');
  }
  const foreign = await app.inject({ url: '/v1/organization/users/%zz', headers: { origin: 'https://evil.example' } });
  t.equal(foreign.statusCode, 400);
  t.notOk(foreign.headers['access-control-allow-origin'], 'a foreign origin may not read it');
});

/**
 * Requests Node's HTTP parser refuses never reach a route: Fastify's default answered them as
 * application/json `{"error","message","statusCode"}`, without code, security headers or request id
 * (session 15's input review). Raw sockets, since no HTTP client sends such requests.
 */
t.test('requests the HTTP parser refuses are problem+json with a stable code, the security headers and a request id', async (t) => {
  const { app, logs } = await buildTestApp(t);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  const raw = async (request: string) => {
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    socket.write(request);
    await once(socket, 'close');
    const [head = '', body = ''] = received.split('\r\n\r\n');
    const [statusLine = '', ...lines] = head.split('\r\n');
    const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
    return { statusLine, headers, body: JSON.parse(body) as Record<string, unknown> };
  };
  const cases: [string, string, number, string][] = [
    ['headers over 16 KiB', `GET /v1/me?q=${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 431, 'headers_too_large'],
    ['a negative Content-Length', 'GET /v1/me HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n', 400, 'malformed_request'],
    ['Content-Length and Transfer-Encoding', 'POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400, 'malformed_request'],
    ['a control character in a header', 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\u0001b\r\n\r\n', 400, 'malformed_request'],
    ['an unknown method', 'FOO /healthz HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'malformed_request'],
  ];
  for (const [label, request, status, code] of cases) {
    const res = await raw(request);
    t.match(res.statusLine, new RegExp(`^HTTP/1\\.1 ${status} `), `${label}: ${status}`);
    t.equal(res.headers['content-type'], 'application/problem+json', `${label}: problem+json`);
    t.match(res.body, { status, code, type: `urn:webshop-auth:problem:${code}` }, `${label}: ${code}`);
    t.equal(res.body.requestId, res.headers['x-request-id'], `${label}: request id in body and header`);
    t.match(res.headers['content-security-policy'], /default-src 'none'/, `${label}: security headers`);
    t.equal(res.headers['x-content-type-options'], 'nosniff');
    t.equal(res.headers['cache-control'], 'no-store');
  }
  // Declared in the OpenAPI document for the operation the request line names (not for FOO).
  for (const [method, url, status, code] of [
    ['GET', '/v1/me', 431, 'headers_too_large'],
    ['POST', '/v1/auth/login', 400, 'malformed_request'],
    ['GET', '/healthz', 400, 'malformed_request'],
    ['POST', '/v1/auth/login', 408, 'request_timeout'],
  ] as const) {
    const body = { type: `urn:webshop-auth:problem:${code}`, title: 'x', status, code, detail: 'x', requestId: 'x' };
    t.equal(checkContract(app, method, url, status, 'application/problem+json', body, { 'x-request-id': 'x' }), undefined, `${method} ${url} declares ${status} ${code}`);
  }
  const rejected = logs.filter((l) => (JSON.parse(l) as { msg?: string }).msg === 'request rejected by the HTTP parser');
  t.equal(rejected.length, cases.length, 'each one logged once');
  t.notOk(JSON.stringify(rejected).includes('aaaa'), 'without the request bytes');
});

/** error-handler.ts: no hook runs before a router error, so it sets the request id itself. */
t.test('router errors carry their request id in X-Request-Id, as every other answer does (mutation review, session 21)', async (t) => {
  const { app } = await buildTestApp(t);
  for (const url of ['/v1/organization/users/%zz', `/v1/organization/users/${'a'.repeat(200)}`]) {
    const res = await app.inject({ url });
    t.same([res.statusCode, res.json().code], [400, 'validation_failed'], url.slice(0, 30));
    t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/, 'X-Request-Id');
    t.equal(res.headers['x-request-id'], res.json().requestId, 'the one in the body');
  }
});

/** "5xx never carry internals" (error-handler.ts): an error nobody expected is a 500 for the client and an error line for the operators. */
t.test('an unexpected error answers 500 internal_error without its message, and is logged as an error with it (mutation review, session 21)', async (t) => {
  const { app, logs } = await buildTestApp(t);
  const { user, password } = await createUser(app.ctx.db, app);
  const hasher = app.ctx.hasher as { verify: typeof app.ctx.hasher.verify };
  hasher.verify = async () => {
    throw new Error('argon2 binding crashed in /srv/internal/worker.js');
  };
  const res = await api(app)({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.same([res.status, res.body.code], [500, 'internal_error']);
  t.notMatch(res.raw, /argon2 binding|\/srv\/internal/, 'no internals in the answer');
  const line = logs.map((l) => JSON.parse(l) as { msg?: string; level?: number; err?: { message?: string } }).find((l) => l.msg === 'request failed');
  t.equal(line?.level, 50, 'logged at error level');
  t.match(line?.err?.message, /argon2 binding crashed/, 'with the error, for the operators');
});

/**
 * A 503 is an outage, an overload or a shutdown, not a bug: one warn line with its cause and no
 * stack (a database outage answered thousands of requests with an error line and a stack each:
 * resilience review, session 29). /readyz and the metrics are the alarm.
 */
t.test('a 503 is logged as a warning with its cause, without a stack', async (t) => {
  const { app, logs } = await buildTestApp(t);
  const { user, password } = await createUser(app.ctx.db, app);
  const hasher = app.ctx.hasher as { verify: typeof app.ctx.hasher.verify };
  hasher.verify = async () => {
    throw Object.assign(new Error('the hash queue is full'), { code: 'service_overloaded' });
  };
  const before = logs.length;
  const res = await api(app)({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.same([res.status, res.body.code], [503, 'service_unavailable']);
  const lines = logs.slice(before).map((l) => JSON.parse(l) as { msg?: string; level?: number; reason?: string; cause?: string; err?: unknown });
  t.notOk(lines.some((l) => l.msg === 'request failed'), 'no error line');
  const line = lines.find((l) => l.msg === 'service unavailable');
  t.match(line, { level: 40, reason: 'service_overloaded', code: 'service_unavailable', cause: 'the hash queue is full' }, 'a warning naming the cause, with its message (operations.md)');
  t.notOk(line && 'err' in line, 'without the error object and its stack');
});

/**
 * Bytes that do not parse right behind a good request on one connection (a body sent without
 * Content-Length is read as the next request): the good request is carried out, so its client
 * gets its own answer first, then the 400 that ends the connection — not a 400 alone, which said
 * nothing happened although the user was blocked (input fuzzing review, session 24).
 */
t.test('a request followed on its connection by bytes that do not parse gets its own answer before the 400', async (t) => {
  const { app } = await buildTestApp(t);
  const org = await createOrganization(app.ctx.db);
  const { user: admin } = await createUser(app.ctx.db, app, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'] });
  const { user: target } = await createUser(app.ctx.db, app, { organizationId: org.id });
  const token = (await signIn(app, admin)).accessToken;
  await app.listen({ host: '127.0.0.1', port: 0 });
  const socket = connect((app.server.address() as AddressInfo).port, '127.0.0.1');
  await once(socket, 'connect');
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
  socket.write(
    `POST /v1/organization/users/${target.id}/block HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: 0\r\n\r\n` +
      'BOGUS\u0001 / HTTP/1.1\r\n\r\n',
  );
  await once(socket, 'close');
  // An answer's body has no line break after it: the next status line follows it directly.
  const statuses = [...received.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);
  t.same(statuses, ['200', '400'], 'the block answered, then the bytes refused');
  t.match(received, /"code":"malformed_request"/);
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: target.id } })).status, 'BLOCKED', 'the block was made, as its answer said');
});
