import type { AppContext } from '../../context.js';
import type { Db } from '../../db/client.js';

/**
 * Retention: what has ended is deleted RETENTION_DAYS (default 30) after it ended, so the tables
 * that grow with every login stay bounded (as Kratos' `cleanup` and Keycloak's expiry sweeps do):
 *
 *  - sessions that ended (revoked, or past their absolute or idle expiry), with their refresh
 *    tokens (ON DELETE CASCADE). A live session keeps every rotated token: reuse detection needs them;
 *  - e-mail links and login challenges whose expiry passed (whether used, voided or never used);
 *  - mail that was sent or given up (the outbox keeps unsent mail however old).
 *
 * Audit events are never deleted here: how long they are kept is the operator's decision (docs/operations.md).
 * Rows go in batches of BATCH_SIZE, each its own short statement, so no long lock is held; two
 * instances sweeping at once only delete the same rows once.
 */

export const RETENTION_TABLES = ['sessions', 'flow_tokens', 'mail_outbox'] as const;
export type RetentionTable = (typeof RETENTION_TABLES)[number];
export type PurgeReport = Record<RetentionTable, number> & { cutoff: string };

const BATCH_SIZE = 1000;

/** When each table's row ended (SQL over the row). */
const ENDED_AT: Record<RetentionTable, string> = {
  sessions: `LEAST(COALESCE(revoked_at, 'infinity'::timestamptz), expires_at, idle_expires_at)`,
  flow_tokens: 'expires_at',
  mail_outbox: 'COALESCE(sent_at, failed_at)',
};

export async function purgeEnded(ctx: { db: Db; clock: AppContext['clock']; config: Pick<AppContext['config'], 'retentionDays'> }): Promise<PurgeReport> {
  const cutoff = new Date(ctx.clock.now().getTime() - ctx.config.retentionDays * 24 * 3600 * 1000);
  const report = { cutoff: cutoff.toISOString() } as PurgeReport;
  for (const table of RETENTION_TABLES) {
    report[table] = 0;
    for (;;) {
      const deleted = await ctx.db.$executeRawUnsafe(
        `DELETE FROM ${table} WHERE id IN (SELECT id FROM ${table} WHERE ${ENDED_AT[table]} < $1 LIMIT ${BATCH_SIZE})`,
        cutoff,
      );
      report[table] += deleted;
      if (deleted < BATCH_SIZE) break;
    }
  }
  return report;
}
