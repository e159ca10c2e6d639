import { randomUUID } from 'node:crypto';
import type { AppContext } from '../../context.js';
import { addSeconds } from '../../lib/clock.js';
import { startPeriodicTask, type PeriodicTask } from '../../lib/periodic-task.js';
import { backoffSeconds, retrying } from '../../lib/retry.js';
import { SecretBoxError } from '../../lib/secret-box.js';
import { NO_MAIL_BODY, readMailBody, type MailBody, type StoredMailBody } from './mail-body.js';
import type { MailTransport } from './mail.transport.js';

/**
 * Delivers the outbox. Several instances may run it at the same time. For each mail, one after the
 * other (up to `limit` per pass):
 *
 * 1. claim: one UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1) takes the next due
 *    row, sets its lease (`locked_until`, 10 min from now) and a new `claim_token`, and counts the
 *    attempt. Rows another instance holds are skipped, and a row whose lease ran out gets a new
 *    token when it is claimed again, so at any moment one worker holds a row's claim. A row is
 *    claimed right before it is sent: its lease does not run out while other mails wait their turn.
 *    An instance claims only mails sealed under a key it has (a rolling key rotation: another
 *    instance with the newer key sends them, and this one neither delays nor drops them), except a
 *    mail that is MAIL_GIVE_UP_SECONDS old, which any instance claims and, if it cannot open it, gives up.
 * 2. open its sealed body (mail-body.ts; a row written before bodies were sealed has it in plain
 *    text) and send it through the transport (SMTP); the transport's timeouts (10 s to connect and
 *    for the greeting, 30 s of silence on the socket) keep a send well inside the lease. A body
 *    that does not open (the row was tampered with, or its key is gone for good) is given up at
 *    once like a refused recipient below: retrying cannot help.
 * 3. mark it sent (`sent_at`), or on failure release it with `next_attempt_at` pushed back
 *    exponentially (30 s, 1 min, 2 min, ... ≤ 1 h). Each of these updates applies only while the
 *    row still carries this claim's token (and `sent_at IS NULL`): a worker that lost its claim
 *    writes nothing, so it cannot mark, release or give up a row another worker now holds. A failing
 *    "sent" mark (the database was briefly unreachable) is tried MARK_SENT_TRIES times over about
 *    2 s; if it still fails, or the claim was lost meanwhile, this is logged and the pass goes on.
 *    An SMTP outage, a refused login or any other trouble of our own is retried, however long it
 *    lasts — except that delivery is given up (`failed_at`, logged as an error, counted by the
 *    `mail_outbox_failed` gauge, the row kept) when the server refuses the RECIPIENT permanently
 *    (5xx to RCPT TO: no such mailbox; retrying cannot help), or when a mail is still undelivered
 *    MAIL_GIVE_UP_SECONDS (config, default 8 days) after it was written. That age is never below
 *    the longest link lifetime (activation, 7 days; MAIL_GIVE_UP_MIN_SECONDS), so no mail whose
 *    link still works is dropped, and a notification without a link (account blocked, MFA removed,
 *    password changed) outlasts any outage short of a week.
 *    Marking a mail sent or given up also removes its body (sealed or plain) in the same UPDATE:
 *    a row that is done keeps recipient, template, subject, timestamps, attempts and last error,
 *    and no link token.
 *
 * Delivery is at-least-once, not exactly-once. A mail the SMTP server accepted is sent once more
 * (with the same Message-ID, so mail clients can recognise the duplicate) after its lease runs out
 * when the "sent" mark did not commit: the process died in between, or the database stayed
 * unreachable through every try of the mark. It can also be sent twice if one send outlasts the
 * lease (a server that keeps trickling bytes so the socket timeout never fires; a process frozen for
 * 10 minutes): the claim token keeps the rows consistent then, but cannot call back a mail already
 * handed to SMTP. And a server that accepts a message only after we stopped waiting gets it again
 * on the next try: after its reply timed out (30 s of silence), or after a shutdown handed the
 * mail back (handBack) and the process exited before the reply came.
 */

export const MAIL_LEASE_SECONDS = 10 * 60;
export const MAIL_RETRY_BASE_SECONDS = 30;
export const MAIL_RETRY_MAX_SECONDS = 3600;
/** Tries of the "sent" mark, waiting 250 ms, 500 ms, 1 s in between. */
export const MARK_SENT_TRIES = 4;
const MARK_SENT_FIRST_BACKOFF_MS = 250;
const ERROR_TEXT_MAX = 1000;

export type MailLog = {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
};

type ClaimedRow = StoredMailBody & {
  id: string;
  claimToken: string;
  toAddress: string;
  subject: string;
  attempts: number;
  createdAt: Date;
};

type Claim = { id: string; claimToken: string; sentAt: null };

/** Delay before the next attempt after `attempts` failed ones. */
export function retryDelaySeconds(attempts: number): number {
  return backoffSeconds(attempts, MAIL_RETRY_BASE_SECONDS, MAIL_RETRY_MAX_SECONDS);
}

/**
 * The server refused the recipient's address for good, as nodemailer reports a reply to RCPT TO:
 * enhanced status 5.1.x (bad mailbox or address, RFC 3463), or 550/551/553 without one. A relay
 * refusing to relay or to accept this sender (5.7.x: 554 Relay access denied, 550 5.7.54), a full
 * mailbox (552) and the like are the relay's trouble or passing: retried until MAIL_GIVE_UP_SECONDS.
 */
export function isPermanentRecipientRefusal(err: unknown): boolean {
  const e = err as { responseCode?: unknown; command?: unknown; response?: unknown } | null;
  if (e?.command !== 'RCPT TO' || typeof e.responseCode !== 'number') return false;
  const enhanced = typeof e.response === 'string' ? /^\d{3}[ -]([245])\.(\d{1,3})\.\d{1,3}\b/.exec(e.response) : null;
  if (enhanced) return enhanced[1] === '5' && enhanced[2] === '1';
  return e.responseCode === 550 || e.responseCode === 551 || e.responseCode === 553;
}

/** The link tokens of a mail body (activation, reset, MFA-reset and e-mail-change links). */
function linkTokensOf(body: MailBody): string[] {
  return [...`${body.text}\n${body.html}`.matchAll(/[?&](?:amp;)?token=([A-Za-z0-9_-]{8,})/g)].map((m) => m[1]!);
}

/** Shortest piece of a link token taken out of an SMTP reply: 8 base64url characters are 48 bits. */
const TOKEN_PIECE = 8;

/**
 * An SMTP error for last_error and the log. A server reply may quote the mail (a spam or content
 * filter's "offending text"), as decoded text or as it was on the wire: quoted-printable, with
 * `token=` written `token=3D` and soft line breaks (`=` + CRLF, often turned into spaces) cutting a
 * token anywhere. So beyond any `token=` value, every run of token characters that shares
 * TOKEN_PIECE or more characters in a row with one of the mail's own link tokens is taken out.
 * E-mail addresses are taken out too: servers name the recipient they refuse ("550 5.1.1
 * <erika@example.com>: Recipient address rejected"), and the log holds no addresses (DPO review,
 * session 30); the outbox row the mailId names has the recipient.
 */
function describe(err: unknown, linkTokens: readonly string[] = []): string {
  const e = err as { code?: unknown; responseCode?: unknown; message?: unknown };
  const parts = [e.code, e.responseCode, typeof e.message === 'string' ? e.message : String(err)].filter((p) => p !== undefined);
  const quotesToken = (run: string) =>
    linkTokens.some((token) => {
      for (let i = 0; i + TOKEN_PIECE <= run.length; i++) if (token.includes(run.slice(i, i + TOKEN_PIECE))) return true;
      return false;
    });
  return parts
    .join(' ')
    .replace(/([?&]token=)[^\s&"'<>]+/g, '$1[redacted]')
    // Every word with an @ (the local part may hold an apostrophe: o'neil@…, EMAIL_PATTERN allows
    // it); found word by word, in linear time however long the reply.
    .replace(/<?[^\s<>"(),;:]+>?/g, (word) => (word.includes('@') ? '[address]' : word))
    .replace(/[A-Za-z0-9_-]{8,}/g, (run) => (quotesToken(run) ? '[redacted]' : run))
    .slice(0, ERROR_TEXT_MAX);
}

export type DeliveryResult = { claimed: number; sent: number; failed: number };

/**
 * Claims due mails one at a time, up to `limit`, and tries each once; claims no more once
 * `stopping()` (a shutdown: the mail in hand is finished, the rest waits for the next instance).
 * Tests call this directly.
 */
export async function deliverDueMail(
  ctx: Pick<AppContext, 'db' | 'clock' | 'config' | 'keyring'>,
  transport: MailTransport,
  limit = 20,
  log?: MailLog,
  stopping: () => boolean = () => false,
  abandon?: AbortSignal,
): Promise<DeliveryResult> {
  const result: DeliveryResult = { claimed: 0, sent: 0, failed: 0 };
  while (result.claimed < limit && !stopping()) {
    const row = await claimNext(ctx);
    if (!row) break;
    result.claimed++;
    // Every update below applies only while the row is unsent and still carries this claim's token.
    const mine: Claim = { id: row.id, claimToken: row.claimToken, sentAt: null };
    let body: MailBody;
    try {
      body = readMailBody(ctx.keyring, row.id, row);
    } catch (err) {
      // Nothing is sent. The error names the cause and the key id, never anything of the body (an
      // unexpected error's message is left out: it might quote what it failed on).
      result.failed++;
      const cause = err instanceof SecretBoxError ? `${err.reason}: ${err.message}` : 'unexpected error';
      const lastError = `mail body cannot be opened: ${cause}`.slice(0, ERROR_TEXT_MAX);
      await giveUp(ctx, mine, ctx.clock.now(), lastError);
      log?.error(
        { mailId: row.id, attempts: row.attempts, reason: 'body_unreadable', err: lastError, encryptionKeyId: row.encryptionKeyId },
        'mail delivery failed permanently: its body cannot be opened; not retried',
      );
      continue;
    }
    const sending = transport.send({ id: row.id, to: row.toAddress, subject: row.subject, text: body.text, html: body.html });
    if (abandon && (await outlasts(sending, abandon))) {
      await handBack(ctx, mine, row, sending, log);
      break;
    }
    try {
      await sending;
    } catch (err) {
      result.failed++;
      const at = ctx.clock.now();
      const lastError = describe(err, linkTokensOf(body));
      const refused = isPermanentRecipientRefusal(err);
      if (refused || at.getTime() - row.createdAt.getTime() >= ctx.config.mailGiveUpSeconds * 1000) {
        await giveUp(ctx, mine, at, lastError);
        log?.error(
          { mailId: row.id, attempts: row.attempts, reason: refused ? 'recipient_refused' : 'too_old', err: lastError },
          'mail delivery failed permanently; not retried',
        );
        continue;
      }
      const delay = retryDelaySeconds(row.attempts);
      await ctx.db.mailOutbox.updateMany({
        where: mine,
        data: { lockedUntil: null, nextAttemptAt: addSeconds(at, delay), lastError },
      });
      log?.warn({ mailId: row.id, attempts: row.attempts, retryInSeconds: delay, err: lastError }, 'mail delivery failed; will retry');
      continue;
    }
    result.sent++;
    try {
      if (await markSent(ctx, mine)) {
        log?.info({ mailId: row.id, attempts: row.attempts, transport: transport.kind }, 'mail delivered');
      } else {
        log?.warn({ mailId: row.id, attempts: row.attempts }, 'mail delivered after its claim was lost (taken over: it may be delivered twice; or its row deleted by an erasure)');
      }
    } catch (err) {
      log?.error(
        { mailId: row.id, attempts: row.attempts, err: describe(err) },
        'mail delivered but not marked sent; it will be delivered again after the lease',
      );
    }
  }
  return result;
}

/** True when `abandon` fires before `work` settles (false when it settles first, however). */
async function outlasts(work: Promise<unknown>, abandon: AbortSignal): Promise<boolean> {
  if (abandon.aborted) return true;
  let onAbort!: () => void;
  const aborted = new Promise<true>((resolve) => {
    onAbort = () => resolve(true);
    abandon.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([work.then(() => false, () => false), aborted]);
  } finally {
    abandon.removeEventListener('abort', onAbort);
  }
}

/**
 * A shutdown cannot wait for an SMTP server that has not answered yet (its replies may take 30 s;
 * the process is killed after 8): the row is handed back, due now and unleased, so the next
 * instance sends it at once instead of after the 10-minute lease. The claim token stays: if the
 * server still accepts before the process exits, the row is marked sent as usual (unless another
 * instance claimed it meanwhile). A server that accepts the message after this process has gone
 * gets it once more from the next instance, as after any interrupted send (at-least-once).
 */
async function handBack(
  ctx: Pick<AppContext, 'db' | 'clock'>,
  mine: Claim,
  row: ClaimedRow,
  sending: Promise<void>,
  log?: MailLog,
): Promise<void> {
  sending.then(
    () => markSent(ctx, mine).catch(() => false),
    () => undefined,
  );
  const lastError = 'interrupted by a shutdown before the SMTP server answered';
  await ctx.db.mailOutbox.updateMany({ where: mine, data: { lockedUntil: null, nextAttemptAt: ctx.clock.now(), lastError } });
  log?.warn({ mailId: row.id, attempts: row.attempts }, 'mail handed back to the outbox: the shutdown could not wait for the SMTP server; it may be delivered twice');
}

/** Claims the next due row: lease, new claim token, one more attempt. */
async function claimNext(ctx: Pick<AppContext, 'db' | 'clock' | 'config' | 'keyring'>): Promise<ClaimedRow | undefined> {
  const now = ctx.clock.now();
  const rows = await ctx.db.$queryRaw<ClaimedRow[]>`
    UPDATE mail_outbox
    SET locked_until = ${addSeconds(now, MAIL_LEASE_SECONDS)}, claim_token = ${randomUUID()}::uuid, attempts = attempts + 1
    WHERE id = (
      SELECT id FROM mail_outbox
      WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= ${now} AND (locked_until IS NULL OR locked_until <= ${now})
        AND (encryption_key_id IS NULL OR encryption_key_id = ANY(${[...ctx.keyring.keys.keys()]}::text[])
             OR created_at <= ${new Date(now.getTime() - ctx.config.mailGiveUpSeconds * 1000)})
      ORDER BY next_attempt_at, id
      LIMIT 1
      FOR UPDATE SKIP LOCKED
    )
    RETURNING id, claim_token AS "claimToken", to_address AS "toAddress", subject, body_ciphertext AS "bodyCiphertext",
      encryption_key_id AS "encryptionKeyId", text_body AS "textBody", html_body AS "htmlBody", attempts, created_at AS "createdAt"`;
  return rows[0];
}

/** Gives a claimed row up (not retried), removing its body, if the claim is still ours. */
async function giveUp(ctx: Pick<AppContext, 'db'>, mine: Claim, at: Date, lastError: string): Promise<void> {
  await ctx.db.mailOutbox.updateMany({ where: mine, data: { lockedUntil: null, failedAt: at, lastError, ...NO_MAIL_BODY } });
}

/**
 * Marks a delivered row sent, removing its body, if the claim is still ours (false when it was
 * lost). A failing update is tried again after a short pause, as losing the mark means sending the
 * mail again; the last failure is thrown.
 */
async function markSent(ctx: Pick<AppContext, 'db' | 'clock'>, mine: Claim): Promise<boolean> {
  const { count } = await retrying(
    () => ctx.db.mailOutbox.updateMany({ where: mine, data: { sentAt: ctx.clock.now(), lockedUntil: null, lastError: null, ...NO_MAIL_BODY } }),
    { tries: MARK_SENT_TRIES, firstDelayMs: MARK_SENT_FIRST_BACKOFF_MS },
  );
  return count === 1;
}

export type MailWorker = Omit<PeriodicTask, 'stop'> & {
  /**
   * Claims no more mail and waits for the one in hand; after `abandonAfterMs` a send the SMTP
   * server has not answered is handed back to the outbox (handBack) instead.
   */
  stop(options?: { abandonAfterMs?: number }): Promise<void>;
};

/**
 * Polls the outbox every `intervalMs` (immediately again while full batches keep coming). Errors
 * (database down, ...) are logged and the loop goes on; `stop()` waits for the mail in flight (or hands it back),
 * not for the rest of its batch.
 */
export function startMailWorker(
  ctx: Pick<AppContext, 'db' | 'clock' | 'config' | 'keyring'>,
  transport: MailTransport,
  log: MailLog,
  options: { intervalMs?: number; batchSize?: number } = {},
): MailWorker {
  const intervalMs = options.intervalMs ?? 2000;
  const batchSize = options.batchSize ?? 20;
  const abandon = new AbortController();
  const task = startPeriodicTask({
    firstDelayMs: 0,
    async pass(stopping) {
      const { claimed } = await deliverDueMail(ctx, transport, batchSize, log, stopping, abandon.signal);
      return claimed === batchSize ? 0 : intervalMs;
    },
    failed(err) {
      log.error({ err: describe(err) }, 'mail worker pass failed; retrying');
      return intervalMs;
    },
  });
  return {
    wake: task.wake,
    async stop({ abandonAfterMs = Infinity } = {}) {
      const timer = Number.isFinite(abandonAfterMs) ? setTimeout(() => abandon.abort(), abandonAfterMs) : undefined;
      try {
        await task.stop();
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
