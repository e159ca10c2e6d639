import { randomBytes } from 'node:crypto';
import { connect, createServer, type AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { Redis } from 'ioredis';
import t, { type Test } from 'tap';
import { z } from 'zod';
import { REDIS_COMMAND_TIMEOUT_MS, REDIS_RETRY_AFTER_FAILURE_MS } from '../../../src/plugins/rate-limit.js';
import { sha256Hex } from '../../../src/lib/tokens.js';
import { buildTestApp } from '../../helpers/app.js';
import { api } from '../../helpers/http.js';
import { freePort } from '../../../scripts/free-port.js';
import { startRedis, stopRedis, waitFor } from '../../helpers/redis-server.js';

/**
 * Rate limits (security.md item 7): 429 problem+json with Retry-After, per IP, per route;
 * counters shared through Redis across instances; and the documented Redis-down behaviour:
 * each instance falls back to in-memory counters, so limits never switch off.
 */

const SHARED_REDIS = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/9';
const LIMIT = 3;

/** A tiny route with a per-route limit, registered the way feature routes declare theirs. */
const limitedRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post(
    '/test/limited',
    {
      config: { access: 'public', rateLimit: { max: LIMIT, timeWindow: '1 minute' } },
      schema: { operationId: 'testLimited', response: { 200: z.object({ ok: z.boolean() }) } },
    },
    async () => ({ ok: true }),
  );
  app.get(
    '/test/open',
    { config: { access: 'public' }, schema: { operationId: 'testOpen', response: { 200: z.object({ ok: z.boolean() }) } } },
    async () => ({ ok: true }),
  );
};

function env(extra: Record<string, string> = {}): Record<string, string> {
  return { RATE_LIMIT_ENABLED: 'true', TRUST_PROXY: 'loopback', REDIS_KEY_PREFIX: `test-${randomBytes(6).toString('hex')}:`, ...extra };
}

async function limitedApp(t: Test, extra: Record<string, string> = {}) {
  return buildTestApp(t, env(extra), { beforeReady: (app) => app.register(limitedRoutes) });
}

function client(app: FastifyInstance, ip = '203.0.113.7') {
  const request = api(app);
  return {
    limited: () => request({ method: 'POST', url: '/test/limited', headers: { 'x-forwarded-for': ip } }),
    open: () => request({ url: '/test/open', headers: { 'x-forwarded-for': ip } }),
    health: () => request({ url: '/healthz', headers: { 'x-forwarded-for': ip } }),
  };
}





t.test('in memory: per-route limit answers 429 problem+json with Retry-After, per IP', async (t) => {
  const { app } = await limitedApp(t);
  t.equal(app.rateLimitBackend.kind, 'memory');
  const a = client(app, '203.0.113.7');

  for (let i = 1; i <= LIMIT; i++) {
    const res = await a.limited();
    t.equal(res.status, 200, `request ${i} is within the limit`);
    t.equal(res.headers['x-ratelimit-limit'], String(LIMIT));
    t.equal(res.headers['x-ratelimit-remaining'], String(LIMIT - i));
  }
  const over = await a.limited();
  t.equal(over.status, 429);
  t.match(over.headers['content-type'], /application\/problem\+json/);
  t.equal(over.body.code, 'rate_limited');
  const retryAfter = Number(over.headers['retry-after']);
  t.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After survives the error handler (${over.headers['retry-after']})`);
  t.equal(over.body.retryAfter, retryAfter, 'the body carries the same number');
  t.match(over.headers['x-request-id'], /^[0-9a-f-]{36}$/);

  // Another client IP has its own budget; the limited one stays limited.
  t.equal((await client(app, '198.51.100.20').limited()).status, 200);
  t.equal((await a.limited()).status, 429);

  const scrape = await app.inject({ url: '/metrics' });
  t.match(scrape.body, /webshop_auth_rate_limited_total\{route="\/test\/limited"\} 2/);
});

t.test('the global per-IP ceiling covers every route but the operations endpoints', async (t) => {
  const { app } = await limitedApp(t, { RATE_LIMIT_GLOBAL_PER_MINUTE: '5' });
  const c = client(app, '192.0.2.44');
  for (let i = 0; i < 5; i++) t.equal((await c.open()).status, 200);
  const over = await c.open();
  t.equal(over.status, 429);
  t.equal(over.body.code, 'rate_limited');
  t.ok(Number(over.headers['retry-after']) >= 1);
  // Unmatched URLs count too (scanners), while probes and scrapes always get through.
  // (app.inject: an unknown path is outside the OpenAPI contract by definition.)
  t.equal((await app.inject({ url: '/v1/nope', headers: { 'x-forwarded-for': '192.0.2.44' } })).statusCode, 429);
  for (let i = 0; i < 10; i++) t.equal((await c.health()).status, 200, '/healthz is never limited');
  t.equal((await client(app, '192.0.2.45').open()).status, 200, 'other IPs are unaffected');
});

t.test('service clients that authenticate and JWKS fetches are outside the per-IP ceiling; failed client logins count', async (t) => {
  const secret = 'cso-secret-for-the-ceiling-test-0123456789';
  const { app } = await limitedApp(t, { RATE_LIMIT_GLOBAL_PER_MINUTE: '5', SERVICE_CLIENTS: `cso:${sha256Hex(secret)}` });
  const request = api(app);
  const ip = '192.0.2.77';
  const introspect = (authorization: string) =>
    request({ method: 'POST', url: '/v1/tokens/introspect', headers: { 'x-forwarded-for': ip, authorization }, body: { token: 'not-a-token' } });
  const basic = (id: string, pass: string) => `Basic ${Buffer.from(`${id}:${pass}`).toString('base64')}`;

  for (let i = 0; i < 20; i++) t.same((await introspect(basic('cso', secret))).body, { active: false }, `introspection ${i + 1} by the client`);
  for (let i = 0; i < 20; i++) t.equal((await request({ url: '/.well-known/jwks.json', headers: { 'x-forwarded-for': ip } })).status, 200, `JWKS ${i + 1}`);
  t.equal((await client(app, ip).open()).status, 200, 'none of them used up the address budget');

  for (let i = 0; i < 4; i++) t.equal((await introspect(basic('cso', 'wrong'))).status, 401, `failed client login ${i + 1}`);
  const over = await introspect(basic('cso', 'wrong'));
  t.equal(over.status, 429, 'failed client logins count against the address');
  t.equal(over.body.code, 'rate_limited');
  t.same((await introspect(basic('cso', secret))).body, { active: false }, 'the client itself still gets through');
});

t.test('Redis: two instances share the counters', async (t) => {
  const shared = env({ REDIS_URL: SHARED_REDIS });
  const one = await buildTestApp(t, shared, { beforeReady: (app) => app.register(limitedRoutes) });
  const two = await buildTestApp(t, shared, { beforeReady: (app) => app.register(limitedRoutes) });
  await waitFor('both instances connected to Redis', () =>
    one.app.rateLimitBackend.redisStatus === 'ready' && two.app.rateLimitBackend.redisStatus === 'ready',
  );
  t.equal(one.app.rateLimitBackend.kind, 'redis');

  const a = client(one.app, '203.0.113.99');
  const b = client(two.app, '203.0.113.99');
  t.equal((await a.limited()).status, 200);
  t.equal((await b.limited()).status, 200);
  t.equal((await a.limited()).status, 200);
  const over = await b.limited();
  t.equal(over.status, 429, 'the fourth request is refused by the other instance');
  t.equal(over.body.code, 'rate_limited');
  t.ok(Number(over.headers['retry-after']) >= 1);
  t.equal((await a.limited()).status, 429);

  const redis = new Redis(SHARED_REDIS);
  t.teardown(() => redis.quit());
  const keys = await redis.keys(`${shared.REDIS_KEY_PREFIX}rl:*`);
  t.ok(
    keys.some((k) => k.includes('POST/test/limited') && k.endsWith('203.0.113.99')),
    `the counter lives in Redis under the configured prefix (${keys.join(', ')})`,
  );
  t.notOk(one.app.rateLimitBackend.degraded);
});

t.test('Redis unreachable from the start: limits hold in memory, no errors, no waiting', async (t) => {
  const port = await freePort(); // nothing listens there
  const { app, logs } = await limitedApp(t, { REDIS_URL: `redis://127.0.0.1:${port}/0` });
  const c = client(app, '203.0.113.5');
  const started = Date.now();
  for (let i = 1; i <= LIMIT; i++) t.equal((await c.limited()).status, 200);
  const over = await c.limited();
  t.equal(over.status, 429, 'auth routes do not become unlimited');
  t.equal(over.body.code, 'rate_limited');
  t.ok(Date.now() - started < 2000, `no request waited for Redis (${Date.now() - started} ms for ${LIMIT + 1})`);
  t.ok(app.rateLimitBackend.degraded);
  t.ok(logs.some((l) => l.includes('Redis unreachable')), 'the fallback is logged');
  const scrape = await app.inject({ url: '/metrics' });
  t.match(scrape.body, /webshop_auth_rate_limit_store_degraded 1/);
});

t.test('a database index Redis refuses: no counter in another database, limits in memory, degraded and logged as an error naming REDIS_URL', async (t) => {
  // Found by session 31's operator review: ioredis reported the refused SELECT as an error, then
  // "ready" on database 0 — the counters went there, mixed with whatever else uses it, and the
  // degraded gauge went back to 0.
  const wrongDb = env({ REDIS_URL: SHARED_REDIS.replace(/\/\d*$/, '/99') });
  const { app, logs } = await buildTestApp(t, wrongDb, { beforeReady: (a) => a.register(limitedRoutes) });
  await waitFor('the refusal', () => logs.some((l) => l.includes('REDIS_URL')));
  const c = client(app, '203.0.113.42');
  for (let i = 1; i <= LIMIT; i++) t.equal((await c.limited()).status, 200);
  t.equal((await c.limited()).status, 429, 'limits hold in memory');
  await sleep(200);
  t.ok(app.rateLimitBackend.degraded, 'degraded, and stays so');
  const scrape = await app.inject({ url: '/metrics' });
  t.match(scrape.body, /webshop_auth_rate_limit_store_degraded 1/);
  t.ok(logs.some((l) => l.includes('"level":50') && l.includes('REDIS_URL')), 'an error line names the variable');
  const db0 = new Redis(SHARED_REDIS.replace(/\/\d*$/, '/0'));
  t.teardown(() => db0.quit());
  t.same(await db0.keys(`${wrongDb.REDIS_KEY_PREFIX}*`), [], 'nothing counted in database 0');
});

t.test('a SELECT Redis refuses only for now (LOADING): the connection is not used on database 0, a new one is', async (t) => {
  // A proxy before a private Redis answers the first connection's SELECT itself with LOADING (as a
  // Redis still loading its data does) and passes everything else through; later connections pass whole.
  const redisPort = await freePort();
  await startRedis(t, redisPort);
  const select = '*2\r\n$6\r\nselect\r\n$1\r\n3\r\n';
  const script = "return redis.error_reply('LOADING Redis is loading the dataset in memory')";
  const refusal = `*3\r\n$4\r\nEVAL\r\n$${script.length}\r\n${script}\r\n$1\r\n0\r\n`;
  let connections = 0;
  const proxy = createServer((client) => {
    const first = ++connections === 1;
    const upstream = connect(redisPort, '127.0.0.1');
    upstream.on('data', (chunk) => client.write(chunk));
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
    client.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1');
      const at = first ? text.toLowerCase().indexOf(select) : -1;
      if (at < 0) return void upstream.write(chunk);
      // In its place, a command Redis answers with that error, so the answers keep their order.
      upstream.write(Buffer.from(text.slice(0, at) + refusal + text.slice(at + select.length), 'latin1'));
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise((resolve) => proxy.close(resolve)));
  const proxyPort = (proxy.address() as AddressInfo).port;
  const shared = env({ REDIS_URL: `redis://127.0.0.1:${proxyPort}/3` });
  const { app } = await buildTestApp(t, shared, { beforeReady: (a) => a.register(limitedRoutes) });
  await waitFor('a second connection', () => connections >= 2 && app.rateLimitBackend.redisStatus === 'ready');
  const c = client(app, '203.0.113.43');
  await waitFor('shared again', () => !app.rateLimitBackend.degraded, 5000).catch(() => undefined);
  for (let i = 1; i <= LIMIT; i++) t.equal((await c.limited()).status, 200);
  t.equal((await c.limited()).status, 429);
  t.notOk(app.rateLimitBackend.degraded, 'not given up: counting in Redis again');
  const inDb = async (db: number) => {
    const r = new Redis({ port: redisPort, host: '127.0.0.1', db });
    try {
      return await r.keys(`${shared.REDIS_KEY_PREFIX}*`);
    } finally {
      r.disconnect();
    }
  };
  t.same(await inDb(0), [], 'nothing counted in database 0');
  t.ok((await inDb(3)).some((k) => k.includes('POST/test/limited')), 'the counters are in database 3');
});

t.test('Redis going down and coming back: in-memory meanwhile, shared again afterwards', async (t) => {
  const port = await freePort();
  let redis = await startRedis(t, port);
  const url = `redis://127.0.0.1:${port}/0`;
  const shared = env({ REDIS_URL: url });
  const one = await buildTestApp(t, shared, { beforeReady: (app) => app.register(limitedRoutes) });
  const two = await buildTestApp(t, shared, { beforeReady: (app) => app.register(limitedRoutes) });
  const bothReady = () =>
    one.app.rateLimitBackend.redisStatus === 'ready' && two.app.rateLimitBackend.redisStatus === 'ready';
  await waitFor('both instances connected', bothReady);
  const a = client(one.app, '198.51.100.1');
  const b = client(two.app, '198.51.100.1');

  t.equal((await a.limited()).status, 200);
  t.equal((await b.limited()).status, 200);

  await stopRedis(redis);
  await waitFor('instance one noticing', () => one.app.rateLimitBackend.redisStatus !== 'ready');
  // Down: instance one counts alone, in its own memory, on from the count Redis last told it (1: its
  // own request; the other instance's it never learnt), and still stops at the limit.
  const started = Date.now();
  for (let i = 2; i <= LIMIT; i++) t.equal((await a.limited()).status, 200, `down: request ${i} allowed`);
  const over = await a.limited();
  t.equal(over.status, 429, 'down: still limited');
  t.ok(Date.now() - started < 2000, 'down: no request waits for Redis');
  t.ok(one.app.rateLimitBackend.degraded);
  t.ok(one.logs.some((l) => l.includes('Redis unreachable')));

  // Back (empty: this Redis keeps nothing): both reconnect by themselves and share counters again.
  redis = await startRedis(t, port);
  await waitFor('both instances reconnected', bothReady, 15_000);
  const c = client(one.app, '198.51.100.2');
  const d = client(two.app, '198.51.100.2');
  t.equal((await c.limited()).status, 200);
  t.equal((await d.limited()).status, 200);
  t.equal((await c.limited()).status, 200);
  t.equal((await d.limited()).status, 429, 'shared again after recovery');
  t.notOk(one.app.rateLimitBackend.degraded, 'recovery is noticed');
  t.ok(one.logs.some((l) => l.includes('Redis reachable again')));
  await stopRedis(redis);
});

t.test('Redis hanging on an open connection: one request in each retry interval waits for the timeout, the rest count in memory at once', async (t) => {
  const port = await freePort();
  const redis = await startRedis(t, port);
  const { app } = await buildTestApp(t, env({ REDIS_URL: `redis://127.0.0.1:${port}/0` }), { beforeReady: (a) => a.register(limitedRoutes) });
  await waitFor('connected', () => app.rateLimitBackend.redisStatus === 'ready');
  t.teardown(() => {
    redis.kill('SIGCONT');
  });
  redis.kill('SIGSTOP'); // the connection stays open; Redis just stops answering

  const waits: number[] = [];
  for (let i = 0; i < 12; i++) {
    const started = performance.now();
    const res = await client(app, `198.51.100.${10 + i}`).limited();
    waits.push(performance.now() - started);
    t.equal(res.status, 200, `request ${i + 1} answered`);
  }
  t.equal(app.rateLimitBackend.redisStatus, 'ready', 'the connection still looks ready');
  t.ok(app.rateLimitBackend.degraded, 'the stall is noticed');
  const slow = waits.filter((ms) => ms >= REDIS_COMMAND_TIMEOUT_MS - 10).length;
  t.ok(slow <= 2, `only the first request waited for the timeout (${waits.map((ms) => Math.round(ms)).join(', ')} ms)`);

  redis.kill('SIGCONT');
  await sleep(REDIS_RETRY_AFTER_FAILURE_MS + 200);
  const back = await client(app, '198.51.100.99').limited();
  t.equal(back.status, 200);
  t.notOk(app.rateLimitBackend.degraded, 'after the retry interval, Redis is used again');
  await stopRedis(redis);
});

// Session 27's multi-instance load test (helper "redis"). operations.md "When Redis is down": "a client
// pinned to one instance gets exactly one [budget]" and rate-limit.ts "with N instances an attacker gets
// at most N times the budget". The in-memory fallback starts every counter at zero, so a budget spent
// through Redis is spent again in memory on the same instance: one instance, 2x; N instances, N+1 x.
t.test('Redis going away: a client pinned to one instance does not get a second budget', async (t) => {
  const port = await freePort();
  const redis = await startRedis(t, port);
  const { app } = await limitedApp(t, { REDIS_URL: `redis://127.0.0.1:${port}/0` });
  await waitFor('connected', () => app.rateLimitBackend.redisStatus === 'ready');
  const c = client(app, '198.51.100.200');
  for (let i = 0; i < LIMIT; i++) t.equal((await c.limited()).status, 200, `request ${i + 1} within the budget (counted in Redis)`);
  t.equal((await c.limited()).status, 429, 'the budget is spent');

  await stopRedis(redis);
  await waitFor('degraded', () => app.rateLimitBackend.degraded);
  const during: number[] = [];
  for (let i = 0; i < LIMIT; i++) during.push((await c.limited()).status);
  t.same(during, during.map(() => 429), 'the same client on the same instance stays refused while Redis is away');
});

// The same with Redis healthy: a command waits REDIS_COMMAND_TIMEOUT_MS on the instance's own clock,
// so an event loop busy for longer than that (the client's own burst, CPU shared with the other
// instance) counts as "Redis down", and the request is judged by an in-memory counter at zero.
t.test('a busy event loop with Redis healthy does not hand out a fresh budget', async (t) => {
  const { app } = await limitedApp(t, { REDIS_URL: SHARED_REDIS });
  await waitFor('connected', () => app.rateLimitBackend.redisStatus === 'ready');
  const c = client(app, '198.51.100.201');
  for (let i = 0; i < LIMIT; i++) t.equal((await c.limited()).status, 200);
  t.equal((await c.limited()).status, 429, 'the budget is spent');
  const statuses: number[] = [];
  for (let i = 0; i < 5; i++) {
    const pending = c.limited();
    // Block the event loop after the command went out and before its answer is read.
    setImmediate(() => {
      const until = performance.now() + REDIS_COMMAND_TIMEOUT_MS + 100;
      while (performance.now() < until);
    });
    statuses.push((await pending).status);
  }
  t.same(statuses, statuses.map(() => 429), `Redis never went away: every request stays refused (${statuses.join(', ')}; degraded: ${app.rateLimitBackend.degraded})`);
});
