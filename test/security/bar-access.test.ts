import { pino } from 'pino';
import t, { type Test } from 'tap';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { openDatabase } from '../../src/db/client.js';
import { generateKey, parseKeyring } from '../../src/lib/secret-box.js';
import { UndeclaredRouteAccessError } from '../../src/plugins/route-access.js';
import { buildTestApp, TEST_ENV } from '../helpers/app.js';
import { fakeClock } from '../helpers/clock.js';
import { createTestDatabase } from '../helpers/database.js';
import { api } from '../helpers/http.js';

/**
 * security.md item 23 — deny by default, every route declares who may call it:
 *  - the app refuses a route that declares no access (it cannot be served by mistake);
 *  - without credentials, every operation that is not explicitly public answers 401
 *    (bearer routes: unauthenticated; the service-client route: invalid_client), and the set of
 *    public operations is pinned here, so making a route public is a visible, reviewed change.
 * (Who may do what once authenticated: test/security/permission-matrix.test.ts and the policy
 * unit tests.)
 */

const PUBLIC_OPERATIONS = [
  'GET /.well-known/jwks.json',
  'GET /healthz',
  'GET /metrics', // optional METRICS_TOKEN; required in production (config)
  'GET /openapi.json',
  'GET /readyz',
  'POST /v1/activation',
  'POST /v1/activation/inspect',
  'POST /v1/auth/login',
  'POST /v1/auth/login/mfa',
  'POST /v1/auth/login/mfa-enrollment',
  'POST /v1/auth/login/mfa-enrollment/verify',
  'POST /v1/auth/refresh',
  'POST /v1/auth/revoke', // the refresh token in the body is the credential (logout when the access token has expired)
  'POST /v1/email-change/confirm', // the token from the mail to the new address is the credential
  'POST /v1/email-change/undo', // the token from the notice to the address left is the credential
  'POST /v1/mfa-reset/confirm',
  'POST /v1/password/forgot',
  'POST /v1/password/reset',
  'POST /v1/password/reset/inspect',
];

/** The real app built but not ready yet, so that a test can still add routes to it. */
async function unreadyApp(t: Test) {
  const { url } = await createTestDatabase(t);
  const database = openDatabase(url, { max: 2 });
  t.teardown(() => database.close());
  const app = await buildApp({
    config: loadConfig({ ...TEST_ENV, DATABASE_URL: url }),
    database,
    keyring: parseKeyring(`k:${generateKey()}`),
    clock: fakeClock(),
    logger: pino({ level: 'silent' }),
  });
  t.teardown(() => app.close());
  return app;
}

t.test('a route that declares no access is refused when it is added', async (t) => {
  const app = await unreadyApp(t);

  t.throws(() => app.get('/v1/forgotten-access', async () => ({ secret: 'data' })), UndeclaredRouteAccessError, 'no config.access: refused');
  t.throws(
    () => app.post('/v1/forgotten-access', { config: { rateLimit: { max: 1, timeWindow: 1000 } } }, async () => ({ secret: 'data' })),
    UndeclaredRouteAccessError,
    'a config without access: refused too',
  );
  t.doesNotThrow(() => app.get(
      '/v1/declared-public',
      { config: { access: 'public' }, schema: { operationId: 'barDeclaredPublic', tags: ['test'], summary: 'test route' } },
      async () => ({ ok: true }),
    ), 'declared: accepted');
  await app.ready();
  t.equal((await app.inject({ url: '/v1/declared-public' })).statusCode, 200, 'the declared route is served');
  const missing = await app.inject({ url: '/v1/forgotten-access' });
  t.equal(missing.statusCode, 404, 'the refused route was never served');
  t.equal(JSON.parse(missing.body).code, 'not_found');
});

/** route-access.ts exempts the docs UI (/docs, /docs/...) and @fastify/cors's OPTIONS * route only; standard-responses.ts requires an operationId. */
t.test('only the docs UI and the CORS preflight route go without access; a route named like them is refused, and so is one without an operationId (mutation review, session 21)', async (t) => {
  const app = await unreadyApp(t);
  const schema = (operationId: string) => ({ schema: { operationId, tags: ['test'], summary: 'test route' } });

  t.throws(() => app.get('/docs-export', schema('docsExport'), async () => ({ secret: 'data' })), UndeclaredRouteAccessError, '/docs-export is no docs route');
  t.throws(() => app.options('/v1/forgotten-access', schema('optionsForgotten'), async () => ({ secret: 'data' })), UndeclaredRouteAccessError, 'an OPTIONS route of its own');
  t.throws(() => app.get('*', schema('catchAll'), async () => ({ secret: 'data' })), UndeclaredRouteAccessError, 'a catch-all GET');
  t.throws(() => app.get('/v1/unnamed', { config: { access: 'public' } }, async () => ({ ok: true })), /has no schema\.operationId/, 'no operationId: refused');
});

t.test('without credentials every non-public operation answers 401; the public ones are exactly the known list', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const doc = app.swagger() as unknown as { paths: Record<string, Record<string, { security?: Record<string, string[]>[] }>> };
  const publicOps: string[] = [];
  let bearer = 0;
  for (const [path, operations] of Object.entries(doc.paths)) {
    for (const [method, operation] of Object.entries(operations)) {
      const key = `${method.toUpperCase()} ${path}`;
      const schemes = (operation.security ?? []).flatMap((s) => Object.keys(s));
      const optional = (operation.security ?? []).some((s) => Object.keys(s).length === 0);
      if (schemes.length === 0 || optional) {
        publicOps.push(key);
        continue;
      }
      const url = path.replace(/\{[^}]+\}/g, '0190a000-0000-7000-8000-000000000001');
      const res = await request({ method: method.toUpperCase() as 'GET', url });
      t.equal(res.status, 401, `${key}: 401 without credentials`);
      if (schemes.includes('bearerAuth')) {
        bearer++;
        t.equal(res.body.code, 'unauthenticated', `${key}: unauthenticated`);
        t.match(res.headers['www-authenticate'], /^Bearer /, `${key}: WWW-Authenticate Bearer`);
      } else {
        t.same(schemes, ['clientBasic'], `${key}: client authentication`);
        t.equal(res.body.code, 'invalid_client', `${key}: invalid_client`);
        t.match(res.headers['www-authenticate'], /^Basic /, `${key}: WWW-Authenticate Basic`);
      }
    }
  }
  t.ok(bearer >= 30, `${bearer} bearer-protected operations checked`);
  t.same(publicOps.sort(), [...PUBLIC_OPERATIONS].sort(), 'the public operations are exactly the reviewed list');
});
