import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import pg from 'pg';
import t, { type Test } from 'tap';
import { z } from 'zod';
import { freePort } from '../../scripts/free-port.js';
import { migrate } from '../../src/db/migrate.js';
import { displayText } from '../../src/lib/display-text.js';
import { createEmptyDatabase } from '../helpers/database.js';
import { buildTestApp } from '../helpers/app.js';
import { currentTotp } from '../helpers/factories.js';
import { api } from '../helpers/http.js';
import { challengeFor } from '../integration/mfa/helpers.js';
import { adminWorld, type AdminWorld } from '../integration/organization/helpers.js';
import { lastLink, moveTo, signedInMember, undo, undoLink } from '../integration/accounts/email-change-helpers.js';
import { startRedis, stopRedis, waitFor } from '../helpers/redis-server.js';

/**
 * Mutation review of session 27's changes (the e-mail change undo link, erasure rewriting waiting
 * mails, the rate-limit tallies, ...): what README / openapi promise for them, each pinned by a
 * test that fails when the promise is broken in src.
 */





/** Holds the next password check (ctx.hasher.verify) after it computed its answer, until `release()`. */
function holdNextPasswordCheck(w: AdminWorld) {
  const hasher = w.app.ctx.hasher as unknown as { verify: (...args: unknown[]) => Promise<unknown> };
  const verify = hasher.verify;
  let entered!: () => void;
  const checking = new Promise<void>((resolve) => (entered = resolve));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  hasher.verify = async function (this: unknown, ...args: unknown[]) {
    hasher.verify = verify;
    const answer = await verify.apply(this, args);
    entered();
    await released;
    return answer;
  };
  return { checking, release };
}

// openapi undoEmailChange: "the password is replaced by one nobody knows". A sign-in with the
// intruder's password whose check was under way as the owner clicked must not pass either (the
// login refuses a password changed while it was checked by comparing passwordChangedAt).
t.test('undo: a sign-in with the old password checked while the undo commits does not pass', async (t) => {
  const w = await adminWorld(t);
  const jon = await signedInMember(w);
  await moveTo(w, jon.token, jon.password!, 'evil@attacker.test');
  const link = await undoLink(w, 'jon@alpha.test');

  const { checking, release } = holdNextPasswordCheck(w);
  const login = w.request({ url: '/v1/auth/login', body: { email: 'evil@attacker.test', password: jon.password } });
  await checking;
  w.clock.advance(1); // the undo happens a moment later than the password was set (the fake clock stands still)
  t.equal((await undo(w, link)).status, 200);
  release();
  const res = await login;
  t.same([res.status, res.body.code], [401, 'invalid_credentials'], `the replaced password signs in no more (got ${res.status} ${res.body.next ?? res.body.code})`);
});

// openapi undoEmailChange: "every session of the account ends". A sign-in the intruder had half done
// (password step passed) is one: its challenge must not complete after the undo.
t.test('undo: a login challenge the intruder holds (password passed) ends with the undo', async (t) => {
  const w = await adminWorld(t);
  const jon = await signedInMember(w);
  await moveTo(w, jon.token, jon.password!, 'evil@attacker.test');
  const login = await w.request({ url: '/v1/auth/login', body: { email: 'evil@attacker.test', password: jon.password } });
  t.same([login.status, login.body.next], [200, 'mfa']);
  t.equal((await undo(w, await undoLink(w, 'jon@alpha.test'))).status, 200);
  // The intruder may read the authenticator (they had the session: a re-enrolment, or the owner's phone).
  const mfa = await w.request({ url: '/v1/auth/login/mfa', body: { challengeToken: login.body.challengeToken, code: currentTotp(w.app, jon.totpSecret!) } });
  t.not(mfa.status, 200, `no session from a challenge begun before the undo (got ${mfa.status})`);
  t.equal(await w.app.ctx.db.session.count({ where: { userId: jon.user.id, revokedAt: null } }), 0, 'no live session');
});

// openapi undoEmailChange: "the links that went to the other address (password reset, MFA reset,
// a pending change) ... stop working".
t.test('undo: an MFA reset link mailed to the other address stops working', async (t) => {
  const w = await adminWorld(t);
  const jon = await signedInMember(w);
  await moveTo(w, jon.token, jon.password!, 'evil@attacker.test');
  t.equal((await w.request({ method: 'POST', url: `/v1/support/users/${jon.user.id}/mfa-reset-request`, token: w.support.token })).status, 202);
  const mfaReset = await lastLink(w, 'evil@attacker.test', 'mfa_reset_confirm', '/confirm-mfa-reset');
  t.equal((await undo(w, await undoLink(w, 'jon@alpha.test'))).status, 200);
  const stale = await w.request({ url: '/v1/mfa-reset/confirm', body: { token: mfaReset } });
  t.same([stale.status, stale.body.code], [410, 'link_used'], 'the MFA reset link in the other mailbox no longer works');
  t.equal(await w.app.ctx.db.totpFactor.count({ where: { userId: jon.user.id, status: 'ACTIVE' } }), 1, 'the authenticator stays');
});

t.test('undo: a pending change asked for from the restored address stops working', async (t) => {
  const w = await adminWorld(t);
  const jon = await signedInMember(w);
  // a -> b, then b -> a again (a normal move back), then a change a -> e is asked for and left pending.
  await moveTo(w, jon.token, jon.password!, 'jon@b.test');
  const backToA = await undoLink(w, 'jon@alpha.test');
  await moveTo(w, jon.token, jon.password!, 'jon@alpha.test');
  t.equal((await w.request({ url: '/v1/me/email', token: jon.token, body: { email: 'evil@attacker.test', password: jon.password } })).status, 202);
  const pending = await lastLink(w, 'evil@attacker.test', 'email_change_confirm', '/confirm-email');
  t.equal((await undo(w, backToA)).status, 200);
  const late = await w.request({ url: '/v1/email-change/confirm', body: { token: pending } });
  t.equal(late.status, 410, `the pending change no longer confirms (got ${late.status})`);
  t.equal((await w.app.ctx.db.user.findUniqueOrThrow({ where: { id: jon.user.id } })).email, 'jon@alpha.test');
});

// openapi undoEmailChange: "the undo links of later moves stop working" — the account's own; another
// account's undo links are its owner's way back and stay.
t.test("undo: another account's undo links keep working", async (t) => {
  const w = await adminWorld(t);
  const kim = await signedInMember(w, 'kim@alpha.test');
  await moveTo(w, kim.token, kim.password!, 'kim@b.test');
  await moveTo(w, kim.token, kim.password!, 'kim@c.test');
  const kimBack = await undoLink(w, 'kim@b.test');
  const jon = await signedInMember(w);
  await moveTo(w, jon.token, jon.password!, 'evil@attacker.test');
  t.equal((await undo(w, await undoLink(w, 'jon@alpha.test'))).status, 200, "jon's move undone");
  const other = await undo(w, kimBack);
  t.same([other.status, other.body.email], [200, 'kim@b.test'], `kim's undo link still works (got ${other.status} ${other.body.code ?? ''})`);
});

// docs/audit-events.md user.email_changed: "recoveryCodesDeleted (only an undone move): how many unused recovery codes it deleted".
t.test('undo: the audit row counts the unused recovery codes deleted', async (t) => {
  const w = await adminWorld(t);
  const jon = await signedInMember(w);
  const codes = await w.request({ url: '/v1/me/mfa/recovery-codes', token: jon.token, body: { password: jon.password } });
  t.equal(codes.status, 200);
  // One of them signs in (used: it gave no power any more).
  const used = await w.request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(w.app, jon.user.id, 'mfa'), recoveryCode: codes.body.recoveryCodes[0] } });
  t.equal(used.status, 200);
  await moveTo(w, jon.token, jon.password!, 'evil@attacker.test');
  t.equal((await undo(w, await undoLink(w, 'jon@alpha.test'))).status, 200);
  const row = await w.app.ctx.db.auditEvent.findFirst({ where: { type: 'user.email_changed', subjectUserId: jon.user.id, details: { path: ['undone'], equals: true } } });
  t.match(row?.details, { undone: true, recoveryCodesDeleted: codes.body.recoveryCodes.length - 1 });
  t.equal(await w.app.ctx.db.recoveryCode.count({ where: { userId: jon.user.id } }), 0, 'the used one goes too');
});

// email-change.service.ts undoEmailChange: a public endpoint checks its link before spending a
// password hash (argon2id, security.md 4) on it: a made-up token costs no hash.
t.test('undo: a made-up token is refused without hashing a password', async (t) => {
  const w = await adminWorld(t);
  const hasher = w.app.ctx.hasher as unknown as { hash: (...args: unknown[]) => Promise<unknown> };
  const hash = hasher.hash;
  let hashes = 0;
  hasher.hash = function (this: unknown, ...args: unknown[]) {
    hashes += 1;
    return hash.apply(this, args);
  };
  t.teardown(() => void (hasher.hash = hash));
  for (let i = 0; i < 3; i++) t.same((await undo(w, `${'x'.repeat(42)}${i}`)).status, 400);
  t.equal(hashes, 0, 'no hash spent on a link that does not exist');
});

// openapi undoEmailChange: "a link to choose a new password (30 min) goes to the restored address".
t.test('undo: the link to choose a new password lasts 30 minutes', async (t) => {
  const w = await adminWorld(t);
  const jon = await signedInMember(w);
  await moveTo(w, jon.token, jon.password!, 'evil@attacker.test');
  t.equal((await undo(w, await undoLink(w, 'jon@alpha.test'))).status, 200);
  const reset = await lastLink(w, 'jon@alpha.test', 'email_change_undone', '/reset-password');
  w.clock.advance(30 * 60 + 1);
  const late = await w.request({ url: '/v1/password/reset', body: { token: reset, password: 'silver harbour compass 7731' } });
  t.same([late.status, late.body.code], [410, 'link_expired'], `30 minutes, not longer (got ${late.status})`);
});

// Rate limits (src/plugins/rate-limit.ts, operations.md "When Redis is down").

/** Routes with their own limits: 3 a minute, and 1 a second. */
const limitedRoutes: FastifyPluginAsyncZod = async (app) => {
  const ok = { response: { 200: z.object({ ok: z.boolean() }) } };
  app.post('/test/minute', { config: { access: 'public', rateLimit: { max: 3, timeWindow: '1 minute' } }, schema: { operationId: 'testMinute', ...ok } }, async () => ({ ok: true }));
  app.post('/test/second', { config: { access: 'public', rateLimit: { max: 1, timeWindow: 1000 } }, schema: { operationId: 'testSecond', ...ok } }, async () => ({ ok: true }));
};

async function limitedApp(t: Test, extra: Record<string, string> = {}) {
  const env = { RATE_LIMIT_ENABLED: 'true', TRUST_PROXY: 'loopback', REDIS_KEY_PREFIX: `test-${randomBytes(6).toString('hex')}:`, ...extra };
  return buildTestApp(t, env, { beforeReady: (app) => app.register(limitedRoutes) });
}

const hit = (app: FastifyInstance, url: string, ip: string) => api(app)({ method: 'POST', url, headers: { 'x-forwarded-for': ip } });




t.test('in memory: a window ends — a client limited in one window gets through in the next', async (t) => {
  const { app } = await limitedApp(t);
  t.equal(app.rateLimitBackend.kind, 'memory');
  t.equal((await hit(app, '/test/second', '203.0.113.50')).status, 200);
  t.equal((await hit(app, '/test/second', '203.0.113.50')).status, 429, 'one a second');
  await sleep(1200);
  t.equal((await hit(app, '/test/second', '203.0.113.50')).status, 200, 'the next second, allowed again');
});

t.test('in memory: Retry-After is the rest of the window, not the whole window', async (t) => {
  const { app } = await limitedApp(t);
  for (let i = 0; i < 3; i++) t.equal((await hit(app, '/test/minute', '203.0.113.51')).status, 200);
  await sleep(1500);
  const over = await hit(app, '/test/minute', '203.0.113.51');
  t.equal(over.status, 429);
  t.ok(Number(over.headers['retry-after']) <= 59, `the window began over a second ago (Retry-After ${over.headers['retry-after']})`);
});

// rate-limit.ts: "what it counted in memory still counts once Redis answers again".
t.test('Redis back: what was counted in memory meanwhile still counts', async (t) => {
  const port = await freePort();
  let redis = await startRedis(t, port);
  const { app } = await limitedApp(t, { REDIS_URL: `redis://127.0.0.1:${port}/0` });
  await waitFor('connected', () => app.rateLimitBackend.redisStatus === 'ready', 15_000);
  const ip = '198.51.100.150';
  await stopRedis(redis);
  await waitFor('noticed', () => app.rateLimitBackend.redisStatus !== 'ready', 15_000);
  t.equal((await hit(app, '/test/minute', ip)).status, 200, 'down: 1 (in memory)');
  t.equal((await hit(app, '/test/minute', ip)).status, 200, 'down: 2 (in memory)');
  redis = await startRedis(t, port);
  await waitFor('reconnected', () => app.rateLimitBackend.redisStatus === 'ready', 15_000);
  t.equal((await hit(app, '/test/minute', ip)).status, 200, 'back: 3 (1 in Redis + 2 in memory)');
  t.notOk(app.rateLimitBackend.degraded, 'counted in Redis');
  const over = await hit(app, '/test/minute', ip);
  t.equal(over.status, 429, `back: the 4th in the minute is refused (got ${over.status})`);
  await stopRedis(redis);
});

// migrate.ts: "a migration ... is tried again after retryDelayMs ...; so is one PostgreSQL rolled back to break a deadlock".
t.test('migrate: a migration PostgreSQL rolls back to break a deadlock is tried again, and applies', async (t) => {
  const url = await createEmptyDatabase(t);
  const other = new pg.Client({ connectionString: url });
  await other.connect();
  t.teardown(() => other.end().catch(() => undefined));
  await other.query('CREATE TABLE a (v int); CREATE TABLE b (v int); INSERT INTO a VALUES (0); INSERT INTO b VALUES (0)');
  const dir = await mkdtemp(join(tmpdir(), 'migs-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, '20990101000000_deadlock'));
  await writeFile(join(dir, '20990101000000_deadlock', 'migration.sql'), 'UPDATE a SET v = v + 1;\nSELECT pg_sleep(0.3);\nUPDATE b SET v = v + 1;\n');

  // Another transaction holds b and (later) asks for a; it waits long before checking for a deadlock,
  // so PostgreSQL breaks the cycle by rolling back the migration.
  await other.query('BEGIN');
  await other.query(`SET LOCAL deadlock_timeout = '20s'`);
  await other.query('UPDATE b SET v = v + 10');
  const warnings: string[] = [];
  const migrating = migrate(url, { info() {}, warn: (m) => warnings.push(m) }, dir, { lockTimeoutMs: 30_000, retryDelayMs: 200, maxWaitMs: 30_000 }).then(
    () => 'applied',
    (e: Error) => e.message,
  );
  await sleep(700);
  await other.query('UPDATE a SET v = v + 10');
  await other.query('COMMIT');
  t.equal(await migrating, 'applied', 'tried again after the deadlock, and applied');
  t.ok(warnings.some((w) => w.includes('deadlock')), 'the deadlock is logged');
  t.same((await other.query('SELECT (SELECT v FROM a) AS a, (SELECT v FROM b) AS b')).rows, [{ a: 11, b: 11 }]);
});

// display-text.ts: "no more than four combining marks on one letter" — a mark is a mark whatever its kind
// (enclosing, spacing), and the format characters the rule keeps do not split a stack.
t.test('display text: five stacked marks of any kind are refused; four pass', async (t) => {
  const name = displayText(100);
  const refused = {
    'enclosing marks (Me)': `Dorax${'\u20DD'.repeat(5)}`,
    'spacing marks (Mc)': `Dorax${'\u0903'.repeat(5)}`,
    'marks split by a left-to-right mark': `Dorax\u0300\u0301\u200E\u0302\u0303\u0304`,
    'marks split by an Arabic letter mark': `Dorax\u0300\u0301\u061C\u0302\u0303\u0304`,
    'marks split by two left-to-right marks': `Dorax\u0300\u200E\u0301\u0302\u200E\u0303\u0304`,
  };
  for (const [label, text] of Object.entries(refused)) t.notOk(name.safeParse(text).success, `${label}: refused`);
  t.ok(name.safeParse('Dorax\u0300\u0301\u0302\u0303').success, 'four marks pass');
  t.ok(name.safeParse('\u0645\u0631\u064A\u0645 \u061C\u0041').success, 'an Arabic letter mark is kept');
});
