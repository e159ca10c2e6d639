import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { Webhook } from 'standardwebhooks';
import t, { type Test } from 'tap';
import { ConfigError, loadConfig } from '../../../src/config.js';
import { FEED_START, readFeedEvents } from '../../../src/modules/events/event-feed.js';
import { deliverWebhookEvents, type WebhookResult } from '../../../src/modules/events/webhook-delivery.js';
import { cli, cliEnv } from '../../helpers/cli.js';
import { TEST_ENV } from '../../helpers/app.js';
import { openClient, waitForLockWaiters } from '../../helpers/row-locks.js';
import { adminWorld, type AdminWorld } from '../organization/helpers.js';

/**
 * EVENT_WEBHOOKS: the event feed pushed to a real HTTP receiver, one signed POST per event (Standard
 * Webhooks), in feed order, retried with back-off until accepted, one instance at a time.
 */

const SECRET = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
const NEXT_SECRET = `whsec_${Buffer.alloc(32, 9).toString('base64')}`;

type Received = { headers: IncomingHttpHeaders; body: string; event: { type: string; timestamp: string; data: Record<string, unknown> } };

/** An in-process receiver: records every request; `answer` decides the status (or hangs up). */
async function receiver(t: Test) {
  const received: Received[] = [];
  const state = { answer: (_: Received): number | 'hang-up' | 'hold' => 204, delayMs: 0 };
  const held: ((status?: number) => void)[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const entry: Received = { headers: req.headers, body, event: JSON.parse(body) as Received['event'] };
      received.push(entry);
      const status = state.answer(entry);
      if (status === 'hold') {
        held.push((status = 200) => res.writeHead(status).end('ok'));
        return;
      }
      setTimeout(() => {
        if (status === 'hang-up') req.socket.destroy();
        else res.writeHead(status, status === 302 ? { location: 'http://127.0.0.1:1/elsewhere' } : {}).end('ok');
      }, state.delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const answer of held.splice(0)) answer();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/auth`;
  return { url, received, state, held };
}

async function world(t: Test, url: string, secrets = `cso=${SECRET}`) {
  const w = await adminWorld(t, { EVENT_WEBHOOKS: `cso=${url}`, EVENT_WEBHOOK_SECRETS: secrets, EVENT_WEBHOOK_WORKER_ENABLED: 'false' });
  const webhook = w.app.ctx.config.eventWebhooks[0]!;
  const deliver = (options: { limit?: number } = {}) => deliverWebhookEvents(w.app.ctx, webhook, options);
  return { ...w, webhook, deliver };
}

/**
 * Delivers until `count` events of this test's organisations arrived: a transaction open anywhere
 * on the test server (other test files run beside this one) holds the feed back until it ends.
 */
async function deliverUntil(w: Awaited<ReturnType<typeof world>>, received: Received[], count: number) {
  const mine = () => received.filter((r) => [w.orgA.id, w.orgB.id].includes(r.event.data.organizationId as string));
  for (let i = 0; i < 600 && mine().length < count; i++) {
    await w.deliver();
    if (mine().length < count) await sleep(50);
  }
  return mine();
}

/** Waits until the worker's first passes made `count` webhook rows (each starts at the feed's end then). */
async function untilWebhookRows(w: AdminWorld, count: number) {
  for (let i = 0; i < 100 && (await w.app.ctx.db.$queryRaw<unknown[]>`SELECT 1 FROM event_webhooks`).length < count; i++) await sleep(50);
}

/** The /metrics text once it matches `pattern` (a pass counts after the receiver answered), or the last one read. */
async function metricsMatching(w: AdminWorld, pattern: RegExp): Promise<string> {
  let metrics = '';
  for (let i = 0; i < 100 && !pattern.test(metrics); i++) {
    metrics = (await w.app.inject({ method: 'GET', url: '/metrics' })).body;
    if (!pattern.test(metrics)) await sleep(50);
  }
  return metrics;
}

const row = async (w: AdminWorld) =>
  (await w.app.ctx.db.$queryRaw<{ attempts: number; next_attempt_at: Date; last_error: string | null; cursor: string; claim_token: string | null }[]>`
    SELECT attempts, next_attempt_at, last_error, cursor, claim_token FROM event_webhooks WHERE name = 'cso'`)[0]!;

t.test('events are pushed in feed order, one signed POST each, from the moment the webhook is first seen', async (t) => {
  const { url, received } = await receiver(t);
  const w = await world(t, url);
  const early = await w.member(w.orgA.id, { name: 'Early Bird' });
  await w.request({ method: 'POST', url: `/v1/organization/users/${early.user.id}/block`, token: w.adminA.token });
  // Once the block is in the feed (every transaction older than it ended: other test files run
  // beside this one), the first pass makes the webhook's row at the feed's end: it is not pushed.
  for (let i = 0; i < 600 && !(await readFeedEvents(w.app.ctx.pool, FEED_START, 100)).some((e) => e.event.userId === early.user.id); i++) await sleep(50);
  const first = await w.deliver();
  t.same(first, { delivered: 0, failed: false });

  const leaver = await w.member(w.orgA.id, { name: 'Lena Leaver', email: 'lena@alpha.test' });
  t.equal((await w.request({ method: 'POST', url: `/v1/organization/users/${leaver.user.id}/block`, token: w.adminA.token })).status, 200);
  t.equal((await w.request({ method: 'POST', url: `/v1/organization/users/${leaver.user.id}/erase`, token: w.adminA.token })).status, 204);
  const invited = await w.request({ method: 'POST', url: '/v1/organization/users', token: w.adminB.token, body: { email: 'neu@beta.test', name: 'Neu' } });
  t.equal(invited.status, 201);
  // Sent later than it happened: the body's timestamp is when it happened, the header when it was sent.
  w.clock.advance(30);

  const got = await deliverUntil(w, received, 3);
  t.same(
    got.map((r) => [r.event.type, r.event.data.userId]),
    [
      ['user.blocked', leaver.user.id],
      ['user.erased', leaver.user.id],
      ['user.invited', invited.body.id],
    ],
    'in feed order; the block before the first pass is not among them',
  );
  t.notOk(received.some((r) => r.event.data.userId === early.user.id), 'nothing from before the webhook was first seen');

  for (const r of got) {
    t.equal(r.headers['content-type'], 'application/json');
    t.equal(r.headers['webhook-id'], r.event.data.id, 'webhook-id is the event id (receivers drop what they already have)');
    t.equal(r.event.timestamp, r.event.data.occurredAt);
    t.not(r.event.timestamp, w.clock.now().toISOString(), 'the time it happened, not the time it was sent');
    t.equal(r.headers['webhook-timestamp'], String(Math.floor(w.clock.now().getTime() / 1000)), 'webhook-timestamp: when it was sent');
    t.same(Object.keys(r.event.data).sort(), ['id', 'occurredAt', 'organizationId', 'type', 'userId'], 'the feed event, ids only');
    // Verified as a receiver would, with the Standard Webhooks library and the shared secret.
    t.same(new Webhook(SECRET).verify(r.body, r.headers as Record<string, string>), r.event, 'the signature verifies');
    t.throws(() => new Webhook(NEXT_SECRET).verify(r.body, r.headers as Record<string, string>), 'not with another secret');
    const tampered = r.body.replace(r.event.type, 'user.activated');
    t.throws(() => new Webhook(SECRET).verify(tampered, r.headers as Record<string, string>), 'a changed body does not verify');
  }
  t.notMatch(received.map((r) => r.body).join('\n'), /lena|Leaver|neu@/i, 'no names or addresses');

  // Nothing new: a pass sends nothing and claims nothing.
  const count = received.length;
  t.same(await w.deliver(), { delivered: 0, failed: false });
  t.equal(received.length, count);
  t.equal((await row(w)).claim_token, null, 'no lease held between passes');
});

t.test('during a rolling upgrade, an instance delivers up to an event of a type only the later release knows and leaves the rest to the later release', async (t) => {
  const { url, received } = await receiver(t);
  const w = await world(t, url);
  await w.deliver(); // the webhook starts at the feed's end
  const first = await w.member(w.orgA.id, { name: 'First' });
  const later = await w.member(w.orgA.id, { name: 'Later' });
  await w.request({ method: 'POST', url: `/v1/organization/users/${first.user.id}/block`, token: w.adminA.token });
  await w.app.ctx.db.$executeRaw`INSERT INTO feed_event_types (type) VALUES ('user.later_kind')`;
  await w.app.ctx.db.$executeRaw`INSERT INTO audit_events (id, type, subject_user_id, organization_id) VALUES (gen_random_uuid(), 'user.later_kind', ${first.user.id}::uuid, ${w.orgA.id}::uuid)`;
  await w.request({ method: 'POST', url: `/v1/organization/users/${later.user.id}/block`, token: w.adminA.token });
  // Until the last block is visible to a feed reader, then a few more passes.
  for (let i = 0; i < 600; i++) {
    const [r] = await w.app.ctx.db.$queryRaw<{ seen: boolean }[]>`
      SELECT bool_and(txid < pg_snapshot_xmin(pg_current_snapshot())) AS seen FROM audit_events WHERE subject_user_id = ${later.user.id}::uuid AND type = 'user.blocked'`;
    if (r?.seen) break;
    await sleep(50);
  }
  const blockOf = (id: string) => (r: Received) => r.event.type === 'user.blocked' && r.event.data.userId === id;
  for (let i = 0; i < 600 && !received.some(blockOf(first.user.id)); i++) {
    await w.deliver();
    await sleep(50);
  }
  for (let i = 0; i < 3; i++) await w.deliver();
  t.ok(blockOf(first.user.id)(received.at(-1)!), 'the events up to it, the last one the block before it');
  t.notOk(received.some(blockOf(later.user.id)), 'nothing after it');
  // Once the type is no longer listed (here: as if this release knew it), delivery goes on from there: nothing was lost.
  await w.app.ctx.db.$executeRaw`DELETE FROM feed_event_types WHERE type = 'user.later_kind'`;
  await w.deliver();
  t.ok(blockOf(later.user.id)(received.at(-1)!), 'the stored cursor stayed before it');
});

t.test('a failed delivery is retried with back-off, the same event with the same id, and nothing after it goes first', async (t) => {
  const { url, received, state } = await receiver(t);
  const w = await world(t, url);
  await w.deliver();
  const [a, b] = await blockedMembers(w, 2);

  state.answer = () => 500;
  let result: WebhookResult = { delivered: 0, failed: false };
  for (let i = 0; i < 600 && !result.failed; i++) {
    result = await w.deliver();
    if (!result.failed) await sleep(50);
  }
  t.same(result, { delivered: 0, failed: true });
  const failedOnce = await row(w);
  t.equal(failedOnce.attempts, 1);
  t.equal(failedOnce.last_error, 'HTTP 500');
  t.equal(failedOnce.next_attempt_at.getTime(), w.clock.now().getTime() + 5000, 'next try in 5 s');
  t.equal(failedOnce.claim_token, null, 'the lease is released');
  const firstId = received.at(-1)!.headers['webhook-id'];

  // Not due yet: nothing is sent.
  const before = received.length;
  t.same(await w.deliver(), { delivered: 0, failed: false });
  t.equal(received.length, before);

  // A redirect is not an acceptance; the delay doubles.
  state.answer = () => 302;
  w.clock.advance(5);
  t.same(await w.deliver(), { delivered: 0, failed: true });
  t.equal((await row(w)).attempts, 2);
  t.equal((await row(w)).last_error, 'HTTP 302');
  t.equal((await row(w)).next_attempt_at.getTime(), w.clock.now().getTime() + 10_000, 'next try in 10 s');

  // A receiver that hangs up.
  state.answer = () => 'hang-up';
  w.clock.advance(10);
  t.same(await w.deliver(), { delivered: 0, failed: true });
  t.equal((await row(w)).attempts, 3);
  t.match((await row(w)).last_error, /\S/, 'the socket error is recorded');

  // Back: the same event first, with the same id, then the next; failures reset.
  state.answer = () => 200;
  w.clock.advance(20);
  const back = await w.deliver();
  t.equal(back.failed, false);
  t.ok(back.delivered >= 1, 'the failed event is delivered');
  // The next one may be held back by a transaction open elsewhere on the test server (CI session 20).
  for (let i = 0; i < 600 && !received.some((r) => r.event.data.userId === b.user.id); i++) {
    await w.deliver();
    await sleep(50);
  }
  const ids = received.map((r) => r.headers['webhook-id']);
  t.equal(ids.filter((id) => id === firstId).length, 4, 'the failed event was sent again (500, 302, hang-up, then accepted)');
  const accepted = received.slice(-2).map((r) => [r.event.type, r.event.data.userId]);
  t.same(accepted, [
    ['user.blocked', a.user.id],
    ['user.blocked', b.user.id],
  ]);
  t.equal((await row(w)).attempts, 0);
  t.equal((await row(w)).last_error, null);
});

t.test('the retry delay is capped at 10 minutes', async (t) => {
  const { url, state } = await receiver(t);
  const w = await world(t, url);
  await w.deliver();
  await w.request({ method: 'POST', url: `/v1/organization/users/${(await w.member(w.orgA.id)).user.id}/block`, token: w.adminA.token });
  state.answer = () => 503;
  let failures = 0;
  for (let i = 0; i < 600 && failures < 10; i++) {
    const { failed } = await w.deliver();
    if (failed) {
      failures++;
      w.clock.advance(3600);
    } else await sleep(50);
  }
  const r = await row(w);
  t.equal(r.attempts, 10);
  t.equal(r.next_attempt_at.getTime() - w.clock.now().getTime(), -3600_000 + 600_000, '10 min after the last failure, not 5 s × 2⁹');
});

t.test('two instances at once: each event reaches the receiver once', async (t) => {
  const { url, received, state } = await receiver(t);
  const w = await world(t, url);
  await w.deliver();
  const users = await Promise.all([1, 2, 3, 4].map(() => w.member(w.orgA.id)));
  for (const u of users) await w.request({ method: 'POST', url: `/v1/organization/users/${u.user.id}/block`, token: w.adminA.token });
  state.delayMs = 30;
  // Both "instances" poll until the four events are in; the lease lets one deliver at a time.
  const mine = () => received.filter((r) => r.event.data.organizationId === w.orgA.id);
  const poll = async () => {
    for (let i = 0; i < 600 && mine().length < 4; i++) {
      await w.deliver();
      await sleep(5);
    }
  };
  await Promise.all([poll(), poll()]);
  t.same(
    mine().map((r) => r.event.data.userId),
    users.map((u) => u.user.id),
    'each once, in order',
  );
});

t.test('several secrets: one signature each, so a receiver can change its secret', async (t) => {
  const { url, received } = await receiver(t);
  const w = await world(t, url, `cso=${SECRET},cso=${NEXT_SECRET}`);
  await w.deliver();
  await w.request({ method: 'POST', url: `/v1/organization/users/${(await w.member(w.orgA.id)).user.id}/block`, token: w.adminA.token });
  const [got] = await deliverUntil(w, received, 1);
  t.equal(String(got!.headers['webhook-signature']).split(' ').length, 2);
  for (const secret of [SECRET, NEXT_SECRET]) t.ok(new Webhook(secret).verify(got!.body, got!.headers as Record<string, string>));
});

t.test('the worker in the service pushes without being asked, and counts', async (t) => {
  const { url, received } = await receiver(t);
  const w = await adminWorld(t, { EVENT_WEBHOOKS: `cso=${url}`, EVENT_WEBHOOK_SECRETS: `cso=${SECRET}` });
  // The worker's first pass makes the row at the feed's end; only what comes after is pushed.
  await untilWebhookRows(w, 1);
  const u = await w.member(w.orgB.id);
  t.equal((await w.request({ method: 'POST', url: `/v1/organization/users/${u.user.id}/block`, token: w.adminB.token })).status, 200);
  for (let i = 0; i < 600 && !received.some((r) => r.event.data.userId === u.user.id); i++) await sleep(50);
  t.ok(received.some((r) => r.event.type === 'user.blocked' && r.event.data.userId === u.user.id));
  // Counted once the pass has recorded it (right after the receiver answered).
  const counted = /webshop_auth_event_webhook_deliveries_total\{webhook="cso",outcome="delivered"\} [1-9]/;
  t.match(await metricsMatching(w, counted), counted);
});

t.test('a pass that fails on our side (here: a table the service may not use) is counted as an error, and delivery resumes once it is fixed', async (t) => {
  const { url, received } = await receiver(t);
  const w = await adminWorld(t, { EVENT_WEBHOOKS: `cso=${url}`, EVENT_WEBHOOK_SECRETS: `cso=${SECRET}` });
  await untilWebhookRows(w, 1);
  // Found by session 19's operator walkthrough: a forgotten GRANT only logged; no series moved.
  await w.app.ctx.db.$executeRawUnsafe('ALTER TABLE event_webhooks RENAME TO event_webhooks_away');
  const errors = /webshop_auth_event_webhook_deliveries_total\{webhook="cso",outcome="error"\} [1-9]/;
  t.match(await metricsMatching(w, errors), errors);
  t.ok(w.logs.some((l) => l.includes('webhook delivery pass failed')), 'and logged as an error');
  await w.app.ctx.db.$executeRawUnsafe('ALTER TABLE event_webhooks_away RENAME TO event_webhooks');
  const u = await w.member(w.orgB.id);
  t.equal((await w.request({ method: 'POST', url: `/v1/organization/users/${u.user.id}/block`, token: w.adminB.token })).status, 200);
  for (let i = 0; i < 600 && !received.some((r) => r.event.data.userId === u.user.id); i++) await sleep(50);
  t.ok(received.some((r) => r.event.data.userId === u.user.id), 'delivered once the table is back');
});

t.test('a receiver that does not answer holds up only its own events', async (t) => {
  const slow = await receiver(t);
  const fast = await receiver(t);
  slow.state.answer = () => 'hold';
  const w = await adminWorld(t, { EVENT_WEBHOOKS: `slow=${slow.url},fast=${fast.url}`, EVENT_WEBHOOK_SECRETS: `slow=${SECRET},fast=${SECRET}` });
  await untilWebhookRows(w, 2);
  const u = await w.member(w.orgB.id);
  t.equal((await w.request({ method: 'POST', url: `/v1/organization/users/${u.user.id}/block`, token: w.adminB.token })).status, 200);
  // The event may be held back by a transaction open elsewhere on the test server; once it is out,
  // the fast receiver has it well within the 10 s the slow one's request may take before it fails.
  for (let i = 0; i < 600 && slow.held.length === 0; i++) await sleep(50);
  t.equal(slow.held.length, 1, 'the slow receiver holds its request');
  for (let i = 0; i < 160 && !fast.received.some((r) => r.event.data.userId === u.user.id); i++) await sleep(50);
  t.ok(fast.received.some((r) => r.event.data.userId === u.user.id), 'the other receiver has the event');
  t.equal(slow.held.length, 1, 'while the slow one still holds its request');
  // A shutdown does not wait for it (up to 10 s), and does not count it as the receiver's failure.
  const closing = Date.now();
  await w.app.close();
  t.ok(Date.now() - closing < 5000, `closed in ${Date.now() - closing} ms`);
  const [slowRow] = await w.app.ctx.db.$queryRaw<{ attempts: number; claim_token: string | null }[]>`SELECT attempts, claim_token FROM event_webhooks WHERE name = 'slow'`;
  t.same(slowRow, { attempts: 0, claim_token: null }, 'no failure recorded, the lease released');
});

t.test('a receiver that is slow but accepts holds up only its own events too', async (t) => {
  const slow = await receiver(t);
  const fast = await receiver(t);
  slow.state.delayMs = 4000;
  const w = await adminWorld(t, { EVENT_WEBHOOKS: `slow=${slow.url},fast=${fast.url}`, EVENT_WEBHOOK_SECRETS: `slow=${SECRET},fast=${SECRET}` });
  await untilWebhookRows(w, 2);
  const has = (r: { received: Received[] }, userId: string) => r.received.some((e) => e.event.data.userId === userId);
  // A backlog of four for both; the slow receiver takes 16 s for it.
  const backlog = [];
  for (let i = 0; i < 4; i++) backlog.push(await w.member(w.orgA.id));
  for (const u of backlog) await w.request({ method: 'POST', url: `/v1/organization/users/${u.user.id}/block`, token: w.adminA.token });
  for (let i = 0; i < 200 && !has(fast, backlog.at(-1)!.user.id); i++) await sleep(50);
  // Found by session 19's review: one pass for all webhooks waited for the slow one's whole batch.
  const late = await w.member(w.orgA.id);
  await w.request({ method: 'POST', url: `/v1/organization/users/${late.user.id}/block`, token: w.adminA.token });
  for (let i = 0; i < 200 && !has(fast, late.user.id); i++) await sleep(50);
  t.ok(has(fast, late.user.id), 'the fast receiver has the new event within 10 s');
  t.notOk(has(slow, late.user.id), 'while the slow one is still working through the backlog');
});

t.test('configuration: every webhook needs a secret; bad entries are named, secrets never echoed', async (t) => {
  const load = (env: Record<string, string>) => () => loadConfig({ ...TEST_ENV, ...env });
  const ok = loadConfig({ ...TEST_ENV, EVENT_WEBHOOKS: 'cso=https://cso.example/hooks?x=1', EVENT_WEBHOOK_SECRETS: `cso=${SECRET}` });
  t.same(ok.eventWebhooks, [{ name: 'cso', url: 'https://cso.example/hooks?x=1', secrets: [SECRET] }]);
  t.throws(load({ EVENT_WEBHOOKS: 'cso=https://cso.example/hooks' }), { message: /EVENT_WEBHOOK_SECRETS: none for "cso"/ });
  t.throws(load({ EVENT_WEBHOOKS: 'cso=https://a.example,cso=https://b.example', EVENT_WEBHOOK_SECRETS: `cso=${SECRET}` }), { message: /"cso" is named twice/ });
  t.throws(load({ EVENT_WEBHOOK_SECRETS: `crm=${SECRET}` }), { message: /"crm" is none of EVENT_WEBHOOKS/ });
  for (const bad of ['https://cso.example', 'cso=ftp://cso.example', 'cso=https://user:pw@cso.example', 'CSO=https://cso.example', 'cso=https://cso.example/#x']) {
    t.throws(load({ EVENT_WEBHOOKS: bad, EVENT_WEBHOOK_SECRETS: `cso=${SECRET}` }), ConfigError, bad);
  }
  const short = `whsec_${Buffer.alloc(16, 1).toString('base64')}`;
  for (const bad of [`cso=${short}`, 'cso=not-a-secret-at-all-but-long-enough-to-leak', 'whsec_plain']) {
    const err = (() => {
      try {
        load({ EVENT_WEBHOOKS: 'cso=https://cso.example', EVENT_WEBHOOK_SECRETS: bad })();
      } catch (e) {
        return e as Error;
      }
      return null;
    })();
    t.type(err, ConfigError, bad);
    t.notMatch(err!.message, bad.slice(4), 'the secret is not echoed');
  }
});

t.test('the CLI makes a secret the configuration takes, and reports each webhook', async (t) => {
  const { url, state } = await receiver(t);
  const w = await world(t, url);
  const made = await cli(['generate-webhook-secret'], {});
  t.equal(made.code, 0);
  const secret = made.stdout.trim();
  t.match(secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
  t.doesNotThrow(() => loadConfig({ ...TEST_ENV, EVENT_WEBHOOKS: `cso=${url}`, EVENT_WEBHOOK_SECRETS: `cso=${secret}` }));

  const env = { ...cliEnv(w.databaseUrl), EVENT_WEBHOOKS: `cso=${url},crm=${url}?token=s3cr3t`, EVENT_WEBHOOK_SECRETS: `cso=${SECRET},crm=${SECRET}` };
  await w.deliver();
  state.answer = () => 500;
  await w.request({ method: 'POST', url: `/v1/organization/users/${(await w.member(w.orgA.id)).user.id}/block`, token: w.adminA.token });
  for (let i = 0; i < 600 && !(await w.deliver()).failed; i++) await sleep(50);
  const listed = await cli(['list-webhooks'], env);
  t.equal(listed.code, 0, listed.stderr);
  const [cso, crm] = listed.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.match(cso, { name: 'cso', url, started: true, eventsWaiting: 1, failuresInARow: 1, lastError: 'HTTP 500', lastDeliveredAt: null });
  t.equal(cso!.nextAttemptAt, (await row(w)).next_attempt_at.toISOString(), 'when the failed event is tried again');
  t.same(crm, { name: 'crm', url: `${url}?…`, started: false }, 'a query string (a token, maybe) is not shown');
  t.notMatch(listed.stdout + listed.stderr, /s3cr3t|whsec_/);
});

type Member = Awaited<ReturnType<AdminWorld['member']>>;

/** `count` (≥ 2) new members of organisation A, each blocked by its administrator: one feed event each, in this order. */
async function blockedMembers(w: Awaited<ReturnType<typeof world>>, count: number): Promise<[Member, Member, ...Member[]]> {
  const members: Member[] = [];
  for (let i = 0; i < count; i++) members.push(await w.member(w.orgA.id));
  for (const m of members) await w.request({ method: 'POST', url: `/v1/organization/users/${m.user.id}/block`, token: w.adminA.token });
  return members as [Member, Member, ...Member[]];
}

/** Waits until the feed after the webhook's cursor holds an event of each of these users; answers those entries. */
async function untilInFeed(w: Awaited<ReturnType<typeof world>>, userIds: string[]) {
  let entries: Awaited<ReturnType<typeof readFeedEvents>> = [];
  for (let i = 0; i < 600; i++) {
    entries = await readFeedEvents(w.app.ctx.pool, (await row(w)).cursor, 100);
    if (userIds.every((id) => entries.some((e) => e.event.userId === id))) break;
    await sleep(50);
  }
  return entries;
}

t.test('an instance claims the webhook only at the cursor it read: events another instance delivered meanwhile are not sent again (mutation review, session 22)', async (t) => {
  const { url, received } = await receiver(t);
  const w = await world(t, url);
  await w.deliver();
  const [a, b] = await blockedMembers(w, 2);
  const entries = await untilInFeed(w, [a.user.id, b.user.id]);
  const afterA = entries.find((e) => e.event.userId === a.user.id)!.cursor;

  // This pass reads the row and the feed, then waits for the row; meanwhile "another instance"
  // delivers the first event and moves the cursor on.
  const client = await openClient(t, w.databaseUrl);
  await client.query('BEGIN');
  await client.query(`SELECT 1 FROM event_webhooks WHERE name = 'cso' FOR UPDATE`);
  const pass = w.deliver();
  await waitForLockWaiters(client);
  await client.query(`UPDATE event_webhooks SET cursor = $1 WHERE name = 'cso'`, [afterA]);
  await client.query('COMMIT');
  t.same(await pass, { delivered: 0, failed: false }, 'the cursor moved since it was read: no claim, nothing sent');
  t.notOk(received.some((r) => r.event.data.userId === a.user.id), 'the event the other instance delivered is not sent again');

  const got = await deliverUntil(w, received, 1);
  t.same(got.map((r) => r.event.data.userId), [b.user.id], 'the next pass goes on from the moved cursor');
});

t.test('the lease is renewed with every event: while a long batch is under way, another instance does not take the webhook over (mutation review, session 22)', async (t) => {
  const { url, received, state, held } = await receiver(t);
  const w = await world(t, url);
  await w.deliver();
  const users = await blockedMembers(w, 3);
  await untilInFeed(w, users.map((u) => u.user.id));
  const [a, b] = users.map((u) => u.user.id);

  // The first event takes 50 s (fake clock); the second is held until this test answers it.
  let heldOnce = false;
  state.answer = (r) => {
    if (r.event.data.userId === a) w.clock.advance(50);
    if (r.event.data.userId === b && !heldOnce) {
      heldOnce = true;
      return 'hold';
    }
    return 204;
  };
  const pass = w.deliver();
  for (let i = 0; i < 600 && held.length === 0; i++) await sleep(10);
  t.equal(held.length, 1, 'the second event is on its way');
  const [lease] = await w.app.ctx.db.$queryRaw<{ locked_until: Date }[]>`SELECT locked_until FROM event_webhooks WHERE name = 'cso'`;
  t.equal(lease!.locked_until.getTime(), w.clock.now().getTime() + 60_000, 'renewed for 60 s when the first event was accepted');

  // 70 s after the claim (past its first lease, within the renewed one) another instance polls.
  w.clock.advance(20);
  t.same(await w.deliver(), { delivered: 0, failed: false }, 'the other instance finds the webhook held');
  held.shift()!();
  t.same(await pass, { delivered: 3, failed: false });
  for (const u of users) t.equal(received.filter((r) => r.event.data.userId === u.user.id).length, 1, 'each event once');
});

t.test('an instance that lost its lease stops after the event in flight and leaves the new holder alone (mutation review, session 22)', async (t) => {
  const { url, received, state, held } = await receiver(t);
  const w = await world(t, url);
  await w.deliver();
  const [a, b] = await blockedMembers(w, 2);
  await untilInFeed(w, [a.user.id, b.user.id]);

  state.answer = (r) => (r.event.data.userId === a.user.id ? 'hold' : 204);
  const pass = w.deliver();
  for (let i = 0; i < 600 && held.length === 0; i++) await sleep(10);
  t.equal(held.length, 1);
  // Meanwhile the lease ran out and another instance claimed the webhook.
  const other = crypto.randomUUID();
  await w.app.ctx.db.$executeRaw`UPDATE event_webhooks SET claim_token = ${other}::uuid, locked_until = ${new Date(w.clock.now().getTime() + 60_000)} WHERE name = 'cso'`;
  held.shift()!();
  t.same(await pass, { delivered: 1, failed: false }, 'the event in flight counts; then it stops');
  t.notOk(received.some((r) => r.event.data.userId === b.user.id), 'the next event is left to the new holder');
  t.equal((await row(w)).claim_token, other, "the new holder's claim is not released");
});

t.test("a new webhook starts before the changes of transactions still running: one that commits after the webhook's start is delivered (mutation review, session 22)", async (t) => {
  const { url, received } = await receiver(t);
  const w = await world(t, url);
  const u = await w.member(w.orgA.id);
  // A transaction writes an event and stays open while the webhook is first seen.
  const client = await openClient(t, w.databaseUrl);
  await client.query('BEGIN');
  await client.query(
    `INSERT INTO audit_events (id, type, subject_user_id, organization_id, details) VALUES (gen_random_uuid(), 'user.renamed', $1, $2, '{}')`,
    [u.user.id, w.orgA.id],
  );
  const { rows } = await client.query<{ txid: string }>('SELECT pg_current_xact_id()::text AS txid');
  // Once it is the oldest transaction running on the server (others end soon), the feed's end lies just before it.
  const xmin = async () => (await w.app.ctx.pool.query<{ x: string }>('SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS x')).rows[0]!.x;
  for (let i = 0; i < 600 && (await xmin()) !== rows[0]!.txid; i++) await sleep(50);
  t.same(await w.deliver(), { delivered: 0, failed: false }, 'the row is made; the open change is not out yet');
  await client.query('COMMIT');
  const got = await deliverUntil(w, received, 1);
  t.same(got.map((r) => [r.event.type, r.event.data.userId]), [['user.renamed', u.user.id]], 'delivered once committed, not skipped');
});

t.test("an instance that lost its lease and then fails records nothing over the new holder's state (mutation review, session 22)", async (t) => {
  const { url, state, held } = await receiver(t);
  const w = await world(t, url);
  await w.deliver();
  const a = await w.member(w.orgA.id);
  await w.request({ method: 'POST', url: `/v1/organization/users/${a.user.id}/block`, token: w.adminA.token });
  await untilInFeed(w, [a.user.id]);

  state.answer = () => 'hold';
  const pass = w.deliver();
  for (let i = 0; i < 600 && held.length === 0; i++) await sleep(10);
  t.equal(held.length, 1);
  const other = crypto.randomUUID();
  await w.app.ctx.db.$executeRaw`UPDATE event_webhooks SET claim_token = ${other}::uuid, locked_until = ${new Date(w.clock.now().getTime() + 60_000)} WHERE name = 'cso'`;
  const before = await row(w);
  held.shift()!(500);
  t.same(await pass, { delivered: 0, failed: true });
  const after = await row(w);
  t.same(
    { attempts: after.attempts, lastError: after.last_error, nextAttemptAt: after.next_attempt_at, claimToken: after.claim_token },
    { attempts: 0, lastError: null, nextAttemptAt: before.next_attempt_at, claimToken: other },
    'no failure count, error or back-off written by the instance that no longer holds the webhook',
  );
});

t.test('docs/operations.md (upgrade across 20261201030000): the documented set-back UPDATE makes the events after the noted cursor come again, also while a pass is under way', async (t) => {
  const { url, received, state, held } = await receiver(t);
  const w = await world(t, url);
  const one = await w.member(w.orgA.id, { name: 'One Member' });
  const two = await w.member(w.orgA.id, { name: 'Two Member' });
  // The webhook's row, at the feed's end (everything so far is "before").
  await w.deliver();
  const noted = (await row(w)).cursor; // "SELECT name, cursor FROM event_webhooks" before the new release starts
  t.equal((await w.request({ method: 'POST', url: `/v1/organization/users/${one.user.id}/block`, token: w.adminA.token })).status, 200);
  t.equal((await w.request({ method: 'POST', url: `/v1/organization/users/${two.user.id}/block`, token: w.adminA.token })).status, 200);
  for (let i = 0; i < 600 && (await readFeedEvents(w.app.ctx.pool, noted, 100)).length < 2; i++) await sleep(50);

  // A pass (the new release's instance) accepts the first event, and is still sending the second...
  state.answer = () => (received.length === 1 ? 204 : 'hold');
  const pass = w.deliver();
  for (let i = 0; i < 200 && held.length === 0; i++) await sleep(25);
  t.equal(held.length, 1, 'the second event is in flight');
  const firstId = received[0]!.event.data.id;
  // ...when the operator sets the webhook back, exactly as docs/operations.md says.
  await w.app.ctx.db.$executeRawUnsafe(`UPDATE event_webhooks SET cursor = '${noted}', claim_token = NULL, locked_until = NULL WHERE name = 'cso'`);
  state.answer = () => 204;
  for (const answer of held.splice(0)) answer(204);
  await pass;
  for (let i = 0; i < 20; i++) await w.deliver();

  t.ok(
    received.filter((r) => r.event.data.id === firstId).length >= 2,
    'the events after the noted cursor come again (docs/operations.md: "The events in between come again")',
  );
});

t.test("the OpenAPI document's webhooks.feedEvent describes what a receiver gets: the headers sent and a body its schema accepts (integrator review, session 30)", async (t) => {
  const { url, received } = await receiver(t);
  const w = await world(t, url);
  t.same(await w.deliver(), { delivered: 0, failed: false }, 'the webhook starts at the feed end');
  const leaver = await w.member(w.orgA.id, { name: 'Lena Leaver' });
  t.equal((await w.request({ method: 'POST', url: `/v1/organization/users/${leaver.user.id}/block`, token: w.adminA.token })).status, 200);
  const [got] = await deliverUntil(w, received, 1);

  const doc = (await w.app.inject({ url: '/openapi.json' })).json() as {
    webhooks: { feedEvent: { post: { parameters: { name: string; in: string; required: boolean }[]; requestBody: { content: Record<string, { schema: { $ref: string } }> } } } };
  };
  const operation = doc.webhooks.feedEvent.post;
  for (const header of operation.parameters) {
    t.equal(header.in, 'header');
    t.ok(got!.headers[header.name] !== undefined, `${header.name} is sent`);
  }
  t.same(operation.parameters.map((p) => p.name).sort(), ['webhook-id', 'webhook-signature', 'webhook-timestamp']);
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  (addFormats as unknown as (a: Ajv2020) => void)(ajv);
  ajv.addSchema({ ...doc, $id: 'openapi' });
  const validate = ajv.compile({ $ref: `openapi${operation.requestBody.content['application/json']!.schema.$ref}` });
  t.ok(validate(JSON.parse(got!.body)), JSON.stringify(validate.errors));
  t.notOk(validate({ ...JSON.parse(got!.body), data: undefined }), 'and it says what must be there');
});
