import type { Tx } from '../../db/client.js';
import { prismaSql } from '../../db/sql.js';
import type { Clock } from '../../lib/clock.js';

/**
 * Ends the user's sessions at once: their refresh tokens stop working and introspection reports
 * them inactive, because both check the session row. Used by blocking, sign-out, demotion, password
 * reset and change, and MFA resets.
 *
 * Every session not ended yet is marked, expired ones too: instances judge expiry by their own
 * clocks, and one a little behind this one would still refresh a session this one thinks has just
 * gone idle — and so revive it. Returns how many were live (the number audited as ended).
 */
export async function revokeUserSessions(
  tx: Tx,
  clock: Clock,
  userId: string,
  reason: string,
  options: { exceptSessionId?: string } = {},
): Promise<number> {
  return (await revokeSessionsOf(tx, clock, [userId], reason, options)).length;
}

/**
 * revokeUserSessions for several users in one statement; returns the sessions that were live (the
 * ones audited as ended), by user and session id.
 */
export async function revokeSessionsOf(
  tx: Tx,
  clock: Clock,
  userIds: readonly string[],
  reason: string,
  options: { exceptSessionId?: string } = {},
): Promise<{ userId: string; sessionId: string }[]> {
  const rows = await prismaSql(tx)<{ user_id: string; id: string; live: boolean }>(
    `UPDATE sessions SET revoked_at = $1::timestamptz, revoked_reason = $2
      WHERE user_id = ANY($3::uuid[]) AND revoked_at IS NULL AND ($4::uuid IS NULL OR id <> $4::uuid)
      RETURNING user_id::text, id::text, (expires_at > $1::timestamptz AND idle_expires_at > $1::timestamptz) AS live`,
    [clock.now(), reason, userIds, options.exceptSessionId ?? null],
  );
  return rows.filter((row) => row.live).map((row) => ({ userId: row.user_id, sessionId: row.id }));
}
