import t from 'tap';
import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createOrganization, createUser, signIn } from '../helpers/factories.js';
import { openClient } from '../helpers/row-locks.js';
import { sha256Hex } from '../../src/lib/tokens.js';
import { onOneConnection } from '../../src/db/sql.js';

const CSO_SECRET = 'cso-secret-0123456789abcdef';
const basic = `Basic ${Buffer.from(`cso:${CSO_SECRET}`).toString('base64')}`;

/**
 * Found by session 20's multi-instance review. The hot paths run as statements prepared once per
 * pooled connection (db/sql.ts). When another instance's migration changes the type of a column
 * such a statement returns (a rolling deploy: the new instance migrates while the old one serves),
 * PostgreSQL refuses to run it again on that connection ("cached plan must not change result
 * type", 0A000): every warm connection answered one request with a 500. Now a statement on the
 * pool is run again on another connection (the refusing one is closed), and where it cannot be
 * (a statement on a connection held for a whole step) the answer is 503 with Retry-After.
 */

t.test('a column type changed by another instance\'s migration: no 500, the pool recovers at once', async (t) => {
  const { app, databaseUrl } = await buildTestApp(t, { SERVICE_CLIENTS: `cso:${sha256Hex(CSO_SECRET)}` });
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app, { organizationId: org.id, termsAccepted: true, preferencesSet: true });
  const tokens = await signIn(app, user);
  const introspect = () => request({ url: '/v1/tokens/introspect', headers: { authorization: basic }, body: { token: tokens.accessToken } });
  const me = () => request({ url: '/v1/me', token: tokens.accessToken });

  // Every pooled connection prepares the statements (the test pool has 5; 20 requests at once use them all).
  const warm = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? me() : introspect())));
  t.same([...new Set(warm.map((r) => r.status))], [200]);
  t.equal(app.ctx.pool.totalCount, app.ctx.pool.options.max, 'every connection of the pool is open');

  // What the next release's migration might do, from another connection.
  const other = await openClient(t, databaseUrl);
  await other.query('ALTER TABLE users ALTER COLUMN terms_version TYPE varchar(64)');
  await other.query('ALTER TABLE sessions ALTER COLUMN amr TYPE varchar(16)[]');

  const after = [];
  for (let i = 0; i < 6; i++) after.push(await me(), await introspect());
  t.same(
    after.map((r) => `${r.status} ${r.status === 200 ? '' : r.body.code}`),
    Array.from({ length: 12 }, () => '200 '),
    'every request answered 200: the statement ran again on a connection that had not prepared it',
  );
  t.equal(after[0]!.body.termsVersion, warm[0]!.body.termsVersion, 'the same answer as before');
});

t.test('on a held connection (refresh, code step): a first statement refused is run again elsewhere; a later one answers 503, nothing retried', async (t) => {
  const { app, databaseUrl } = await buildTestApp(t, {}, { beforeReady: (app) => app.register(twoStatementRoute) });
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app, { organizationId: org.id, termsAccepted: true, preferencesSet: true });
  // Sessions enough to refresh on every pooled connection at once.
  const sessions = await Promise.all(Array.from({ length: 10 }, () => signIn(app, user)));
  const warm = await Promise.all(sessions.map((s) => request({ url: '/v1/auth/refresh', body: { refreshToken: s.refreshToken } })));
  t.same([...new Set(warm.map((r) => r.status))], [200]);
  t.equal(app.ctx.pool.totalCount, app.ctx.pool.options.max, 'every connection of the pool is open');

  const other = await openClient(t, databaseUrl);
  await other.query('ALTER TABLE sessions ALTER COLUMN amr TYPE varchar(16)[]');
  const refreshed = [];
  for (const res of warm) refreshed.push(await request({ url: '/v1/auth/refresh', body: { refreshToken: res.body.refreshToken } }));
  t.same([...new Set(refreshed.map((r) => r.status))], [200], 'every refresh answered 200 (its one statement ran again on a fresh connection)');

  // The route's second statement reads organizations.name, changed now: its first already ran.
  // (The refreshes replaced the stale connections: every connection prepares the route's anew.)
  const routeWarm = await Promise.all(Array.from({ length: 10 }, () => request({ url: '/test/two-statements' })));
  t.same([...new Set(routeWarm.map((r) => r.status))], [200]);
  t.equal(app.ctx.pool.totalCount, app.ctx.pool.options.max);
  await other.query('ALTER TABLE organizations ALTER COLUMN name TYPE varchar(300)');
  const marks = await app.ctx.db.$queryRawUnsafe<{ n: number }[]>('SELECT count(*)::int AS n FROM test_marks');
  const first = await request({ url: '/test/two-statements' });
  t.equal(first.status, 503, 'not retried: the first statement had run');
  t.equal(first.body.code, 'service_unavailable');
  t.equal(first.headers['retry-after'], '1');
  const after = await app.ctx.db.$queryRawUnsafe<{ n: number }[]>('SELECT count(*)::int AS n FROM test_marks');
  t.equal(after[0]!.n, marks[0]!.n + 1, 'the first statement ran once, not again');
});

/** A route whose one held connection runs two prepared statements: a write, then a read of organizations. */
const twoStatementRoute: FastifyPluginAsyncZod = async (app) => {
  await app.ctx.pool.query('CREATE TABLE IF NOT EXISTS test_marks (at timestamptz NOT NULL DEFAULT now())');
  app.get(
    '/test/two-statements',
    { config: { access: 'public' }, schema: { operationId: 'testTwoStatements', response: { 200: z.object({ ok: z.boolean() }) } } },
    async () =>
      onOneConnection(app.ctx.pool, async (sql) => {
        await sql('INSERT INTO test_marks DEFAULT VALUES', []);
        await sql('SELECT name FROM organizations LIMIT 1', []);
        return { ok: true };
      }),
  );
};
