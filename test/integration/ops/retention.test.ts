import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { deliverDueMail } from '../../../src/modules/mail/mail.worker.js';
import { purgeEnded } from '../../../src/modules/retention/retention.js';
import { buildTestApp } from '../../helpers/app.js';
import { cli, cliEnv } from '../../helpers/cli.js';
import { createUser, signIn } from '../../helpers/factories.js';
import { api } from '../../helpers/http.js';

/**
 * Retention: ended sessions (with their refresh tokens), expired links and challenges, and sent
 * mail are deleted RETENTION_DAYS after they ended; anything live or unsent stays.
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

  // Day 0: a session that is logged out, a reset link that is mailed (sent), a login challenge,
  // and a mail that stays unsent.
  const loggedOut = await signIn(app, u.user);
  t.equal((await request({ method: 'POST', url: '/v1/auth/logout', token: loggedOut.accessToken })).status, 204);
  t.equal((await request({ url: '/v1/password/forgot', body: { email: 'olivia@alpha.test' } })).status, 202);
  await deliverDueMail(app.ctx, app.ctx.mailTransport, 10);
  t.equal((await request({ url: '/v1/auth/login', body: { email: 'olivia@alpha.test', password: u.password } })).status, 200);
  t.equal((await request({ url: '/v1/password/forgot', body: { email: 'otto@alpha.test' } })).status, 202);
  const idle = await signIn(app, other.user); // never used again: idle-expires within days
  const day0 = { flows: await db.flowToken.count(), sessions: await db.session.count(), mails: await db.mailOutbox.count() };
  t.match(day0, { flows: 3, sessions: 2, mails: 2 });

  // Day 30 + 1 h: a session that is live now, with one rotation behind it (reuse detection needs the old token).
  clock.advance(30 * DAY + 3600);
  const live = await signIn(app, u.user);
  const rotated = await request({ url: '/v1/auth/refresh', body: { refreshToken: live.refreshToken } });
  t.equal(rotated.status, 200);
  t.equal((await request({ url: '/v1/password/forgot', body: { email: 'olivia@alpha.test' } })).status, 202, 'a link of today');

  const report = await purgeEnded(app.ctx);
  t.match(report, { sessions: 1, flow_tokens: 3, mail_outbox: 1 }, 'the logged-out session, the day-0 links and challenge, the sent mail');
  t.same(report.cutoff, new Date(clock.now().getTime() - 30 * DAY * 1000).toISOString());

  t.equal(await db.session.count({ where: { id: sid(loggedOut) } }), 0, 'the session logged out 30 days ago is gone');
  t.equal(await db.refreshToken.count({ where: { sessionId: sid(loggedOut) } }), 0, 'with its refresh tokens');
  t.equal(await db.session.count({ where: { id: sid(idle) } }), 1, 'a session that idle-expired less than 30 days ago stays');
  t.equal(await db.refreshToken.count({ where: { sessionId: sid(live) } }), 2, 'a live session keeps its rotated token');
  t.equal(await db.flowToken.count(), 1, "only today's link is left");
  t.equal(await db.flowToken.count({ where: { state: 'PENDING', userId: u.user.id } }), 1);
  t.same((await db.mailOutbox.findMany({ select: { toAddress: true, sentAt: true } })).map((m) => [m.toAddress, m.sentAt]).sort(), [
    ['olivia@alpha.test', null],
    ['otto@alpha.test', null],
  ], 'unsent mail stays, however old');

  // Reuse of the rotated token is still detected.
  const reuse = await request({ url: '/v1/auth/refresh', body: { refreshToken: live.refreshToken } });
  t.not(reuse.body.code, 'refresh_token_invalid', `reuse is recognised: ${reuse.body.code}`);

  t.match(await purgeEnded(app.ctx), { sessions: 0, flow_tokens: 0, mail_outbox: 0 }, 'a second run finds nothing');
  const run = await cli(['purge-ended'], cliEnv((await buildTestApp(t)).databaseUrl));
  t.equal(run.code, 0, run.stderr);
  t.match(JSON.parse(run.stdout), { sessions: 0, flow_tokens: 0, mail_outbox: 0, cutoff: String });
});

t.test('the server sweeps by itself every RETENTION_SWEEP_INTERVAL_SECONDS and counts what it deleted', async (t) => {
  const { app } = await buildTestApp(t, { RETENTION_SWEEP_INTERVAL_SECONDS: '1', RETENTION_DAYS: '1' });
  const request = api(app);
  const u = await createUser(app.ctx.db, app, {});
  const session = await signIn(app, u.user);
  // Revoked two days ago (the fake clock does not move the database's rows; the revocation time is set directly).
  await app.ctx.db.session.update({ where: { id: sid(session) }, data: { revokedAt: new Date(app.ctx.clock.now().getTime() - 2 * DAY * 1000) } });
  await app.ready();
  let scraped = '';
  for (let i = 0; i < 50 && !/retention_purged_total\{table="sessions"\} 1/.test(scraped); i++) {
    await sleep(100);
    scraped = (await request({ url: '/metrics' })).raw;
  }
  t.match(scraped, 'webshop_auth_retention_purged_total{table="sessions"} 1');
  t.equal(await app.ctx.db.session.count({ where: { id: sid(session) } }), 0);
});
