import t from 'tap';
import { SHUTDOWN, shutDown } from '../../../src/http/shutdown.js';
import { enqueueMail } from '../../../src/modules/mail/mail.service.js';
import { deliverDueMail, startMailWorker } from '../../../src/modules/mail/mail.worker.js';
import { buildTestApp } from '../../helpers/app.js';
import { startSmtpSink } from '../../helpers/smtp-sink.js';

/**
 * A graceful shutdown cannot wait for a slow SMTP server (a reply may take 30 s; the process is
 * killed 8 s after SIGTERM): the mail in hand is handed back to the outbox at SHUTDOWN.MAIL_LIMIT_MS,
 * due at once for the next instance, instead of staying leased for 10 minutes and then being sent
 * again. Found by session 24's multi-instance operator review (a relay taking 15 s: the mail went
 * out twice, 10 minutes apart).
 */

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

t.test('SIGTERM while the SMTP server has not answered: the mail is handed back at the mail limit, not left leased', async (t) => {
  const sink = await startSmtpSink(t);
  const { app, clock } = await buildTestApp(t, { SMTP_URL: sink.url, MAIL_WORKER_ENABLED: 'true' });
  const ctx = app.ctx;
  sink.holdReplies(true);
  const mail = await ctx.db.$transaction((tx) =>
    enqueueMail(tx, ctx, { to: { email: 'slow@example.test', language: null, id: null }, template: 'mfa_enrolled', data: { name: 'Slow' } }),
  );
  await until(() => sink.held() === 1, 'the worker to hand the message to the relay, which holds it');

  const started = Date.now();
  await shutDown(app);
  const took = Date.now() - started;
  t.ok(took >= SHUTDOWN.MAIL_LIMIT_MS - 300 && took < SHUTDOWN.DRAIN_LIMIT_MS + 1500, `the shutdown waited for the mail until the mail limit, not for the relay (${took} ms)`);

  const row = await ctx.db.mailOutbox.findUniqueOrThrow({ where: { id: mail.id } });
  t.equal(row.sentAt, null, 'not sent: the relay never answered');
  t.equal(row.lockedUntil, null, 'no lease left: the next instance may take it');
  t.ok(row.nextAttemptAt <= clock.now(), 'due at once');
  t.match(row.lastError, /interrupted by a shutdown/);
  t.equal(row.attempts, 1);

  // The next instance sends it right away (here: this database, another transport round).
  sink.holdReplies(false);
  await sink.waitFor(1);
  t.equal(sink.messages.length, 1, 'the held message, accepted late, as a relay may');
});

t.test('a relay that answers after the hand-back but before the process exits: the row is still marked sent, nothing goes twice', async (t) => {
  const sink = await startSmtpSink(t);
  const { app } = await buildTestApp(t, { SMTP_URL: sink.url });
  const ctx = app.ctx;
  sink.holdReplies(true);
  const mail = await ctx.db.$transaction((tx) =>
    enqueueMail(tx, ctx, { to: { email: 'late@example.test', language: null, id: null }, template: 'mfa_enrolled', data: { name: 'Late' } }),
  );
  const worker = startMailWorker(ctx, ctx.mailTransport, app.log);
  await until(() => sink.held() === 1, 'the worker to hand the message to the relay, which holds it');
  const started = Date.now();
  await worker.stop({ abandonAfterMs: 100 });
  t.ok(Date.now() - started < 2000, 'stop() returned at the abandon limit, without the relay\'s answer');
  t.equal((await ctx.db.mailOutbox.findUniqueOrThrow({ where: { id: mail.id } })).lockedUntil, null, 'handed back');

  sink.holdReplies(false);
  await sink.waitFor(1);
  await until(async () => (await ctx.db.mailOutbox.findUniqueOrThrow({ where: { id: mail.id } })).sentAt !== null, 'the late "sent" mark');
  t.same(await deliverDueMail(ctx, ctx.mailTransport), { claimed: 0, sent: 0, failed: 0 }, 'nothing left for the next instance');
  t.equal(sink.messages.length, 1, 'delivered once');
});
