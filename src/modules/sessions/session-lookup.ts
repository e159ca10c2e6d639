import type pg from 'pg';
import { queryPrepared } from '../../db/sql.js';
import type { Role, UserStatus } from '../../generated/prisma/enums.js';

/**
 * The one query behind every authenticated request and every introspection: the session (not
 * revoked, neither idle- nor absolutely expired) joined with its user (active, not blocked) and
 * whether the user has an ACTIVE TOTP factor. Raw SQL on the pool keeps it to one round trip.
 */
export type LiveSession = {
  sessionId: string;
  userId: string;
  organizationId: string | null;
  roles: Role[];
  status: UserStatus;
  amr: string[];
  mfaEnrolled: boolean;
  expiresAt: Date;
  /** The terms version the user accepted, null for none. */
  termsVersion: string | null;
};

const SQL = `
SELECT s.id AS session_id, s.user_id, s.amr, s.expires_at, u.organization_id, u.roles::text[] AS roles,
       u.status::text AS status, u.terms_version,
       EXISTS (SELECT 1 FROM totp_factors f WHERE f.user_id = u.id AND f.status = 'ACTIVE') AS mfa_enrolled
  FROM sessions s
  JOIN users u ON u.id = s.user_id
 WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL AND s.expires_at > $3 AND s.idle_expires_at > $3
   AND u.status = 'ACTIVE'`;

type Row = {
  session_id: string;
  user_id: string;
  amr: string[] | null;
  expires_at: Date;
  organization_id: string | null;
  roles: Role[];
  status: UserStatus;
  mfa_enrolled: boolean;
  terms_version: string | null;
};

/** The live session `sessionId` of `userId` at `now`, or null (ids must already be valid UUIDs). */
export async function findLiveSession(pool: pg.Pool, sessionId: string, userId: string, now: Date): Promise<LiveSession | null> {
  const { rows } = await queryPrepared<Row>(pool, { name: 'find-live-session', text: SQL, values: [sessionId, userId, now] });
  const row = rows[0];
  if (!row) return null;
  return {
    sessionId: row.session_id,
    userId: row.user_id,
    organizationId: row.organization_id,
    roles: row.roles,
    status: row.status,
    amr: row.amr ?? [],
    mfaEnrolled: row.mfa_enrolled,
    expiresAt: row.expires_at,
    termsVersion: row.terms_version,
  };
}
