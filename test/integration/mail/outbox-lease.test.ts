import t from 'tap';
import type { AppContext } from '../../../src/context.js';
import { buildTestApp } from '../../helpers/app.js';
import { hangingTransport } from '../../helpers/outbox.js';
import { startSmtpSink } from '../../helpers/smtp-sink.js';
import { enqueueMail } from '../../../src/modules/mail/mail.service.js';
import { deliverDueMail, MAIL_LEASE_SECONDS, MARK_SENT_TRIES } from '../../../src/modules/mail/mail.worker.js';
import type { MailTransport } from '../../../src/modules/mail/mail.transport.js';

/**
 * The outbox worker's claims (mail.worker.ts): a row is claimed right before it is sent, and every
 * update after the send applies only while the row still carries that claim's token; a failing
 * "sent" mark is tried again instead of leaving the mail to be sent once more.
 */

/** ctx with a database whose "sent" marks (updateMany setting sentAt) fail `failures` times. */
function failingSentMarks(ctx: AppContext, failures: number) {
  const state = { failed: 0 };
  const outbox = new Proxy(ctx.db.mailOutbox, {
    get(target, prop) {
      if (prop === 'updateMany') {
        return async (args: { data: { sentAt?: unknown } }) => {
          if (args.data.sentAt && state.failed < failures) {
            state.failed++;
            throw Object.assign(new Error('Connection terminated unexpectedly'), { code: 'ECONNRESET' });
          }
          return target.updateMany(args as Parameters<typeof target.updateMany>[0]);
        };
      }
      const v = Reflect.get(target, prop);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  const db = new Proxy(ctx.db, {
    get(target, prop) {
      if (prop === 'mailOutbox') return outbox;
      const v = Reflect.get(target, prop);
      return typeof v === 'function' ? v.bind(target) : v;
    },
  });
  return { ctx: { db, clock: ctx.clock, config: ctx.config, keyring: ctx.keyring }, state };
}

t.test('a batch slowed by SMTP timeouts past the lease: a second instance running meanwhile sends no mail twice', async (t) => {
  const sink = await startSmtpSink(t);
  const { app, clock } = await buildTestApp(t, { SMTP_URL: sink.url });
  const ctx = app.ctx;
  await ctx.db.$transaction(async (tx) => {
    for (let i = 0; i < 20; i++) {
      await enqueueMail(tx, ctx, { to: { email: `u${i}@example.test`, language: null, id: null }, template: 'mfa_enrolled', data: { name: `U${i}` } });
    }
  });

  let sends = 0;
  let secondInstanceRan = false;
  // Instance A: the SMTP server stalls (every send times out after ~35 s) and recovers after 18 sends.
  const slow: MailTransport = {
    kind: 'smtp',
    async send(mail) {
      sends++;
      if (sends <= 18) {
        clock.advance(35);
        throw Object.assign(new Error('Timeout'), { code: 'ETIMEDOUT' });
      }
      if (!secondInstanceRan) {
        // Instance B's worker polls (every 2 s) while A is still working through its batch.
        secondInstanceRan = true;
        await deliverDueMail(ctx, ctx.mailTransport, 20);
      }
      await ctx.mailTransport.send(mail);
    },
    async close() {},
  };

  t.ok(18 * 35 > MAIL_LEASE_SECONDS, 'the batch takes longer than the lease');
  await deliverDueMail(ctx, slow, 20);
  t.ok(secondInstanceRan);

  const perRecipient = new Map<string, number>();
  for (const m of sink.messages) perRecipient.set(m.to[0]!, (perRecipient.get(m.to[0]!) ?? 0) + 1);
  t.same([...perRecipient].filter(([, n]) => n > 1).map(([to]) => to), [], 'no mail is delivered twice');

  clock.advance(3600);
  await deliverDueMail(ctx, ctx.mailTransport, 20);
  t.equal(sink.messages.length, 20, 'after the last back-off every mail has arrived, once');
  t.equal(new Set(sink.messages.map((m) => m.to[0])).size, 20);
  t.equal(await ctx.db.mailOutbox.count({ where: { sentAt: null } }), 0, 'and is marked sent');
});

/**
 * Inside worker A's send: A's lease runs out, and worker B claims the row and hangs in its own send
 * (holding the claim for the rest of the test).
 */
async function outlastLease(ctx: AppContext, clock: { advance(seconds: number): void }): Promise<void> {
  clock.advance(MAIL_LEASE_SECONDS + 1);
  const b = hangingTransport();
  void deliverDueMail(ctx, b.transport, 1);
  await b.claimed;
}

t.test('a worker whose claim was taken over writes nothing to the row: its failure does not release the new claim', async (t) => {
  const sink = await startSmtpSink(t);
  const { app, clock } = await buildTestApp(t, { SMTP_URL: sink.url });
  const ctx = app.ctx;
  await ctx.db.$transaction((tx) => enqueueMail(tx, ctx, { to: { email: 'taken@example.test', language: null, id: null }, template: 'password_changed', data: { name: 'T', sessionsEnded: 'others' } }));

  // A's send outlasts its lease; B takes the row over; then A's send fails.
  const outlasting: MailTransport = {
    kind: 'smtp',
    async send() {
      await outlastLease(ctx, clock);
      throw Object.assign(new Error('Timeout'), { code: 'ETIMEDOUT' });
    },
    async close() {},
  };

  t.same(await deliverDueMail(ctx, outlasting, 1), { claimed: 1, sent: 0, failed: 1 });
  const row = await ctx.db.mailOutbox.findFirstOrThrow();
  t.equal(row.attempts, 2, 'claimed twice');
  t.equal(row.lockedUntil?.getTime(), clock.now().getTime() + MAIL_LEASE_SECONDS * 1000, "B's lease stands");
  t.equal(row.lastError, null, "A's failure is not recorded");
  t.same(await deliverDueMail(ctx, ctx.mailTransport, 10), { claimed: 0, sent: 0, failed: 0 }, 'nobody else claims it');
  t.equal(sink.messages.length, 0);
});

t.test('the sent mark failing once (connection reset) is tried again: the mail is not delivered a second time', async (t) => {
  const sink = await startSmtpSink(t);
  const { app, clock } = await buildTestApp(t, { SMTP_URL: sink.url });
  const { ctx, state } = failingSentMarks(app.ctx, 1);
  await app.ctx.db.$transaction((tx) =>
    enqueueMail(tx, app.ctx, { to: { email: 'once@example.test', language: null, id: null }, template: 'password_changed', data: { name: 'Once', sessionsEnded: 'others' } }),
  );

  t.same(await deliverDueMail(ctx, app.ctx.mailTransport, 10), { claimed: 1, sent: 1, failed: 0 });
  t.equal(state.failed, 1, 'the first mark failed');
  t.ok((await app.ctx.db.mailOutbox.findFirstOrThrow()).sentAt, 'the second marked it sent');

  clock.advance(MAIL_LEASE_SECONDS + 1);
  t.same(await deliverDueMail(app.ctx, app.ctx.mailTransport, 10), { claimed: 0, sent: 0, failed: 0 });
  t.equal(sink.to('once@example.test').length, 1, 'delivered once');
});

t.test('the sent mark failing on every try is logged, and the rest of the batch is still delivered', async (t) => {
  const sink = await startSmtpSink(t);
  const { app } = await buildTestApp(t, { SMTP_URL: sink.url });
  const { ctx, state } = failingSentMarks(app.ctx, MARK_SENT_TRIES);
  await app.ctx.db.$transaction(async (tx) => {
    await enqueueMail(tx, app.ctx, { to: { email: 'first@example.test', language: null, id: null }, template: 'password_changed', data: { name: 'First', sessionsEnded: 'others' } });
    await enqueueMail(tx, app.ctx, { to: { email: 'second@example.test', language: null, id: null }, template: 'password_changed', data: { name: 'Second', sessionsEnded: 'others' } });
  });
  const errors: object[] = [];
  const log = { info: () => undefined, warn: () => undefined, error: (obj: object) => errors.push(obj) };

  t.same(await deliverDueMail(ctx, app.ctx.mailTransport, 10, log), { claimed: 2, sent: 2, failed: 0 });
  t.equal(state.failed, MARK_SENT_TRIES, 'every try of the first mark failed');
  t.equal(errors.length, 1, 'logged as an error');
  t.same(sink.messages.map((m) => m.to[0]), ['first@example.test', 'second@example.test'], 'both delivered');
  const rows = await app.ctx.db.mailOutbox.findMany({ orderBy: { toAddress: 'asc' } });
  t.same(rows.map((r) => [r.toAddress, r.sentAt !== null]), [['first@example.test', false], ['second@example.test', true]]);
});

t.test('a worker whose claim was taken over gives nothing up: a recipient refused after the take-over leaves the new claim and the body (mutation review, session 21)', async (t) => {
  const sink = await startSmtpSink(t);
  const { app, clock } = await buildTestApp(t, { SMTP_URL: sink.url });
  const ctx = app.ctx;
  await ctx.db.$transaction((tx) => enqueueMail(tx, ctx, { to: { email: 'taken@example.test', language: null, id: null }, template: 'password_changed', data: { name: 'T', sessionsEnded: 'others' } }));

  // A's send outlasts its lease; B takes the row over; then the server refuses A's recipient for good.
  const refusedLate: MailTransport = {
    kind: 'smtp',
    async send(mail) {
      await outlastLease(ctx, clock);
      sink.refuseRecipient('taken@example.test');
      await ctx.mailTransport.send(mail);
    },
    async close() {},
  };

  t.same(await deliverDueMail(ctx, refusedLate, 1), { claimed: 1, sent: 0, failed: 1 });
  const row = await ctx.db.mailOutbox.findFirstOrThrow();
  t.match(row, { failedAt: null, lastError: null, attempts: 2 }, 'not given up by the worker that lost its claim');
  t.ok(row.bodyCiphertext, 'the body is kept for the worker that holds the claim');
  t.equal(row.lockedUntil?.getTime(), clock.now().getTime() + MAIL_LEASE_SECONDS * 1000, "B's lease stands");
});
