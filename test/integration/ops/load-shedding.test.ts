import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import t from 'tap';
import { z } from 'zod';
import { buildTestApp } from '../../helpers/app.js';
import { createOrganization, createUser } from '../../helpers/factories.js';
import { api } from '../../helpers/http.js';

/**
 * Load shedding (issue 7, "Load shedding"): under event-loop pressure the service answers 503
 * `service_unavailable` with Retry-After at once, never for /healthz; a full argon2 queue does
 * the same on hashing routes instead of queueing without bound.
 */

function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // burn the event loop
  }
}

/** Keeps the event loop lagging (200 ms stalls) until stopped, letting other work run between. */
function startStalling(): () => Promise<void> {
  let running = true;
  const loop = (async () => {
    while (running) {
      busy(200);
      await sleep(5);
    }
  })();
  return async () => {
    running = false;
    await loop;
  };
}

async function waitUntil(what: string, check: () => boolean, ms = 20_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

t.test('event-loop pressure: 503 + Retry-After quickly, /healthz and /metrics still answer, recovery', async (t) => {
  const { app } = await buildTestApp(t, { LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: '50' });
  const request = api(app);
  await waitUntil('calm after start-up', () => !app.isUnderPressure());
  t.equal((await request({ url: '/readyz' })).status, 200, 'calm: served');

  const stop = startStalling();
  try {
    await waitUntil('the sampler to see the stall', () => app.isUnderPressure());
    const shed = await request({ url: '/readyz' });
    t.equal(shed.status, 503);
    t.equal(shed.body.code, 'service_unavailable');
    t.equal(shed.headers['retry-after'], '2');
    const doc = await request({ url: '/openapi.json' });
    t.equal(doc.status, 503, 'every other route is shed too');

    t.equal((await request({ url: '/healthz' })).status, 200, '/healthz is never shed');
    const scrape = await request({ url: '/metrics' });
    t.equal(scrape.status, 200, '/metrics is never shed');
    t.match(scrape.raw, /webshop_auth_load_shed_total\{cause="eventLoopDelay"\} [1-9]/);
  } finally {
    await stop();
  }

  await waitUntil('pressure to go away', () => !app.isUnderPressure());
  t.equal((await request({ url: '/readyz' })).status, 200, 'served again once the loop is calm');
});

t.test('a full hash queue answers 503 + Retry-After instead of queueing without bound', async (t) => {
  // One argon2 slot and no waiting room; a tiny route that hashes like the password routes do.
  const hashing: FastifyPluginAsyncZod = async (app) => {
    app.post(
      '/test/hash',
      {
        config: { access: 'public' },
        schema: { operationId: 'testHash', response: { 200: z.object({ ok: z.boolean() }) } },
      },
      async () => {
        await app.ctx.hasher.hash('correct horse battery staple');
        return { ok: true };
      },
    );
  };
  const { app } = await buildTestApp(
    t,
    { HASH_MAX_CONCURRENT: '1', HASH_MAX_QUEUED: '0', ARGON2_MEMORY_KIB: '19456', ARGON2_TIME_COST: '2' },
    { beforeReady: (app) => app.register(hashing) },
  );
  const request = api(app);
  const results = await Promise.all(Array.from({ length: 6 }, () => request({ method: 'POST', url: '/test/hash' })));
  const ok = results.filter((r) => r.status === 200);
  const busy503 = results.filter((r) => r.status === 503);
  t.equal(ok.length + busy503.length, 6, 'only 200 or 503');
  t.ok(ok.length >= 1, `some were hashed (${ok.length})`);
  t.ok(busy503.length >= 1, `the rest were shed (${busy503.length})`);
  for (const r of busy503) {
    t.equal(r.body.code, 'service_unavailable');
    t.equal(r.headers['retry-after'], '2');
  }
  t.match(app.ctx.hasher.stats(), { running: 0, queued: 0 }, 'nothing left behind');
});

t.test('a login flood is shed by the hash queue: 503 + Retry-After, never 500, the queue drains', async (t) => {
  const { app } = await buildTestApp(t, { HASH_MAX_CONCURRENT: '1', HASH_MAX_QUEUED: '1', ARGON2_MEMORY_KIB: '8192', ARGON2_TIME_COST: '2' });
  const org = await createOrganization(app.ctx.db);
  const { user, password } = await createUser(app.ctx.db, app, { organizationId: org.id });
  const request = api(app);
  const attempts = Array.from({ length: 12 }, (_, i) =>
    request({
      method: 'POST',
      url: '/v1/auth/login',
      body: i % 3 === 0 ? { email: user.email, password } : { email: `nobody-${i}@example.test`, password: 'not the right one at all' },
    }),
  );
  const results = await Promise.all(attempts);
  const statuses = results.map((r) => r.status);
  t.ok(statuses.every((s) => s === 200 || s === 401 || s === 503), `only 200/401/503: ${statuses.join(',')}`);
  const shed = results.filter((r) => r.status === 503);
  t.ok(shed.length >= 1, `${shed.length} of 12 were shed`);
  t.ok(results.some((r) => r.status !== 503), 'the queue still served some');
  for (const r of shed) {
    t.equal(r.body.code, 'service_unavailable');
    t.equal(r.headers['retry-after'], '2');
  }
  t.match(app.ctx.hasher.stats(), { running: 0, queued: 0 }, 'the queue drained');
  // After the flood the same login works.
  const after = await request({ method: 'POST', url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(after.status, 200);
});
