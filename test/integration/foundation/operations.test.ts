import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { READINESS_CHECK_REUSE_MS } from '../../../src/modules/health/health.routes.js';
import { buildTestApp } from '../../helpers/app.js';
import { api } from '../../helpers/http.js';

t.test('health, readiness, docs and the OpenAPI document', async (t) => {
  const { app, database } = await buildTestApp(t);
  const request = api(app);

  const health = await request({ url: '/healthz' });
  t.equal(health.status, 200);
  t.same(health.body, { status: 'ok' });
  t.match(health.headers['x-request-id'], /^[0-9a-f-]{36}$/);

  t.equal((await request({ url: '/readyz' })).status, 200);

  const doc = await request({ url: '/openapi.json' });
  t.equal(doc.status, 200);
  t.equal(doc.body.openapi, '3.1.0');
  t.ok(doc.body.paths['/healthz'] && doc.body.paths['/readyz'], 'operations endpoints are documented');
  t.ok(Array.isArray(doc.body['x-error-codes']) && doc.body['x-error-codes'].some((c: { code: string }) => c.code === 'validation_failed'));

  const docs = await app.inject({ url: '/docs/' });
  t.equal(docs.statusCode, 200);
  t.match(docs.headers['content-type'], /text\/html/);

  // The database going away turns readiness into a problem+json 503, never a 500 (from the next
  // check on: one answer is reused for up to READINESS_CHECK_REUSE_MS).
  await database.pool.end();
  await sleep(READINESS_CHECK_REUSE_MS);
  const down = await request({ url: '/readyz' });
  t.equal(down.status, 503);
  t.equal(down.body.code, 'service_unavailable');
  t.equal(down.headers['retry-after'], '5');
});

t.test('unknown routes answer problem+json 404', async (t) => {
  const { app } = await buildTestApp(t);
  // Not hex: the answer's request id (a UUID) could contain "abc" by chance.
  const res = await api(app)({ url: '/v1/does-not-exist?token=query-secret-xyz' });
  t.equal(res.status, 404);
  t.match(res.headers['content-type'], /application\/problem\+json/);
  t.equal(res.body.code, 'not_found');
  t.notMatch(res.raw, /query-secret-xyz/, 'query strings are not echoed');
});

t.test('a flood of readiness probes costs one database round trip a second, not one each', async (t) => {
  const { app } = await buildTestApp(t);
  const pool = app.ctx.pool;
  const query = pool.query.bind(pool);
  let checks = 0;
  pool.query = ((...args: Parameters<typeof pool.query>) => {
    if (args[0] === 'SELECT 1') checks++;
    return query(...args);
  }) as typeof pool.query;
  t.teardown(() => {
    pool.query = query;
  });
  const started = performance.now();
  const answers = await Promise.all(Array.from({ length: 200 }, () => app.inject({ url: '/readyz' })));
  const took = performance.now() - started;
  t.ok(answers.every((a) => a.statusCode === 200), 'all ready');
  t.ok(checks <= Math.ceil(took / 1000) + 1, `${checks} checks for 200 probes in ${Math.round(took)} ms: at most one a second`);
  const before = checks;
  await sleep(READINESS_CHECK_REUSE_MS);
  await app.inject({ url: '/readyz' });
  t.equal(checks, before + 1, 'a probe a second later checks again');
});
