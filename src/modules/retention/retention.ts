import type { AppContext } from '../../context.js';
import type { Db } from '../../db/client.js';
import { MAIL_BUDGET_WINDOW_SECONDS } from '../mail/mail-budget.js';

/**
 * Retention: what has ended is deleted RETENTION_DAYS (default 30) after it ended, so the tables
 * that grow with every login stay bounded (as Kratos' `cleanup` and Keycloak's expiry sweeps do):
 *
 *  - refresh tokens of sessions that ended, then those sessions (revoked, or past their absolute
 *    or idle expiry). A live session keeps every rotated token: reuse detection needs them;
 *  - e-mail links and login challenges whose expiry passed (whether used, voided or never used);
 *  - mail that was sent or given up (the outbox keeps unsent mail however old);
 *  - the mail budget's rows (mail-budget.ts), an hour after they were written.
 *
 * Audit events are deleted only with AUDIT_RETENTION_DAYS set, that many days after they were
 * written (unset: never). The table refuses deletes otherwise (an append-only trigger): each batch
 * names its cutoff to the trigger in its own transaction, which lets only older rows go.
 *
 * Cost: ids are UUIDv7, so their order is the order of creation, and a row that ended before the
 * cutoff was created before it: each batch walks the primary key up to the cutoff's id instead of
 * scanning the table (no extra index to maintain on the login path). Each batch is one short
 * statement of at most BATCH_SIZE rows that locks only rows nobody holds (SKIP LOCKED): a block
 * or a reset revoking a user's old sessions never waits for a long purge, and the purge waits for
 * nothing, so the two cannot deadlock; a skipped row goes in a later sweep. `shouldStop` is asked
 * between batches (shutdown); `onBatch` hears of every batch (metrics count what a failed sweep did delete).
 */

export const RETENTION_TABLES = ['refresh_tokens', 'sessions', 'flow_tokens', 'mail_outbox'] as const;
/** Counted as a step of its own, after the tables above: the mail budget's rows, an hour after they were written. */
export const MAIL_BUDGET = 'mail_budget';
/** Counted as a step of its own, after the tables above, when AUDIT_RETENTION_DAYS is set. */
export const AUDIT_EVENTS = 'audit_events';
/** Also counted: plain-text bodies of finished mails (written by a version before bodies were sealed, e.g. during a rolling upgrade), emptied. */
export const PLAIN_MAIL_BODIES = 'mail_outbox_plain_bodies';
export type RetentionTable = (typeof RETENTION_TABLES)[number];
/** One step of a sweep, by what it counts: the plain bodies it empties, then the rows of each table it deletes. */
export type RetentionStep = typeof PLAIN_MAIL_BODIES | RetentionTable | typeof MAIL_BUDGET | typeof AUDIT_EVENTS;
export type PurgeReport = Record<typeof PLAIN_MAIL_BODIES | RetentionTable | typeof MAIL_BUDGET, number> & {
  cutoff: string;
  stopped: boolean;
  /** Only with AUDIT_RETENTION_DAYS set. */
  audit_events?: number;
  auditCutoff?: string;
};

const BATCH_SIZE = 1000;
const SESSION_ENDED = `LEAST(COALESCE(s.revoked_at, 'infinity'::timestamptz), s.expires_at, s.idle_expires_at) < $1`;

/** The ids of one batch ($1 the cutoff, $2 the first id created at the cutoff), locked; in deletion order. */
const BATCH: Record<RetentionTable, string> = {
  refresh_tokens: `SELECT r.id FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id
    WHERE s.id < $2::uuid AND ${SESSION_ENDED} LIMIT ${BATCH_SIZE} FOR UPDATE OF r SKIP LOCKED`,
  sessions: `SELECT s.id FROM sessions s WHERE s.id < $2::uuid AND ${SESSION_ENDED} ORDER BY s.id LIMIT ${BATCH_SIZE} FOR UPDATE SKIP LOCKED`,
  flow_tokens: `SELECT id FROM flow_tokens WHERE id < $2::uuid AND expires_at < $1 ORDER BY id LIMIT ${BATCH_SIZE} FOR UPDATE SKIP LOCKED`,
  mail_outbox: `SELECT id FROM mail_outbox WHERE id < $2::uuid AND COALESCE(sent_at, failed_at) < $1 ORDER BY id LIMIT ${BATCH_SIZE} FOR UPDATE SKIP LOCKED`,
};

/** The smallest UUIDv7 of the cutoff's millisecond: every id created before it sorts below. */
export function firstIdAt(time: Date): string {
  const hex = time.getTime().toString(16).padStart(12, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-7000-8000-000000000000`;
}

/** Each step's statement, run in batches until one changes fewer than BATCH_SIZE rows ($1, $2 as in BATCH). */
const STEPS: [RetentionStep, string][] = [
  // A mail that is done keeps no body (mail.worker.ts); one an older version marked done kept its plain text.
  [
    PLAIN_MAIL_BODIES,
    `UPDATE mail_outbox SET text_body = NULL, html_body = NULL WHERE id IN (SELECT id FROM mail_outbox
      WHERE (text_body IS NOT NULL OR html_body IS NOT NULL) AND (sent_at IS NOT NULL OR failed_at IS NOT NULL)
      ORDER BY id LIMIT ${BATCH_SIZE} FOR UPDATE SKIP LOCKED)`,
  ],
  ...RETENTION_TABLES.map((table): [RetentionStep, string] => [table, `DELETE FROM ${table} WHERE id IN (${BATCH[table]})`]),
];

type PurgeOptions = { shouldStop?: () => boolean; onBatch?: (step: RetentionStep, rows: number) => void };

const daysBefore = (now: Date, days: number) => new Date(now.getTime() - days * 24 * 3600 * 1000);

export async function purgeEnded(
  ctx: { db: Db; clock: AppContext['clock']; config: Pick<AppContext['config'], 'retentionDays' | 'auditRetentionDays'> },
  options: PurgeOptions = {},
): Promise<PurgeReport> {
  const cutoff = daysBefore(ctx.clock.now(), ctx.config.retentionDays);
  const report = { cutoff: cutoff.toISOString(), stopped: false } as PurgeReport;
  for (const [step, statement] of STEPS) {
    const params = step === PLAIN_MAIL_BODIES ? [] : [cutoff, firstIdAt(cutoff)];
    if (!(await inBatches(step, () => ctx.db.$executeRawUnsafe(statement, ...params), report, options))) return { ...report, stopped: true };
  }
  // The budget looks back one hour (mail-budget.ts); older rows name an address for nothing.
  const budgetCutoff = new Date(ctx.clock.now().getTime() - MAIL_BUDGET_WINDOW_SECONDS * 1000);
  const budgetBatch = `DELETE FROM mail_budget WHERE id IN (SELECT id FROM mail_budget WHERE id < $2::uuid AND created_at < $1
    ORDER BY id LIMIT ${BATCH_SIZE} FOR UPDATE SKIP LOCKED)`;
  const purgeBudget = () => ctx.db.$executeRawUnsafe(budgetBatch, budgetCutoff, firstIdAt(budgetCutoff));
  if (!(await inBatches(MAIL_BUDGET, purgeBudget, report, options))) return { ...report, stopped: true };
  if (ctx.config.auditRetentionDays === null) return report;
  const auditCutoff = daysBefore(ctx.clock.now(), ctx.config.auditRetentionDays);
  report.auditCutoff = auditCutoff.toISOString();
  if (!(await inBatches(AUDIT_EVENTS, () => purgeAuditBatch(ctx.db, auditCutoff), report, options))) return { ...report, stopped: true };
  report[AUDIT_EVENTS] = (report[AUDIT_EVENTS] ?? 0) + (await purgeUnorderedAudit(ctx.db, auditCutoff));
  return report;
}

/**
 * Runs `batch` until one changes fewer than BATCH_SIZE rows, counting them in report[step] and
 * telling onBatch of each; false when shouldStop said so before a batch.
 */
async function inBatches(step: RetentionStep, batch: () => Promise<number>, report: PurgeReport, options: PurgeOptions): Promise<boolean> {
  report[step] = 0;
  for (;;) {
    if (options.shouldStop?.()) return false;
    const rows = await batch();
    report[step] += rows;
    options.onBatch?.(step, rows);
    if (rows < BATCH_SIZE) return true;
  }
}

/**
 * Names `cutoff` to the append-only trigger for the rest of the transaction. The trigger checks it
 * against the database's clock (at least a day old); an instance whose clock runs ahead of the
 * database's would name one a moment too young, and every batch would be refused
 * (AUDIT_RETENTION_DAYS=1): the cutoff is clamped there, and the DELETEs use the clamped one.
 */
const nameAuditCutoff = (db: Db, cutoff: Date) =>
  db.$queryRawUnsafe(`SELECT set_config('webshop_auth.audit_cutoff', LEAST($1::timestamptz, now() - interval '1 day')::text, true)`, cutoff.toISOString());

/** One batch of audit rows written before `cutoff`, in a transaction that names the cutoff (nameAuditCutoff). */
async function purgeAuditBatch(db: Db, cutoff: Date): Promise<number> {
  const [, rows] = await db.$transaction([
    nameAuditCutoff(db, cutoff),
    db.$executeRawUnsafe(
      `DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events
        WHERE id < $1::uuid AND created_at < current_setting('webshop_auth.audit_cutoff')::timestamptz
        ORDER BY id LIMIT ${BATCH_SIZE} FOR UPDATE SKIP LOCKED)`,
      firstIdAt(cutoff),
    ),
  ]);
  return rows;
}

/**
 * The audit rows whose ids are not time-ordered (audit_events_unordered_ids: a migration wrote
 * them with random ids), which purgeAuditBatch's id range cannot reach: deleted by that list, which
 * forgets them with them. A handful of rows: one statement.
 */
async function purgeUnorderedAudit(db: Db, cutoff: Date): Promise<number> {
  const due = `created_at < current_setting('webshop_auth.audit_cutoff')::timestamptz`;
  const [, rows] = await db.$transaction([
    nameAuditCutoff(db, cutoff),
    db.$executeRawUnsafe(`DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events_unordered_ids WHERE ${due}) AND ${due}`),
    db.$executeRawUnsafe(`DELETE FROM audit_events_unordered_ids WHERE ${due}`),
  ]);
  return rows;
}
