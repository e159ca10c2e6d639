import type { AppContext } from '../../context.js';
import type { Db } from '../../db/client.js';

/**
 * Retention: what has ended is deleted RETENTION_DAYS (default 30) after it ended, so the tables
 * that grow with every login stay bounded (as Kratos' `cleanup` and Keycloak's expiry sweeps do):
 *
 *  - refresh tokens of sessions that ended, then those sessions (revoked, or past their absolute
 *    or idle expiry). A live session keeps every rotated token: reuse detection needs them;
 *  - e-mail links and login challenges whose expiry passed (whether used, voided or never used);
 *  - mail that was sent or given up (the outbox keeps unsent mail however old).
 *
 * Audit events are never deleted here: how long they are kept is the operator's decision (docs/operations.md).
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
/** Also counted: plain-text bodies of finished mails (written by a version before bodies were sealed, e.g. during a rolling upgrade), emptied. */
export const PLAIN_MAIL_BODIES = 'mail_outbox_plain_bodies';
export type RetentionTable = (typeof RETENTION_TABLES)[number];
/** One step of a sweep, by what it counts: the plain bodies it empties, then the rows of each table it deletes. */
export type RetentionStep = typeof PLAIN_MAIL_BODIES | RetentionTable;
export type PurgeReport = Record<RetentionStep, number> & { cutoff: string; stopped: boolean };

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

export async function purgeEnded(
  ctx: { db: Db; clock: AppContext['clock']; config: Pick<AppContext['config'], 'retentionDays'> },
  options: { shouldStop?: () => boolean; onBatch?: (step: RetentionStep, rows: number) => void } = {},
): Promise<PurgeReport> {
  const cutoff = new Date(ctx.clock.now().getTime() - ctx.config.retentionDays * 24 * 3600 * 1000);
  const report = { cutoff: cutoff.toISOString(), stopped: false } as PurgeReport;
  for (const [step, statement] of STEPS) {
    report[step] = 0;
    const params = step === PLAIN_MAIL_BODIES ? [] : [cutoff, firstIdAt(cutoff)];
    for (;;) {
      if (options.shouldStop?.()) return { ...report, stopped: true };
      const rows = await ctx.db.$executeRawUnsafe(statement, ...params);
      report[step] += rows;
      options.onBatch?.(step, rows);
      if (rows < BATCH_SIZE) break;
    }
  }
  return report;
}
