import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { v7 as uuidv7 } from 'uuid';
import { deliverDueMail } from '../../../src/modules/mail/mail.worker.js';
import { firstIdAt, purgeEnded } from '../../../src/modules/retention/retention.js';
import { buildTestApp } from '../../helpers/app.js';
import { cli, cliEnv } from '../../helpers/cli.js';
import { createUser, signIn } from '../../helpers/factories.js';
import { api } from '../../helpers/http.js';

/**
 * Retention: ended sessions (with their refresh tokens), expired links and challenges, and sent or
 * given-up mail are deleted RETENTION_DAYS after they ended; anything live or unsent stays.
 */

const DAY = 24 * 3600;
/** The session id (`sid` claim) of a sign-in's access token. */
const sid = (signedIn: { accessToken: string }): string =>
  JSON.parse(Buffer.from(signedIn.accessToken.split('.')[1]!, 'base64url').toString()).sid;

t.test('purgeEnded deletes what ended more than RETENTION_DAYS ago and keeps everything else', async (t) => {
  const { app, clock } = await buildTestApp(t, { RETENTION_DAYS: '30' });
  const request = api(app);
  const db = app.ctx.db;
  const u = await createUser(db, app, { email: 'olivia@alpha.test' });
  const other = await createUser(db, app, { email: 'otto@alpha.test' });
  const third = await createUser(db, app, { email: 'tina@alpha.test' });

  // Day 0: a session that is logged out, one that is refreshed once and then left to idle-expire,
  // a reset link that is mailed (sent), a login challenge, a mail that stays unsent and one given up.
  const loggedOut = await signIn(app, u.user);
  t.equal((await request({ method: 'POST', url: '/v1/auth/logout', token: loggedOut.accessToken })).status, 204);
  const idle = await signIn(app, other.user);
  t.equal((await request({ url: '/v1/auth/refresh', body: { refreshToken: idle.refreshToken } })).status, 200);
  t.equal((await request({ url: '/v1/password/forgot', body: { email: 'olivia@alpha.test' } })).status, 202);
  await deliverDueMail(app.ctx, app.ctx.mailTransport, 10);
  t.equal((await request({ url: '/v1/auth/login', body: { email: 'olivia@alpha.test', password: u.password } })).status, 200);
  t.equal((await request({ url: '/v1/password/forgot', body: { email: 'otto@alpha.test' } })).status, 202);
  t.equal((await request({ url: '/v1/password/forgot', body: { email: 'tina@alpha.test' } })).status, 202);
  await db.mailOutbox.updateMany({ where: { toAddress: 'tina@alpha.test' }, data: { failedAt: clock.now(), lastError: '550 no such user' } });
  t.match({ flows: await db.flowToken.count(), sessions: await db.session.count(), tokens: await db.refreshToken.count(), mails: await db.mailOutbox.count() },
    { flows: 4, sessions: 2, tokens: 3, mails: 3 });

  // Day 29: the idle session has ended (its idle expiry is hours), less than 30 days ago.
  clock.advance(29 * DAY);
  t.match(await purgeEnded(app.ctx), { refresh_tokens: 0, sessions: 0, flow_tokens: 0, mail_outbox: 0 }, 'nothing is 30 days over yet');

  // Day 31 (30 days after the idle session's 12-hour idle expiry): a session that is live now, with
  // one rotation behind it (reuse detection needs the old token).
  clock.advance(2 * DAY);
  const live = await signIn(app, third.user);
  const rotated = await request({ url: '/v1/auth/refresh', body: { refreshToken: live.refreshToken } });
  t.equal(rotated.status, 200);
  t.equal((await request({ url: '/v1/password/forgot', body: { email: 'olivia@alpha.test' } })).status, 202, 'a link of today');

  const report = await purgeEnded(app.ctx);
  t.match(report, { refresh_tokens: 3, sessions: 2, flow_tokens: 4, mail_outbox: 2, stopped: false },
    'both day-0 sessions with their tokens, the day-0 links and challenge, the sent and the given-up mail');
  t.same(report.cutoff, new Date(clock.now().getTime() - 30 * DAY * 1000).toISOString());
  t.equal(await db.session.count({ where: { id: { in: [sid(loggedOut), sid(idle)] } } }), 0, 'the logged-out and the idle-expired session are gone');
  t.equal(await db.refreshToken.count({ where: { sessionId: { in: [sid(loggedOut), sid(idle)] } } }), 0, 'with their refresh tokens');
  t.equal(await db.refreshToken.count({ where: { sessionId: sid(live) } }), 2, 'a live session keeps its rotated token');
  t.equal(await db.flowToken.count(), 1, "only today's link is left");
  t.equal(await db.flowToken.count({ where: { state: 'PENDING', userId: u.user.id } }), 1);
  t.same((await db.mailOutbox.findMany({ select: { toAddress: true, sentAt: true, failedAt: true } })).map((m) => [m.toAddress, m.sentAt, m.failedAt]).sort(), [
    ['olivia@alpha.test', null, null],
    ['otto@alpha.test', null, null],
  ], 'unsent mail stays, however old');

  // Reuse of the rotated token, after the grace period, is still detected: the session ends.
  clock.advance(60);
  const reuse = await request({ url: '/v1/auth/refresh', body: { refreshToken: live.refreshToken } });
  t.equal(reuse.body.code, 'refresh_token_reused');

  t.match(await purgeEnded(app.ctx), { refresh_tokens: 0, sessions: 0, flow_tokens: 0, mail_outbox: 0 }, 'a second run finds nothing');
});

t.test('batches, a stop between them, and the CLI purge-ended (real clock)', async (t) => {
  const { app, databaseUrl } = await buildTestApp(t, { RETENTION_DAYS: '30' });
  const db = app.ctx.db;
  const u = await createUser(db, app, {});
  // 2,500 login challenges that expired 40 days ago (ids of their creation time), and one of now.
  const at = new Date(Date.now() - 40 * DAY * 1000);
  const old = Array.from({ length: 2500 }, (_, i) => ({
    id: uuidv7({ msecs: at.getTime() + i }),
    userId: u.user.id,
    purpose: 'LOGIN_CHALLENGE' as const,
    tokenHash: `old-${i}`,
    state: 'VOIDED' as const,
    expiresAt: new Date(at.getTime() + 300_000),
    createdAt: at,
  }));
  await db.flowToken.createMany({ data: old });
  await db.flowToken.create({ data: { userId: u.user.id, purpose: 'LOGIN_CHALLENGE', tokenHash: 'now', expiresAt: new Date(Date.now() + 300_000) } });
  t.ok(old.every((f) => f.id < firstIdAt(new Date(Date.now() - 30 * DAY * 1000))), 'ids sort before the cutoff id');

  const batches: number[] = [];
  const stopped = await purgeEnded({ ...app.ctx, clock: { now: () => new Date() } }, {
    onBatch: (table, deleted) => table === 'flow_tokens' && batches.push(deleted),
    shouldStop: () => batches.length === 2,
  });
  t.match(stopped, { flow_tokens: 2000, stopped: true }, 'two full batches, then the stop');
  t.same(batches, [1000, 1000]);

  const run = await cli(['purge-ended'], cliEnv(databaseUrl));
  t.equal(run.code, 0, run.stderr);
  t.match(JSON.parse(run.stdout), { flow_tokens: 500, sessions: 0, mail_outbox: 0, stopped: false, cutoff: String });
  t.equal(await db.flowToken.count(), 1, 'the live challenge stays');
});

t.test('the server sweeps by itself every RETENTION_SWEEP_INTERVAL_SECONDS and counts what it deleted', async (t) => {
  const { app, clock } = await buildTestApp(t, { RETENTION_SWEEP_INTERVAL_SECONDS: '1', RETENTION_DAYS: '1' });
  const request = api(app);
  const u = await createUser(app.ctx.db, app, {});
  const session = await signIn(app, u.user);
  t.equal((await request({ method: 'POST', url: '/v1/auth/logout', token: session.accessToken })).status, 204);
  clock.advance(2 * DAY);
  let scraped = '';
  for (let i = 0; i < 50 && !/retention_purged_total\{table="sessions"\} 1/.test(scraped); i++) {
    await sleep(100);
    scraped = (await request({ url: '/metrics' })).raw;
  }
  t.match(scraped, 'webshop_auth_retention_purged_total{table="sessions"} 1');
  t.match(scraped, 'webshop_auth_retention_purged_total{table="refresh_tokens"} 1');
  t.equal(await app.ctx.db.session.count({ where: { id: sid(session) } }), 0);
});

t.test('a finished mail that an older version left with its plain-text body is emptied by the sweep; a queued one is left to the worker', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const db = app.ctx.db;
  const plain = { template: 'password_reset', subject: 's', textBody: 'https://shop.example.test/reset-password?token=legacy', htmlBody: '<a>legacy</a>' };
  const sent = await db.mailOutbox.create({ data: { ...plain, toAddress: 'sent@example.test', sentAt: clock.now() } });
  const failed = await db.mailOutbox.create({ data: { ...plain, toAddress: 'failed@example.test', failedAt: clock.now() } });
  const queued = await db.mailOutbox.create({ data: { ...plain, toAddress: 'queued@example.test' } });
  t.match(await purgeEnded(app.ctx), { mail_outbox_plain_bodies: 2, mail_outbox: 0 });
  for (const id of [sent.id, failed.id]) t.match(await db.mailOutbox.findUniqueOrThrow({ where: { id } }), { textBody: null, htmlBody: null, subject: 's' }, 'emptied, kept');
  t.match(await db.mailOutbox.findUniqueOrThrow({ where: { id: queued.id } }), { textBody: plain.textBody }, 'a queued one keeps its body for the worker');
});

t.test('AUDIT_RETENTION_DAYS: audit rows older than it go, in batches; the table still refuses every other delete and every update', async (t) => {
  const days = (n: number) => new Date(Date.now() - n * DAY * 1000);
  const auditRows = (count: number, at: Date, type: string) =>
    Array.from({ length: count }, (_, i) => ({ id: uuidv7({ msecs: at.getTime() + i }), type, ip: '203.0.113.9', createdAt: new Date(at.getTime() + i) }));
  const realClock = { now: () => new Date() };

  const kept = await buildTestApp(t);
  await kept.app.ctx.db.auditEvent.createMany({ data: auditRows(3, days(5000), 'auth.login_succeeded') });
  const keptReport = await purgeEnded({ ...kept.app.ctx, clock: realClock });
  t.notOk('audit_events' in keptReport, 'unset: audit rows are not looked at');
  t.equal(await kept.app.ctx.db.auditEvent.count({ where: { type: 'auth.login_succeeded' } }), 3, '… and kept however old');

  const { app, databaseUrl } = await buildTestApp(t, { AUDIT_RETENTION_DAYS: '400' });
  const db = app.ctx.db;
  await db.auditEvent.createMany({ data: auditRows(1500, days(500), 'auth.login_succeeded') });
  await db.auditEvent.createMany({ data: auditRows(2, days(399), 'user.renamed') });

  const batches: number[] = [];
  const report = await purgeEnded({ ...app.ctx, clock: realClock }, { onBatch: (step, rows) => step === 'audit_events' && batches.push(rows) });
  t.match(report, { audit_events: 1500, stopped: false });
  t.same(batches, [1000, 500]);
  t.ok(Math.abs(new Date(report.auditCutoff!).getTime() - days(400).getTime()) < 60_000, 'the cutoff is AUDIT_RETENTION_DAYS ago');
  t.equal(await db.auditEvent.count({ where: { type: 'auth.login_succeeded' } }), 0);
  t.equal(await db.auditEvent.count({ where: { type: 'user.renamed' } }), 2, 'younger rows stay');

  // Outside the sweep the trigger refuses as before: a delete without a cutoff, one of rows newer
  // than the cutoff named, any update.
  await t.rejects(db.auditEvent.deleteMany({ where: { type: 'user.renamed' } }), /append-only/);
  await t.rejects(
    db.$transaction([
      db.$queryRawUnsafe(`SELECT set_config('webshop_auth.audit_cutoff', $1, true)`, days(400).toISOString()),
      db.$executeRawUnsafe(`DELETE FROM audit_events WHERE type = 'user.renamed'`),
    ]),
    /append-only/,
    'rows newer than the cutoff stay, whoever names one',
  );
  await t.rejects(
    db.$transaction([
      db.$queryRawUnsafe(`SELECT set_config('webshop_auth.audit_cutoff', $1, true)`, new Date().toISOString()),
      db.$executeRawUnsafe(`UPDATE audit_events SET ip = NULL WHERE type = 'user.renamed'`),
    ]),
    /append-only/,
    'no update, cutoff or not',
  );
  await t.rejects(
    db.$transaction([
      db.$queryRawUnsafe(`SELECT set_config('webshop_auth.audit_cutoff', 'infinity', true)`),
      db.$executeRawUnsafe(`DELETE FROM audit_events WHERE type = 'user.renamed'`),
    ]),
    /append-only/,
    'a cutoff less than a day old (here: none at all) lets nothing through',
  );
  t.equal(await db.auditEvent.count({ where: { type: 'user.renamed', ip: '203.0.113.9' } }), 2);

  await db.auditEvent.createMany({ data: auditRows(7, days(800), 'auth.login_failed') });
  const run = await cli(['purge-ended'], { ...cliEnv(databaseUrl), AUDIT_RETENTION_DAYS: '400' });
  t.equal(run.code, 0, run.stderr);
  t.match(JSON.parse(run.stdout), { audit_events: 7, auditCutoff: String }, 'the CLI purges them too');
});

t.test('AUDIT_RETENTION_DAYS=1 on an instance whose clock runs ahead of the database: the cutoff is clamped, the rows still go', async (t) => {
  const { app } = await buildTestApp(t, { AUDIT_RETENTION_DAYS: '1' });
  const db = app.ctx.db;
  const day = 24 * 3600 * 1000;
  const old = Date.now() - 3 * day;
  await db.auditEvent.createMany({
    data: [0, 1, 2].map((i) => ({ id: uuidv7({ msecs: old + i }), type: 'auth.login_succeeded', createdAt: new Date(old + i) })),
  });
  // Found by session 19's review: the trigger wants a cutoff a day before the DATABASE's now; an
  // instance 5 s ahead named one 5 s too young, and every batch was refused.
  const ahead = { now: () => new Date(Date.now() + 5_000) };
  const report = await purgeEnded({ ...app.ctx, clock: ahead });
  t.equal(report.audit_events, 3, 'purged');
  t.equal(await db.auditEvent.count({ where: { type: 'auth.login_succeeded' } }), 0);
});

t.test('a live session older than RETENTION_DAYS keeps its rotated refresh tokens: reuse detection holds (mutation review, session 20)', async (t) => {
  const { app, clock } = await buildTestApp(t, { RETENTION_DAYS: '1' });
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app, {});
  const first = await signIn(app, user);
  let current = first.refreshToken;
  // Used every 10 hours for two days: alive (idle timeout 12 h, absolute 7 days), its first tokens a day old and more.
  for (let i = 0; i < 5; i++) {
    clock.advance(10 * 3600);
    const res = await request({ url: '/v1/auth/refresh', body: { refreshToken: current } });
    t.equal(res.status, 200);
    current = res.body.refreshToken as string;
  }
  const { id: sessionId } = await app.ctx.db.session.findFirstOrThrow({ where: { userId: user.id } });
  const before = await app.ctx.db.refreshToken.count({ where: { sessionId } });
  t.equal(before, 6);
  await purgeEnded(app.ctx);
  t.equal(await app.ctx.db.refreshToken.count({ where: { sessionId } }), before, 'a live session keeps every rotated token');
  const reuse = await request({ url: '/v1/auth/refresh', body: { refreshToken: first.refreshToken } });
  t.equal(reuse.body.code, 'refresh_token_reused', 'the first token, two days old, is still known as rotated');
  t.equal((await request({ url: '/v1/auth/refresh', body: { refreshToken: current } })).status, 401, 'and its reuse ended the family');
});

t.test('the sweep comes again every RETENTION_SWEEP_INTERVAL_SECONDS, not only once after the start (mutation review, session 21)', async (t) => {
  const { app, clock } = await buildTestApp(t, { RETENTION_SWEEP_INTERVAL_SECONDS: '1', RETENTION_DAYS: '1' });
  const request = api(app);
  const purged = async () => Number(/retention_purged_total\{table="sessions"\} (\d+)/.exec((await request({ url: '/metrics' })).raw)?.[1] ?? 0);
  for (const expected of [1, 2]) {
    const u = await createUser(app.ctx.db, app, {});
    const session = await signIn(app, u.user);
    t.equal((await request({ method: 'POST', url: '/v1/auth/logout', token: session.accessToken })).status, 204);
    clock.advance(2 * DAY);
    let count = await purged();
    for (let i = 0; i < 50 && count < expected; i++) {
      await sleep(100);
      count = await purged();
    }
    t.equal(count, expected, `sweep ${expected} deleted the session ended before it`);
  }
});
