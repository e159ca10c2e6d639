import type { AppContext } from '../../context.js';
import { newId, onOneConnection } from '../../db/sql.js';
import { SqlParams } from '../../db/sql-params.js';
import { addSeconds } from '../../lib/clock.js';
import { randomToken, sha256Hex } from '../../lib/tokens.js';
import type { Role } from '../../generated/prisma/enums.js';
import type { RequestMeta } from '../audit/audit.service.js';
import type { TokenResponse } from './sessions.schemas.js';
import { REFRESH_TOKEN_BYTES, sessionTokens } from './sessions.service.js';

/**
 * The usual refresh — a live token of a live session of an active user — in ONE statement instead
 * of the general path's Prisma transaction of ~8 queries (refreshSession; bench/README.md), built
 * like the code step's (mfa/code-step-at-once.ts): locking reads first, writes only once all qualify.
 *
 *  - `locked_token` locks the presented token if it is not rotated. A concurrent refresh with the
 *    same token holds it; once that one commits, the row is re-read and no longer qualifies
 *    (READ COMMITTED re-checks the WHERE of a locking read on the newest row version): of two,
 *    exactly one rotates.
 *  - `locked_session` then locks its session if, in its newest version, it is not revoked, neither
 *    idle- nor absolutely expired nor refreshed REFRESH_MAX_PER_SESSION times, and its user is
 *    active. A logout, block, password reset, MFA reset or demotion that revoked the session
 *    meanwhile wins here.
 *  - Only when both qualified: the token is marked rotated, the session's idle expiry moves (never
 *    past its absolute one), its refreshes are counted, it records the caller, and the next token
 *    is inserted. The user row, as the statement sees it, gives the access token's claims.
 *
 * The locks are the general path's, in its order: the refresh token row, then the session row.
 * Anything else — no such token, a rotated one (reuse or a concurrent refresh), an expired, ended or
 * blocked one — returns null having written nothing, and the general path answers it (revoking the
 * family on reuse, auditing).
 *
 * The signing key is taken before the statement (in memory): without one the refresh answers 503
 * having written nothing, so the same token works once a key is loaded. The clock is read once a
 * connection is held, so expiries are compared with the time the statement runs.
 */
type Row = {
  id: string;
  amr: string[];
  idle_expires_at: Date;
  expires_at: Date;
  user_id: string;
  email: string;
  name: string;
  organization_id: string | null;
  roles: Role[];
  terms_version: string | null;
  preferences_updated_at: Date | null;
  mfa_enrolled: boolean;
};

export async function refreshAtOnce(ctx: AppContext, refreshToken: string, meta: RequestMeta): Promise<TokenResponse | null> {
  const key = ctx.signer.signingKey();
  const next = randomToken(REFRESH_TOKEN_BYTES);
  const row = await onOneConnection(ctx.pool, async (sql) => {
    const now = ctx.clock.now();
    const p = new SqlParams();
    const at = p.add(now, 'timestamptz');
    const [found] = await sql<Row>(
      `WITH locked_token AS (
        SELECT id, session_id FROM refresh_tokens
         WHERE token_hash = ${p.add(sha256Hex(refreshToken), 'text')} AND rotated_at IS NULL
        FOR UPDATE),
      locked_session AS (
        SELECT s.id FROM sessions s
         WHERE s.id = (SELECT session_id FROM locked_token) AND s.revoked_at IS NULL AND s.expires_at > ${at} AND s.idle_expires_at > ${at}
           AND s.refresh_count < ${p.add(ctx.config.refresh.maxPerSession, 'int')}
           AND EXISTS (SELECT 1 FROM users u WHERE u.id = s.user_id AND u.status = 'ACTIVE')
        FOR UPDATE),
      rotated AS (
        UPDATE refresh_tokens SET rotated_at = ${at}
         WHERE id = (SELECT id FROM locked_token) AND EXISTS (SELECT 1 FROM locked_session)),
      touched AS (
        UPDATE sessions s
           SET last_used_at = ${at}, refresh_count = s.refresh_count + 1, idle_expires_at = LEAST(${p.add(addSeconds(now, ctx.config.refresh.idleTtlSeconds), 'timestamptz')}, s.expires_at),
               ip = ${p.add(meta.ip, 'text')}, user_agent = ${p.add(meta.userAgent, 'text')}
         WHERE s.id = (SELECT id FROM locked_session)
        RETURNING s.id, s.user_id, s.amr, s.idle_expires_at, s.expires_at),
      next_token AS (
        INSERT INTO refresh_tokens (id, session_id, token_hash, created_at)
        SELECT ${p.add(newId(), 'uuid')}, touched.id, ${p.add(sha256Hex(next), 'text')}, ${at} FROM touched)
      SELECT touched.id, touched.amr, touched.idle_expires_at, touched.expires_at, u.id AS user_id, u.email, u.name,
             u.organization_id, u.roles::text[] AS roles, u.terms_version, u.preferences_updated_at,
             EXISTS (SELECT 1 FROM totp_factors f WHERE f.user_id = u.id AND f.status = 'ACTIVE') AS mfa_enrolled
        FROM touched JOIN users u ON u.id = touched.user_id`,
      p.values,
    );
    return found;
  });
  if (!row) return null;
  return sessionTokens(
    ctx,
    {
      id: row.user_id,
      email: row.email,
      name: row.name,
      organizationId: row.organization_id,
      roles: row.roles,
      termsVersion: row.terms_version,
      preferencesUpdatedAt: row.preferences_updated_at,
    },
    { id: row.id, amr: row.amr, idleExpiresAt: row.idle_expires_at, expiresAt: row.expires_at },
    next,
    row.mfa_enrolled,
    key,
  );
}
