import type { AppContext } from '../../context.js';
import { addSeconds } from '../../lib/clock.js';
import type { MailTransport } from './mail.transport.js';

/**
 * Delivers the outbox. Several instances may run it at the same time:
 *
 * 1. claim: one UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) sets a lease
 *    (`locked_until`) on up to `limit` due rows and counts the attempt; rows another instance
 *    holds are skipped, so every row is claimed by one worker at a time;
 * 2. send each claimed row through the transport (SMTP); the lease (10 min) is far longer than the
 *    transport's timeouts, so the lease cannot run out while a send is still in flight;
 * 3. mark it sent (`sent_at`, conditional on `sent_at IS NULL`, so exactly once), or on failure
 *    release it with `next_attempt_at` pushed back exponentially (30 s, 1 min, 2 min, ... ≤ 1 h).
 *    An SMTP outage, a refused login or any other trouble of our own is retried, however long it
 *    lasts — except that delivery is given up (`failed_at`, logged as an error, counted by the
 *    `mail_outbox_failed` gauge, the row kept) when the server refuses the RECIPIENT permanently
 *    (5xx to RCPT TO: no such mailbox; retrying cannot help), or when a mail is still undelivered
 *    MAIL_GIVE_UP_SECONDS (3 days) after it was written: its links have expired by then (activation
 *    7 days is the longest, and a days-old "your password was changed" helps nobody), and the
 *    backlog gauges should show today's trouble, not a week-old mail.
 *
 * Delivery is at-least-once with one known gap: if the process dies after the SMTP server accepted
 * a mail but before step 3 commits, the row's lease runs out and the mail is sent once more (with
 * the same Message-ID, so mail clients can recognise the duplicate). Nothing else sends a mail twice.
 */

export const MAIL_LEASE_SECONDS = 10 * 60;
export const MAIL_RETRY_BASE_SECONDS = 30;
export const MAIL_RETRY_MAX_SECONDS = 3600;
export const MAIL_GIVE_UP_SECONDS = 3 * 24 * 3600;
const ERROR_TEXT_MAX = 1000;

export type MailLog = {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
};

type ClaimedRow = {
  id: string;
  toAddress: string;
  subject: string;
  textBody: string;
  htmlBody: string;
  attempts: number;
  createdAt: Date;
};

/** Delay before the next attempt after `attempts` failed ones. */
export function retryDelaySeconds(attempts: number): number {
  return Math.min(MAIL_RETRY_BASE_SECONDS * 2 ** Math.min(Math.max(attempts - 1, 0), 20), MAIL_RETRY_MAX_SECONDS);
}

/** The server refused the recipient for good (5xx to RCPT TO), as nodemailer reports it. */
export function isPermanentRecipientRefusal(err: unknown): boolean {
  const e = err as { responseCode?: unknown; command?: unknown } | null;
  return typeof e?.responseCode === 'number' && e.responseCode >= 500 && e.responseCode < 600 && e.command === 'RCPT TO';
}

const describe = (err: unknown): string => {
  const e = err as { code?: unknown; responseCode?: unknown; message?: unknown };
  const parts = [e.code, e.responseCode, typeof e.message === 'string' ? e.message : String(err)].filter((p) => p !== undefined);
  return parts.join(' ').slice(0, ERROR_TEXT_MAX);
};

export type DeliveryResult = { claimed: number; sent: number; failed: number };

/** Claims up to `limit` due mails and tries each once. Tests call this directly. */
export async function deliverDueMail(
  ctx: Pick<AppContext, 'db' | 'clock'>,
  transport: MailTransport,
  limit = 20,
  log?: MailLog,
): Promise<DeliveryResult> {
  const now = ctx.clock.now();
  const leaseUntil = addSeconds(now, MAIL_LEASE_SECONDS);
  const rows = await ctx.db.$queryRaw<ClaimedRow[]>`
    UPDATE mail_outbox SET locked_until = ${leaseUntil}, attempts = attempts + 1
    WHERE id IN (
      SELECT id FROM mail_outbox
      WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ${now} AND (locked_until IS NULL OR locked_until <= ${now})
      ORDER BY next_attempt_at, id
      LIMIT ${limit}
      FOR UPDATE SKIP LOCKED
    )
    RETURNING id, to_address AS "toAddress", subject, text_body AS "textBody", html_body AS "htmlBody", attempts, created_at AS "createdAt"`;

  const result: DeliveryResult = { claimed: rows.length, sent: 0, failed: 0 };
  for (const row of rows) {
    try {
      await transport.send({ id: row.id, to: row.toAddress, subject: row.subject, text: row.textBody, html: row.htmlBody });
    } catch (err) {
      result.failed++;
      const at = ctx.clock.now();
      const refused = isPermanentRecipientRefusal(err);
      if (refused || at.getTime() - row.createdAt.getTime() >= MAIL_GIVE_UP_SECONDS * 1000) {
        await ctx.db.mailOutbox.updateMany({
          where: { id: row.id, sentAt: null },
          data: { lockedUntil: null, failedAt: at, lastError: describe(err) },
        });
        log?.error(
          { mailId: row.id, attempts: row.attempts, reason: refused ? 'recipient_refused' : 'too_old', err: describe(err) },
          'mail delivery failed permanently; not retried',
        );
        continue;
      }
      const delay = retryDelaySeconds(row.attempts);
      await ctx.db.mailOutbox.updateMany({
        where: { id: row.id, sentAt: null },
        data: { lockedUntil: null, nextAttemptAt: addSeconds(at, delay), lastError: describe(err) },
      });
      log?.warn({ mailId: row.id, attempts: row.attempts, retryInSeconds: delay, err: describe(err) }, 'mail delivery failed; will retry');
      continue;
    }
    await ctx.db.mailOutbox.updateMany({
      where: { id: row.id, sentAt: null },
      data: { sentAt: ctx.clock.now(), lockedUntil: null, lastError: null },
    });
    result.sent++;
    log?.info({ mailId: row.id, attempts: row.attempts, transport: transport.kind }, 'mail delivered');
  }
  return result;
}

export type MailWorker = { stop(): Promise<void>; /** Runs a pass soon (e.g. after a mail was written). */ wake(): void };

/**
 * Polls the outbox every `intervalMs` (immediately again while full batches keep coming). Errors
 * (database down, ...) are logged and the loop goes on; `stop()` waits for the pass in flight.
 */
export function startMailWorker(
  ctx: Pick<AppContext, 'db' | 'clock'>,
  transport: MailTransport,
  log: MailLog,
  options: { intervalMs?: number; batchSize?: number } = {},
): MailWorker {
  const intervalMs = options.intervalMs ?? 2000;
  const batchSize = options.batchSize ?? 20;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  const schedule = (ms: number) => {
    if (stopped) return;
    clearTimeout(timer);
    timer = setTimeout(tick, ms);
    timer.unref();
  };

  function tick(): void {
    if (stopped || running) return;
    running = (async () => {
      let next = intervalMs;
      try {
        const { claimed } = await deliverDueMail(ctx, transport, batchSize, log);
        if (claimed === batchSize) next = 0;
      } catch (err) {
        log.error({ err: describe(err) }, 'mail worker pass failed; retrying');
      }
      running = undefined;
      schedule(next);
    })();
  }

  schedule(0);
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
    wake() {
      if (!running) schedule(0);
    },
  };
}
