import pg from 'pg';
import t from 'tap';
import { recordAudit } from '../../../src/modules/audit/audit.service.js';
import { buildTestApp } from '../../helpers/app.js';
import { api } from '../../helpers/http.js';

/** GET /metrics: Prometheus text with the series operators alert on (issue 7, "Metrics"). */

/** The value of one series line, e.g. value(body, 'x_total{type="a"}'); undefined when absent. */
function value(body: string, series: string): number | undefined {
  const line = body.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

t.test('scrape after some traffic: HTTP, process, hashing, pool, outbox and audit series', async (t) => {
  // Slow hashes on one slot, so the scrape sees one running and the rest waiting.
  const { app } = await buildTestApp(t, { HASH_MAX_CONCURRENT: '1', ARGON2_MEMORY_KIB: '65536', ARGON2_TIME_COST: '4' });
  const request = api(app);
  const meta = { ip: '127.0.0.1', userAgent: 'tap' };

  for (let i = 0; i < 3; i++) t.equal((await request({ url: '/healthz' })).status, 200);
  t.equal((await request({ url: '/readyz' })).status, 200);
  t.equal((await app.inject({ url: '/v1/no/such/thing/12345' })).statusCode, 404);

  // Outbox: two unsent (one of them failed once), one sent.
  const mail = { toAddress: 'a@example.test', template: 't', subject: 's', textBody: 'x', htmlBody: '<p>x</p>' };
  const written = new Date(Date.now() - 90_000);
  await app.ctx.db.mailOutbox.create({ data: { ...mail, createdAt: written, nextAttemptAt: written } }); // due when written, as enqueueMail does
  await app.ctx.db.mailOutbox.create({ data: { ...mail, attempts: 2, lastError: 'ECONNREFUSED' } });
  await app.ctx.db.mailOutbox.create({ data: { ...mail, sentAt: new Date() } });

  // Audit events as the feature modules write them (login outcomes, lockouts ...).
  await app.ctx.db.$transaction(async (tx) => {
    await recordAudit(tx, app.ctx.clock, { type: 'login.password_failed', meta });
    await recordAudit(tx, app.ctx.clock, { type: 'login.password_failed', meta });
    await recordAudit(tx, app.ctx.clock, { type: 'login.locked', meta });
  });

  // Hashes in flight while scraping show up in the queue gauges.
  const hashing = Promise.all([1, 2, 3].map(() => app.ctx.hasher.hash('correct horse battery staple')));
  const scrape = await request({ url: '/metrics' });
  await hashing;
  t.equal(scrape.status, 200);
  t.match(scrape.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  const body = scrape.raw;

  t.equal(value(body, 'webshop_auth_http_request_duration_seconds_count{method="GET",route="/healthz",status_code="200"}'), 3);
  t.equal(value(body, 'webshop_auth_http_request_duration_seconds_count{method="GET",route="/readyz",status_code="200"}'), 1);
  t.equal(
    value(body, 'webshop_auth_http_request_duration_seconds_count{method="GET",route="unmatched",status_code="404"}'),
    1,
    'unknown URLs share one label value (bounded cardinality)',
  );
  t.notMatch(body, /no\/such\/thing/, 'raw URLs never become labels');
  t.ok(value(body, 'webshop_auth_http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/healthz",status_code="200"}') === 3);

  t.ok(value(body, 'webshop_auth_process_cpu_user_seconds_total') !== undefined, 'process metrics');
  t.ok(value(body, 'webshop_auth_process_resident_memory_bytes')! > 0);
  t.ok(value(body, 'webshop_auth_nodejs_eventloop_lag_seconds') !== undefined);

  t.equal(value(body, 'webshop_auth_hash_queue_running'), 1, 'one hash runs');
  t.ok(value(body, 'webshop_auth_hash_queue_waiting')! >= 1, 'the others wait');
  t.equal(value(body, 'webshop_auth_hash_queue_capacity{kind="concurrent"}'), 1);
  t.equal(value(body, 'webshop_auth_hash_queue_capacity{kind="queued"}'), 64);

  t.ok(value(body, 'webshop_auth_db_pool_connections{state="total"}')! >= 1, 'the pool has connections');
  t.ok(value(body, 'webshop_auth_db_pool_connections{state="idle"}') !== undefined);
  t.equal(value(body, 'webshop_auth_db_pool_connections{state="waiting"}'), 0);
  t.equal(value(body, 'webshop_auth_db_pool_max'), 5);

  t.equal(value(body, 'webshop_auth_mail_outbox_scrape_ok'), 1);
  t.equal(value(body, 'webshop_auth_mail_outbox_backlog'), 2);
  t.equal(value(body, 'webshop_auth_mail_outbox_retrying'), 1);
  t.ok(value(body, 'webshop_auth_mail_outbox_oldest_unsent_seconds')! >= 80);

  // Counters are per process (other apps in this process count too), so compare at least.
  t.ok(value(body, 'webshop_auth_audit_events_total{type="login.password_failed"}')! >= 2);
  t.ok(value(body, 'webshop_auth_audit_events_total{type="login.locked"}')! >= 1);

  t.match(body, /webshop_auth_event_loop_delay_mean_seconds \d/, 'load-shedding gauge');

  // Database down: the scrape still answers at once; the outbox gauges say they are stale.
  await app.ctx.pool.end();
  const started = Date.now();
  const down = await request({ url: '/metrics' });
  t.equal(down.status, 200);
  t.ok(Date.now() - started < 3000, 'bounded by the outbox query timeout');
  t.equal(value(down.raw, 'webshop_auth_mail_outbox_scrape_ok'), 0);
  t.equal(value(down.raw, 'webshop_auth_mail_outbox_backlog'), 2, 'last known value kept');
});

t.test("a mail waiting on purpose (a block or unblock over its address's budget, due later) does not age the oldest unsent mail; once due it counts from when it was due (session 25)", async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const mail = { toAddress: 'a@example.test', template: 'account_unblocked', subject: 's', textBody: 'x', htmlBody: '<p>x</p>' };
  const waiting = await app.ctx.db.mailOutbox.create({
    data: { ...mail, createdAt: new Date(Date.now() - 50 * 60_000), nextAttemptAt: new Date(Date.now() + 10 * 60_000) },
  });
  const oldest = async () => value((await request({ url: '/metrics' })).raw, 'webshop_auth_mail_outbox_oldest_unsent_seconds')!;
  t.equal(await oldest(), 0, 'written 50 min ago, due in 10: nothing is late');
  t.equal(value((await request({ url: '/metrics' })).raw, 'webshop_auth_mail_outbox_backlog'), 1, 'but it is in the backlog');
  await app.ctx.db.mailOutbox.update({ where: { id: waiting.id }, data: { nextAttemptAt: new Date(Date.now() - 30_000) } });
  const late = await oldest();
  t.ok(late >= 29 && late < 120, `due 30 s ago: late by that, not by the 50 min since it was written (${late})`);
});

t.test('METRICS_TOKEN: bearer token required', async (t) => {
  const token = 'metrics-token-0123456789abcdef';
  const { app } = await buildTestApp(t, { METRICS_TOKEN: token });
  const request = api(app);

  const anonymous = await request({ url: '/metrics' });
  t.equal(anonymous.status, 401);
  t.equal(anonymous.body.code, 'unauthenticated');
  t.match(anonymous.headers['www-authenticate'], /^Bearer/);

  const wrong = await request({ url: '/metrics', token: 'metrics-token-0123456789abcdeX' });
  t.equal(wrong.status, 401);
  const basic = await request({ url: '/metrics', headers: { authorization: `Basic ${Buffer.from(`x:${token}`).toString('base64')}` } });
  t.equal(basic.status, 401);

  const ok = await request({ url: '/metrics', token });
  t.equal(ok.status, 200);
  t.match(ok.raw, /webshop_auth_http_request_duration_seconds/);
});

t.test('/metrics is in the OpenAPI document as text/plain with the optional token', async (t) => {
  const { app } = await buildTestApp(t);
  const doc = (await api(app)({ url: '/openapi.json' })).body;
  const op = doc.paths['/metrics'].get;
  t.equal(op.operationId, 'getMetrics');
  t.ok(op.responses['200'].content['text/plain']);
  t.ok(op.responses['401']);
  t.same(op.security, [{}, { metricsToken: [] }]);
  t.ok(doc.components.securitySchemes.metricsToken);
});

t.test('a scrape whose outbox query is blocked answers after the outbox timeout, the outbox gauges marked stale (mutation review, session 21)', async (t) => {
  const { app, databaseUrl } = await buildTestApp(t);
  const request = api(app);
  t.equal(value((await request({ url: '/metrics' })).raw, 'webshop_auth_mail_outbox_scrape_ok'), 1);
  // A migration or a vacuum full holding the table: the query waits (up to DATABASE_QUERY_TIMEOUT_MS, 10 s).
  const locker = new pg.Client({ connectionString: databaseUrl });
  await locker.connect();
  t.teardown(() => locker.end());
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE mail_outbox IN ACCESS EXCLUSIVE MODE');
  const started = Date.now();
  const scrape = await request({ url: '/metrics' });
  const took = Date.now() - started;
  await locker.query('ROLLBACK');
  t.equal(scrape.status, 200);
  t.ok(took < 3000, `answered after ${took} ms`);
  t.equal(value(scrape.raw, 'webshop_auth_mail_outbox_scrape_ok'), 0);
});

t.test('db_pool_connections: connections checked out count as in_use, not idle (mutation review, session 21)', async (t) => {
  const { app } = await buildTestApp(t);
  const held = await Promise.all(Array.from({ length: 5 }, () => app.ctx.pool.connect()));
  let body: string;
  try {
    body = (await api(app)({ url: '/metrics' })).raw;
  } finally {
    for (const client of held) client.release();
  }
  t.equal(value(body, 'webshop_auth_db_pool_connections{state="total"}'), 5);
  t.equal(value(body, 'webshop_auth_db_pool_connections{state="in_use"}'), 5, 'all five held');
  t.equal(value(body, 'webshop_auth_db_pool_connections{state="idle"}'), 0);
});

t.test('METRICS_TOKEN: the scheme name is case-insensitive, the token is not (mutation review, session 21)', async (t) => {
  const token = 'metrics-token-0123456789abcdef';
  const { app } = await buildTestApp(t, { METRICS_TOKEN: token });
  const request = api(app);
  t.equal((await request({ url: '/metrics', headers: { authorization: `bearer ${token}` } })).status, 200, 'RFC 9110: bearer = Bearer');
  t.equal((await request({ url: '/metrics', headers: { authorization: `Bearer ${token.toUpperCase()}` } })).status, 401);
});
