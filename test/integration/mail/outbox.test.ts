import t from 'tap';
import { buildTestApp, TEST_ENV } from '../../helpers/app.js';
import { buildApp } from '../../../src/app.js';
import { loadConfig } from '../../../src/config.js';
import { openDatabase } from '../../../src/db/client.js';
import { MAIL_GIVE_UP_MIN_SECONDS } from '../../../src/config.js';
import { ACTIVATION_TTL_SECONDS } from '../../../src/modules/activation/activation.service.js';
import { PASSWORD_RESET_TTL_SECONDS } from '../../../src/modules/password/password.service.js';
import { MFA_RESET_TTL_SECONDS } from '../../../src/modules/support/mfa-reset.service.js';
import { inviteUser, tokenFromLink } from '../../helpers/accounts.js';
import { api } from '../../helpers/http.js';
import { hangingTransport } from '../../helpers/outbox.js';
import { startSmtpSink } from '../../helpers/smtp-sink.js';
import { enqueueMail, buildLink } from '../../../src/modules/mail/mail.service.js';
import { deliverDueMail, retryDelaySeconds, startMailWorker } from '../../../src/modules/mail/mail.worker.js';
import type { MailTransport } from '../../../src/modules/mail/mail.transport.js';

const expiresAt = new Date(Date.UTC(2026, 11, 1, 12, 30));
const HOUR = 3600;
const DAY = 24 * HOUR;

t.test('a mail written in a transaction is delivered once over SMTP, as text and HTML', async (t) => {
  const sink = await startSmtpSink(t);
  const { app, config } = await buildTestApp(t, { SMTP_URL: sink.url });
  const ctx = app.ctx;
  const link = buildLink(config, '/activate', 'tok-123');
  t.equal(link, 'https://shop.example.test/activate?token=tok-123');

  await ctx.db.$transaction((tx) =>
    enqueueMail(tx, ctx, {
      to: { email: 'Anna@Example.test', language: null, id: null },
      template: 'activation',
      data: { name: 'Anna <script>alert(1)</script>', link, expiresAt, organizationName: 'Müller & Söhne', username: "Anna.O'Neil&Co@Example.test", by: 'admin' },
    }),
  );
  const first = await deliverDueMail(ctx, ctx.mailTransport, 10);
  t.same(first, { claimed: 1, sent: 1, failed: 0 });
  const again = await deliverDueMail(ctx, ctx.mailTransport, 10);
  t.same(again, { claimed: 0, sent: 0, failed: 0 }, 'a sent mail is never claimed again');

  t.equal(sink.messages.length, 1);
  const mail = sink.messages[0]!;
  t.same(mail.to.map((a) => a.toLowerCase()), ['anna@example.test']);
  t.equal(mail.subject, 'ALSO Webshop: activate your account');
  t.match(mail.text, 'Hello Anna <script>alert(1)</script>,', 'the text part is plain text');
  t.match(mail.text, `${link}&lang=en`, "the link names the mail's language for the page it opens");
  t.match(mail.text, '1 December 2026 at 13:30 CET');
  t.notMatch(mail.html, '<script>', 'data is HTML-escaped');
  t.match(mail.html, 'Anna &lt;script&gt;alert(1)&lt;/script&gt;');
  t.match(mail.html, 'Müller &amp; Söhne');
  t.match(mail.text, "Your ALSO Webshop username: Anna.O'Neil&Co@Example.test");
  t.match(mail.html, 'Your ALSO Webshop username: Anna.O&#39;Neil&amp;Co@Example.test');
  t.match(mail.html, `href="${link}&amp;lang=en"`);
  t.match(mail.messageId, /^<[0-9a-f-]{36}@webshop\.localhost>$/, 'stable Message-ID from the outbox row');
  // An automated mail says so (RFC 3834 section 5; Exchange's own header too): auto-replies do not answer it.
  t.match(mail.raw, /^Auto-Submitted: auto-generated\r?$/m, 'Auto-Submitted: auto-generated');
  t.match(mail.raw, /^X-Auto-Response-Suppress: All\r?$/m, 'X-Auto-Response-Suppress: All');

  const row = await ctx.db.mailOutbox.findFirstOrThrow();
  t.ok(row.sentAt, 'marked sent');
  t.equal(row.attempts, 1);
});

t.test('a mail written in a transaction that rolls back is never sent', async (t) => {
  const sink = await startSmtpSink(t);
  const { app } = await buildTestApp(t, { SMTP_URL: sink.url });
  const ctx = app.ctx;
  await t.rejects(
    ctx.db.$transaction(async (tx) => {
      await enqueueMail(tx, ctx, { to: { email: 'a@example.test', language: null, id: null }, template: 'password_changed', data: { name: 'A', sessionsEnded: 'others' } });
      throw new Error('rollback');
    }),
  );
  t.equal(await ctx.db.mailOutbox.count(), 0);
  t.same(await deliverDueMail(ctx, ctx.mailTransport, 10), { claimed: 0, sent: 0, failed: 0 });
  t.equal(sink.messages.length, 0);
});

t.test('SMTP down, then up: the mail stays queued, is retried with back-off and delivered exactly once', async (t) => {
  const sink = await startSmtpSink(t);
  const { app, clock } = await buildTestApp(t, { SMTP_URL: sink.url });
  const ctx = app.ctx;
  await ctx.db.$transaction(async (tx) => {
    await enqueueMail(tx, ctx, { to: { email: 'b@example.test', language: null, id: null }, template: 'password_changed', data: { name: 'B', sessionsEnded: 'others' } });
    await enqueueMail(tx, ctx, { to: { email: 'c@example.test', language: null, id: null }, template: 'account_unblocked', data: { name: 'C' } });
  });

  await sink.stop();
  const down = await deliverDueMail(ctx, ctx.mailTransport, 10);
  t.same(down, { claimed: 2, sent: 0, failed: 2 });
  let rows = await ctx.db.mailOutbox.findMany({ orderBy: { toAddress: 'asc' } });
  for (const row of rows) {
    t.equal(row.sentAt, null);
    t.equal(row.attempts, 1);
    t.equal(row.lockedUntil, null, 'released for the next attempt');
    t.ok(row.lastError, 'the error is kept');
    t.equal(row.nextAttemptAt.getTime(), clock.now().getTime() + retryDelaySeconds(1) * 1000);
  }
  t.same(await deliverDueMail(ctx, ctx.mailTransport, 10), { claimed: 0, sent: 0, failed: 0 }, 'not due before the back-off');

  clock.advance(retryDelaySeconds(1));
  t.same(await deliverDueMail(ctx, ctx.mailTransport, 10), { claimed: 2, sent: 0, failed: 2 }, 'still down');
  rows = await ctx.db.mailOutbox.findMany();
  t.ok(rows.every((r) => r.attempts === 2 && r.nextAttemptAt.getTime() === clock.now().getTime() + retryDelaySeconds(2) * 1000), 'back-off doubles');
  t.equal(retryDelaySeconds(2), 2 * retryDelaySeconds(1));
  t.equal(retryDelaySeconds(100), 3600, 'capped');

  await sink.start();
  clock.advance(retryDelaySeconds(2));
  t.same(await deliverDueMail(ctx, ctx.mailTransport, 10), { claimed: 2, sent: 2, failed: 0 });
  clock.advance(3600);
  t.same(await deliverDueMail(ctx, ctx.mailTransport, 10), { claimed: 0, sent: 0, failed: 0 });
  t.equal(sink.messages.length, 2, 'each mail arrived once');
  t.same(sink.messages.map((m) => m.to[0]).sort(), ['b@example.test', 'c@example.test']);
  rows = await ctx.db.mailOutbox.findMany();
  t.ok(rows.every((r) => r.sentAt && r.lastError === null));
});

t.test('several workers at once: every mail is claimed and sent by exactly one', async (t) => {
  const sink = await startSmtpSink(t);
  const { app } = await buildTestApp(t, { SMTP_URL: sink.url });
  const ctx = app.ctx;
  await ctx.db.$transaction(async (tx) => {
    for (let i = 0; i < 12; i++) {
      await enqueueMail(tx, ctx, { to: { email: `u${i}@example.test`, language: null, id: null }, template: 'mfa_enrolled', data: { name: `U${i}` } });
    }
  });
  const results = await Promise.all([1, 2, 3, 4].map(() => deliverDueMail(ctx, ctx.mailTransport, 5)));
  const sent = results.reduce((n, r) => n + r.sent, 0);
  const more = await deliverDueMail(ctx, ctx.mailTransport, 20);
  t.equal(sent + more.sent, 12);
  t.equal(sink.messages.length, 12);
  t.equal(new Set(sink.messages.map((m) => m.to[0])).size, 12, 'no mail twice');
});

t.test('a claimed mail whose worker died is taken over after the lease', async (t) => {
  const sink = await startSmtpSink(t);
  const { app, clock } = await buildTestApp(t, { SMTP_URL: sink.url });
  const ctx = app.ctx;
  await ctx.db.$transaction((tx) => enqueueMail(tx, ctx, { to: { email: 'd@example.test', language: null, id: null }, template: 'mfa_reset_done', data: { name: 'D' } }));
  // A worker that claims and then "crashes" before sending.
  const crashed = hangingTransport();
  void deliverDueMail(ctx, crashed.transport, 10);
  await crashed.claimed;
  t.same(await deliverDueMail(ctx, ctx.mailTransport, 10), { claimed: 0, sent: 0, failed: 0 }, 'held by the lease');
  // Mutation review, session 21: the lease's length (10 min, well past the transport timeouts).
  clock.advance(10 * 60 - 1);
  t.same(await deliverDueMail(ctx, ctx.mailTransport, 10), { claimed: 0, sent: 0, failed: 0 }, 'still held a second before the lease ends');
  clock.advance(1);
  t.same(await deliverDueMail(ctx, ctx.mailTransport, 10), { claimed: 1, sent: 1, failed: 0 }, 'taken over once it ends');
  t.equal(sink.messages.length, 1);
});

t.test('the worker started by the app delivers on its own and stops with the app', async (t) => {
  const sink = await startSmtpSink(t);
  const { app } = await buildTestApp(t, { SMTP_URL: sink.url, MAIL_WORKER_ENABLED: 'true' });
  const ctx = app.ctx;
  await ctx.db.$transaction((tx) =>
    enqueueMail(tx, ctx, { to: { email: 'e@example.test', language: null, id: null }, template: 'recovery_code_used', data: { name: 'E', remaining: 1 } }),
  );
  const [mail] = await sink.waitFor(1, 10_000);
  t.match(mail!.text, 'You have 1 recovery code left.');
});

t.test('stopping the worker finishes the mail in hand and claims no more: the rest is left unclaimed for the next instance', async (t) => {
  const { app } = await buildTestApp(t);
  const ctx = app.ctx;
  await ctx.db.$transaction(async (tx) => {
    for (let i = 0; i < 10; i++) await enqueueMail(tx, ctx, { to: { email: `u${i}@example.test`, language: null, id: null }, template: 'password_changed', data: { name: `U${i}`, sessionsEnded: 'others' } });
  });
  let sending!: () => void;
  const firstSend = new Promise<void>((resolve) => (sending = resolve));
  const sent: string[] = [];
  const slow: MailTransport = {
    kind: 'smtp',
    async send(mail) {
      sending();
      await new Promise((resolve) => setTimeout(resolve, 200));
      sent.push(mail.to);
    },
    async close() {},
  };
  const quiet = { info() {}, warn() {}, error() {} };
  const worker = startMailWorker(ctx, slow, quiet, { batchSize: 10 });
  await firstSend;
  await worker.stop();
  t.equal(sent.length, 1, 'only the mail in hand was sent');
  const rows = await ctx.db.mailOutbox.findMany({ where: { sentAt: null } });
  t.equal(rows.length, 9);
  t.ok(rows.every((r) => r.attempts === 0 && r.lockedUntil === null), 'none claimed: another instance sends them at once');
});

t.test('without SMTP_URL mail goes to the log, without the body (and its links) outside development', async (t) => {
  const { app, config, logs } = await buildTestApp(t);
  const ctx = app.ctx;
  t.equal(ctx.mailTransport.kind, 'log');
  const link = buildLink(config, '/reset-password', 'secret-token-value-0123456789');
  await ctx.db.$transaction((tx) =>
    enqueueMail(tx, ctx, { to: { email: 'f@example.test', language: null, id: null }, template: 'password_reset', data: { name: 'F', link, expiresAt, mfaEnrolled: true, by: 'self' } }),
  );
  t.same(await deliverDueMail(ctx, ctx.mailTransport, 10), { claimed: 1, sent: 1, failed: 0 });
  const line = logs.find((l) => l.includes('SMTP_URL is not set'));
  t.ok(line, 'logged');
  t.match(line!, 'ALSO Webshop: reset your password');
  t.notMatch(logs.join('\n'), 'secret-token-value', 'no link in the log');
});

t.test('queued mail survives a restart: the next instance\'s worker delivers it', async (t) => {
  const sink = await startSmtpSink(t);
  await sink.stop();
  const first = await buildTestApp(t, { SMTP_URL: sink.url });
  const ctx = first.app.ctx;
  await ctx.db.$transaction((tx) => enqueueMail(tx, ctx, { to: { email: 'g@example.test', language: null, id: null }, template: 'account_blocked', data: { name: 'G', administrators: [] } }));
  t.same(await deliverDueMail(ctx, ctx.mailTransport, 10), { claimed: 1, sent: 0, failed: 1 }, 'SMTP is down');
  await first.app.close();

  // A new process on the same database, with the worker on and SMTP back.
  await sink.start();
  const config = loadConfig({
    ...TEST_ENV,
    LOG_LEVEL: 'silent',
    MAIL_WORKER_ENABLED: 'true',
    DATABASE_URL: first.databaseUrl,
    SMTP_URL: sink.url,
  });
  const database = openDatabase(first.databaseUrl, { max: 2 });
  first.clock.advance(3600);
  // Same ENCRYPTION_KEYS as the first instance: the body it sealed opens here.
  const second = await buildApp({ config, database, keyring: first.app.ctx.keyring, clock: first.clock });
  await second.ready();
  t.teardown(async () => {
    await second.close();
    await database.close();
  });
  const [mail] = await sink.waitFor(1, 10_000);
  t.equal(mail!.subject, 'ALSO Webshop: your account was blocked', 'as rendered when it was written');
  t.equal(sink.messages.length, 1);
});

t.test('a recipient the server refuses for good (550 to RCPT TO) is given up at once; the rest is delivered', async (t) => {
  const sink = await startSmtpSink(t);
  const { app, clock } = await buildTestApp(t, { SMTP_URL: sink.url });
  const ctx = app.ctx;
  sink.refuseRecipient('gone@example.test');
  await ctx.db.$transaction(async (tx) => {
    await enqueueMail(tx, ctx, { to: { email: 'gone@example.test', language: null, id: null }, template: 'password_changed', data: { name: 'Gone', sessionsEnded: 'others' } });
    await enqueueMail(tx, ctx, { to: { email: 'here@example.test', language: null, id: null }, template: 'password_changed', data: { name: 'Here', sessionsEnded: 'others' } });
  });

  t.same(await deliverDueMail(ctx, ctx.mailTransport, 10), { claimed: 2, sent: 1, failed: 1 });
  const gone = await ctx.db.mailOutbox.findFirstOrThrow({ where: { toAddress: 'gone@example.test' } });
  t.equal(gone.sentAt, null);
  t.equal(gone.failedAt?.getTime(), clock.now().getTime(), 'given up');
  t.match(gone.lastError, /550/, 'with the reason kept');
  t.match(gone, { bodyCiphertext: null, encryptionKeyId: null, textBody: null, htmlBody: null, subject: 'ALSO Webshop: your password was changed' }, 'its body is removed, its subject kept');
  t.same(sink.messages.map((m) => m.to[0]), ['here@example.test']);

  clock.advance(7 * 24 * 3600);
  t.same(await deliverDueMail(ctx, ctx.mailTransport, 10), { claimed: 0, sent: 0, failed: 0 }, 'never claimed again');

  const metrics = await app.inject({ url: '/metrics' });
  t.match(metrics.body, /webshop_auth_mail_outbox_failed 1\b/);
  t.match(metrics.body, /webshop_auth_mail_outbox_backlog 0\b/, 'not counted as backlog');
});

t.test('a relay refusing to relay (554 5.7.1), a full mailbox (552) or a policy 550 5.7.x is retried, not given up: delivered once it is fixed', async (t) => {
  const sink = await startSmtpSink(t);
  const { app, clock } = await buildTestApp(t, { SMTP_URL: sink.url });
  const ctx = app.ctx;
  const replies = {
    'relay@example.test': { code: 554, text: '5.7.1 <relay@example.test>: Relay access denied' },
    'full@example.test': { code: 552, text: 'Mailbox full' },
    'policy@example.test': { code: 550, text: '5.7.54 Unable to relay recipient in non-accepted domain' },
  };
  for (const [to, reply] of Object.entries(replies)) sink.refuseRecipient(to, reply);
  await ctx.db.$transaction(async (tx) => {
    for (const to of Object.keys(replies)) await enqueueMail(tx, ctx, { to: { email: to, language: null, id: null }, template: 'password_changed', data: { name: 'Someone', sessionsEnded: 'others' } });
  });

  t.same(await deliverDueMail(ctx, ctx.mailTransport, 10), { claimed: 3, sent: 0, failed: 3 });
  const rows = await ctx.db.mailOutbox.findMany();
  t.ok(rows.every((r) => r.failedAt === null && r.bodyCiphertext !== null && /55[024]/.test(r.lastError ?? '')), 'kept for a retry, body and reason kept');

  for (const to of Object.keys(replies)) sink.refuseRecipient(to, null);
  clock.advance(3600);
  t.same(await deliverDueMail(ctx, ctx.mailTransport, 10), { claimed: 3, sent: 3, failed: 0 });
  t.same(sink.messages.map((m) => m.to[0]).sort(), Object.keys(replies).sort(), 'each delivered once');
});

t.test('the outbox gives up no earlier than every e-mail link has expired: by default after 8 days', async (t) => {
  t.equal(loadConfig({}).mailGiveUpSeconds, 8 * DAY, 'the default');
  for (const ttl of [ACTIVATION_TTL_SECONDS, PASSWORD_RESET_TTL_SECONDS, MFA_RESET_TTL_SECONDS]) {
    t.ok(MAIL_GIVE_UP_MIN_SECONDS >= ttl, `the smallest MAIL_GIVE_UP_SECONDS allowed outlives a ${ttl} s link`);
  }
});

t.test('an activation mail and a notification undeliverable for 4 days are delivered once SMTP is back; the link still works', async (t) => {
  const sink = await startSmtpSink(t);
  const { app, clock } = await buildTestApp(t, { SMTP_URL: sink.url });
  const ctx = app.ctx;
  await sink.stop();
  const { user } = await inviteUser(app);
  await ctx.db.$transaction((tx) =>
    enqueueMail(tx, ctx, { to: { email: 'blocked@example.test', language: null, id: null }, template: 'account_blocked', data: { name: 'B', administrators: [] } }),
  );

  // Four days of outage, an attempt every 12 hours (each mail is due again within the hour).
  for (let elapsed = 0; elapsed < 4 * DAY; elapsed += 12 * HOUR) {
    t.same(await deliverDueMail(ctx, ctx.mailTransport, 10), { claimed: 2, sent: 0, failed: 2 }, `SMTP down after ${elapsed / HOUR} h`);
    clock.advance(12 * HOUR);
  }
  t.equal(await ctx.db.mailOutbox.count({ where: { failedAt: { not: null } } }), 0, 'nothing given up');

  await sink.start();
  t.same(await deliverDueMail(ctx, ctx.mailTransport, 10), { claimed: 2, sent: 2, failed: 0 }, 'both delivered, 4 days late');
  t.equal(sink.to('blocked@example.test').length, 1, 'the notification arrived');
  const [activation] = sink.to(user.email);
  t.ok(activation, 'the activation mail arrived');
  const inspect = await api(app)({ url: '/v1/activation/inspect', body: { token: tokenFromLink(activation!.text, '/activate') } });
  t.equal(inspect.status, 200, 'its link still works');
  t.equal(inspect.body.email, user.email);
});

t.test('SMTP trouble is retried until the mail is MAIL_GIVE_UP_SECONDS old, then given up: row kept, counted, logged', async (t) => {
  const sink = await startSmtpSink(t);
  const giveUp = 9 * DAY;
  const { app, clock, logs } = await buildTestApp(t, { SMTP_URL: sink.url, MAIL_GIVE_UP_SECONDS: String(giveUp) });
  const ctx = app.ctx;
  await ctx.db.$transaction((tx) => enqueueMail(tx, ctx, { to: { email: 'late@example.test', language: null, id: null }, template: 'password_changed', data: { name: 'Late', sessionsEnded: 'others' } }));
  await sink.stop();

  for (let elapsed = 0; elapsed < giveUp; elapsed += 12 * HOUR) {
    t.same(await deliverDueMail(ctx, ctx.mailTransport, 10, app.log), { claimed: 1, sent: 0, failed: 1 }, `SMTP down after ${elapsed / HOUR} h`);
    t.equal((await ctx.db.mailOutbox.findFirstOrThrow()).failedAt, null, 'still retried');
    clock.advance(12 * HOUR);
  }
  t.same(await deliverDueMail(ctx, ctx.mailTransport, 10, app.log), { claimed: 1, sent: 0, failed: 1 }, 'the attempt at the configured age');
  const row = await ctx.db.mailOutbox.findFirstOrThrow();
  t.equal(row.failedAt?.getTime(), clock.now().getTime(), 'given up');
  t.ok(row.lastError, 'with the reason kept');
  t.match(row, { bodyCiphertext: null, encryptionKeyId: null, textBody: null, htmlBody: null }, 'and its body removed');
  t.ok(
    logs.some((l) => l.includes('mail delivery failed permanently') && l.includes('"reason":"too_old"') && l.includes(row.id)),
    'logged as an error',
  );

  await sink.start();
  clock.advance(HOUR);
  t.same(await deliverDueMail(ctx, ctx.mailTransport, 10, app.log), { claimed: 0, sent: 0, failed: 0 }, 'never claimed again');
  t.equal(sink.messages.length, 0);
  const metrics = await app.inject({ url: '/metrics' });
  t.match(metrics.body, /webshop_auth_mail_outbox_failed 1\b/);
});

t.test('while its batches come back full the worker goes on at once, not after its interval (mutation review, session 21)', async (t) => {
  const { app } = await buildTestApp(t);
  const ctx = app.ctx;
  await ctx.db.$transaction(async (tx) => {
    for (let i = 0; i < 5; i++) await enqueueMail(tx, ctx, { to: { email: `u${i}@example.test`, language: null, id: null }, template: 'password_changed', data: { name: `U${i}`, sessionsEnded: 'others' } });
  });
  const sent: string[] = [];
  let allSent!: () => void;
  const done = new Promise<void>((resolve) => (allSent = resolve));
  const counting: MailTransport = {
    kind: 'smtp',
    async send(mail) {
      sent.push(mail.to);
      if (sent.length === 5) allSent();
    },
    async close() {},
  };
  const worker = startMailWorker(ctx, counting, { info() {}, warn() {}, error() {} }, { batchSize: 2, intervalMs: 60_000 });
  t.teardown(() => worker.stop());
  await Promise.race([done, new Promise((resolve) => setTimeout(resolve, 5000))]);
  t.equal(sent.length, 5, 'three passes (2 + 2 + 1) within seconds, not a minute apart');
});

/** A relay that answers with a whole page (or quotes the mail back) does not fill the row or the log with it. */
t.test('an SMTP error is kept to its first 1,000 characters in last_error (mutation review, session 21)', async (t) => {
  const { app } = await buildTestApp(t);
  const ctx = app.ctx;
  await ctx.db.$transaction((tx) => enqueueMail(tx, ctx, { to: { email: 'long@example.test', language: null, id: null }, template: 'password_changed', data: { name: 'L', sessionsEnded: 'others' } }));
  const verbose: MailTransport = {
    kind: 'smtp',
    send: async () => {
      throw Object.assign(new Error(`451 4.3.0 Temporary trouble: ${'x'.repeat(3000)}`), { responseCode: 451 });
    },
    close: async () => {},
  };
  t.same(await deliverDueMail(ctx, verbose, 10), { claimed: 1, sent: 0, failed: 1 });
  const row = await ctx.db.mailOutbox.findFirstOrThrow();
  t.equal(row.lastError?.length, 1000, 'cut at 1,000 characters');
  t.ok(row.lastError?.startsWith('451 451 4.3.0 Temporary trouble: xxx'), row.lastError?.slice(0, 40) ?? 'no error');
  t.equal(row.failedAt, null, 'still retried');
});
