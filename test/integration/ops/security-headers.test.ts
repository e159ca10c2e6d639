import t from 'tap';
import { buildTestApp } from '../../helpers/app.js';
import { api } from '../../helpers/http.js';
import { createOrganization, createUser, signIn } from '../../helpers/factories.js';

/** Security headers on API responses and /docs; CORS for the configured frontend origins only. */

const SHOP = 'https://shop.example.test';
const CSO = 'https://cso.example.test';

t.test('API responses carry strict security headers', async (t) => {
  const { app } = await buildTestApp(t);
  const res = await api(app)({ url: '/healthz' });
  t.equal(res.status, 200);
  const csp = String(res.headers['content-security-policy']);
  t.match(csp, /default-src 'none'/, 'JSON answers may load nothing');
  t.match(csp, /frame-ancestors 'none'/);
  t.equal(res.headers['x-content-type-options'], 'nosniff');
  t.equal(res.headers['x-frame-options'], 'DENY');
  t.match(res.headers['strict-transport-security'], /max-age=31536000/);
  t.equal(res.headers['referrer-policy'], 'no-referrer');
  t.equal(res.headers['cross-origin-resource-policy'], 'same-origin');
  t.notOk(res.headers['x-powered-by']);
  t.notOk(res.headers['access-control-allow-origin'], 'no CORS without CORS_ORIGINS');

  // Errors too (headers are set before routing).
  const missing = await app.inject({ url: '/v1/nothing-here' });
  t.equal(missing.statusCode, 404);
  t.match(missing.headers['content-security-policy'], /default-src 'none'/);
});

/** The whole fixed set helmet computes with our options (src/plugins/security-headers.ts): pinned, so a helmet upgrade that changes one shows here. */
const COMMON = {
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'origin-agent-cluster': '?1',
  'referrer-policy': 'no-referrer',
  'strict-transport-security': 'max-age=31536000; includeSubDomains',
  'x-content-type-options': 'nosniff',
  'x-dns-prefetch-control': 'off',
  'x-download-options': 'noopen',
  'x-frame-options': 'DENY',
  'x-permitted-cross-domain-policies': 'none',
  'x-xss-protection': '0',
};
const API_CSP = "default-src 'none';frame-ancestors 'none';base-uri 'none';form-action 'none'";
const DOCS_CSP =
  "default-src 'self';base-uri 'self';script-src 'self';script-src-attr 'none';style-src 'self' 'unsafe-inline';" +
  "img-src 'self' data:;font-src 'self' data:;connect-src 'self';object-src 'none';frame-ancestors 'none';form-action 'self'";

t.test('every response carries the complete security header set, whoever answers it', async (t) => {
  const { app } = await buildTestApp(t);
  const securityHeaders = (headers: Record<string, unknown>) =>
    Object.fromEntries(Object.keys({ ...COMMON, 'content-security-policy': '' }).map((name) => [name, headers[name]]));
  const cases: [string, { method?: 'GET' | 'POST'; url: string; payload?: object }, string][] = [
    ['a JSON answer', { url: '/healthz' }, API_CSP],
    ['401 from authentication', { url: '/v1/me' }, API_CSP],
    ['401 from client authentication', { method: 'POST', url: '/v1/tokens/introspect', payload: { token: 'x' } }, API_CSP],
    ['400 from validation', { method: 'POST', url: '/v1/auth/login', payload: {} }, API_CSP],
    ['404, no route', { url: '/v1/nothing-here' }, API_CSP],
    ['the docs page', { url: '/docs/' }, DOCS_CSP],
    ['a docs asset', { url: '/docs/static/swagger-initializer.js' }, DOCS_CSP],
    ['404 under /docs/static', { url: '/docs/static/nothing.js' }, DOCS_CSP],
  ];
  for (const [label, request, csp] of cases) {
    const res = await app.inject(request);
    t.same(securityHeaders(res.headers), { ...COMMON, 'content-security-policy': csp }, `${label} (${res.statusCode})`);
  }
});

t.test('API answers are not cached (Cache-Control: no-store) unless the route says otherwise: personal lists, errors and 404s included; the JWKS and the /docs assets may be', async (t) => {
  const { app } = await buildTestApp(t);
  const org = await createOrganization(app.ctx.db);
  const admin = await createUser(app.ctx.db, app, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'], termsAccepted: true, preferencesSet: true });
  const { accessToken } = await signIn(app, admin.user);
  const bearer = { authorization: `Bearer ${accessToken}` };
  const personal: [string, { url: string; headers?: Record<string, string> }][] = [
    ['my sessions (IP addresses, user agents)', { url: '/v1/me/sessions', headers: bearer }],
    ["my organisation's administrators", { url: '/v1/me/organization/administrators', headers: bearer }],
    ["the organisation's users", { url: '/v1/organization/users', headers: bearer }],
    ['one user', { url: `/v1/organization/users/${admin.user.id}`, headers: bearer }],
    ['the audit log', { url: '/v1/organization/audit-events', headers: bearer }],
    ['a 401', { url: '/v1/me/sessions' }],
    ['a 404', { url: '/v1/nothing-here' }],
    ['/healthz', { url: '/healthz' }],
  ];
  for (const [label, request] of personal) {
    const res = await app.inject(request);
    t.equal(res.headers['cache-control'], 'no-store', `${label} (${res.statusCode})`);
  }
  t.match((await app.inject({ url: '/.well-known/jwks.json' })).headers['cache-control'], /^public, max-age=\d+$/, 'the JWKS is meant to be cached');
  t.not((await app.inject({ url: '/docs/static/swagger-initializer.js' })).headers['cache-control'], 'no-store', 'the /docs assets may be cached');
});

t.test('/docs still renders: its page and assets get a policy that allows exactly themselves', async (t) => {
  const { app } = await buildTestApp(t);
  const page = await app.inject({ url: '/docs/' });
  t.equal(page.statusCode, 200);
  t.match(page.headers['content-type'], /text\/html/);
  const csp = String(page.headers['content-security-policy']);
  t.match(csp, /default-src 'self'/);
  t.match(csp, /script-src 'self'/);
  t.notMatch(csp, /script-src[^;]*unsafe-inline/, 'no inline scripts allowed');
  t.match(csp, /frame-ancestors 'none'/);

  // Every script and stylesheet the page references is same-origin and served.
  const assets = [...page.body.matchAll(/(?:src|href)="([^"]+\.(?:js|css))"/g)].map((m) => m[1]!);
  t.ok(assets.length >= 3, `assets referenced: ${assets.join(', ')}`);
  t.notMatch(page.body, /<script>(?!\s*<\/script>)/, 'the page has no inline script');
  for (const asset of assets) {
    t.notMatch(asset, /^https?:/, `${asset} is same-origin`);
    const res = await app.inject({ url: new URL(asset, 'http://x/docs/').pathname });
    t.equal(res.statusCode, 200, `${asset} is served`);
  }
  // The UI fetches the document from its own origin (connect-src 'self').
  const initializer = await app.inject({ url: '/docs/static/swagger-initializer.js' });
  t.equal(initializer.statusCode, 200);
  t.equal((await app.inject({ url: '/docs/json' })).statusCode, 200);
});

t.test('CORS: configured origins only, no credentials, useful headers exposed', async (t) => {
  const { app } = await buildTestApp(t, { CORS_ORIGINS: `${SHOP}, ${CSO}` });
  const request = api(app);

  const fromShop = await request({ url: '/healthz', headers: { origin: SHOP } });
  t.equal(fromShop.headers['access-control-allow-origin'], SHOP);
  t.notOk(fromShop.headers['access-control-allow-credentials'], 'credentials are never allowed');
  const exposed = String(fromShop.headers['access-control-expose-headers']).toLowerCase();
  t.match(exposed, /retry-after/);
  t.match(exposed, /x-request-id/);
  t.match(String(fromShop.headers.vary), /Origin/);

  t.equal((await request({ url: '/healthz', headers: { origin: CSO } })).headers['access-control-allow-origin'], CSO);

  const foreign = await request({ url: '/healthz', headers: { origin: 'https://evil.example' } });
  t.equal(foreign.status, 200, 'the request itself is answered (CORS is enforced by the browser)');
  t.notOk(foreign.headers['access-control-allow-origin'], 'but no foreign origin is allowed to read it');

  const preflight = await app.inject({
    method: 'OPTIONS',
    url: '/healthz',
    headers: { origin: SHOP, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
  });
  t.equal(preflight.statusCode, 204);
  t.equal(preflight.headers['access-control-allow-origin'], SHOP);
  t.match(String(preflight.headers['access-control-allow-methods']), /POST/);
  t.match(String(preflight.headers['access-control-allow-headers']).toLowerCase(), /authorization/);
  t.equal(preflight.headers['access-control-max-age'], '600');

  const foreignPreflight = await app.inject({
    method: 'OPTIONS',
    url: '/healthz',
    headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
  });
  t.notOk(foreignPreflight.headers['access-control-allow-origin']);
  t.equal(foreignPreflight.statusCode, 404, 'a foreign preflight is not answered');
});

t.test('CORS: an origin that merely starts with a configured one is foreign (mutation review, session 20)', async (t) => {
  const { app } = await buildTestApp(t, { CORS_ORIGINS: SHOP });
  const request = api(app);
  for (const origin of [`${SHOP}.evil.example`, `${SHOP}:8443`, `${SHOP}evil.example`, 'https://shop.example.tes']) {
    const simple = await request({ url: '/healthz', headers: { origin } });
    t.notOk(simple.headers['access-control-allow-origin'], `${origin}: no Access-Control-Allow-Origin`);
    // Preflights are not in the API description, so through inject rather than the contract-checking helper.
    const preflight = await app.inject({
      method: 'OPTIONS',
      url: '/v1/me',
      headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
    });
    t.notOk(preflight.headers['access-control-allow-origin'], `${origin}: no preflight Access-Control-Allow-Origin`);
  }
  const allowed = await request({ url: '/healthz', headers: { origin: SHOP } });
  t.equal(allowed.headers['access-control-allow-origin'], SHOP, 'the configured origin itself is allowed');
});

/**
 * A frontend on an allowed origin sends JSON with its token on every method the API has; a preflight
 * that left one out (PATCH, Content-Type) would make the browser refuse the call. It reads the
 * request id, Retry-After, the rate-limit headers and the 401's challenge (error="invalid_token": refresh).
 */
t.test('CORS: a preflight allows every method of the document and the headers a frontend sends; the headers it reads are exposed (mutation review, session 21)', async (t) => {
  const { app } = await buildTestApp(t, { CORS_ORIGINS: SHOP });
  const doc = app.swagger() as unknown as { paths: Record<string, Record<string, unknown>> };
  const methods = [...new Set(Object.values(doc.paths).flatMap((operations) => Object.keys(operations).map((m) => m.toUpperCase())))];
  t.ok(['GET', 'POST', 'PUT', 'PATCH', 'DELETE'].every((m) => methods.includes(m)), `methods of the document: ${methods.join(', ')}`);
  const list = (value: unknown) => String(value).toLowerCase().split(/,\s*/);
  for (const method of methods) {
    const preflight = await app.inject({
      method: 'OPTIONS',
      url: '/v1/me',
      headers: { origin: SHOP, 'access-control-request-method': method, 'access-control-request-headers': 'authorization,content-type,accept-language' },
    });
    t.equal(preflight.statusCode, 204, `${method}: answered`);
    t.ok(list(preflight.headers['access-control-allow-methods']).includes(method.toLowerCase()), `${method}: allowed`);
    const headers = list(preflight.headers['access-control-allow-headers']);
    t.ok(['authorization', 'content-type', 'accept-language'].every((h) => headers.includes(h)), `${method}: Authorization, Content-Type and Accept-Language allowed (${headers.join(', ')})`);
  }
  const refused = await api(app)({ url: '/v1/me', headers: { origin: SHOP } });
  t.equal(refused.status, 401);
  t.same(
    list(refused.headers['access-control-expose-headers']).sort(),
    ['retry-after', 'www-authenticate', 'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'x-request-id'],
    'the frontend may read these',
  );
});
