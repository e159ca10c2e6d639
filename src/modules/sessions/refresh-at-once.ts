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
 * of the general path's Prisma transaction of ~8 queries (refreshSession; bench/README.md):
 *
 *  - `rotated` marks the presented token rotated only if it is not rotated yet and its session and
 *    user qualify as this statement's snapshot sees them. It is an UPDATE, so a concurrent refresh
 *    with the same token is re-checked on the newest row version: of two, exactly one rotates.
 *  - `touched` moves the session's idle expiry (never past its absolute one) and records the caller,
 *    only for the session just rotated and only if that session is, in its newest version, still
 *    not revoked and not expired. A logout, block, password reset or MFA reset that committed its
 *    revocation meanwhile wins here (the UPDATE waits for and re-checks its row), as in the general path.
 *  - `next_token` is the new refresh token of a touched session; the user row, as the statement
 *    sees it, gives the claims of the access token.
 *
 * The locks are the general path's, in its order: the refresh token row, then the session row.
 * Anything else — no such token, a rotated one (reuse or a concurrent refresh), an expired, ended or
 * blocked one — returns null having written nothing, and the general path answers it (revoking the
 * family on reuse, auditing). The one write that can stay behind a null is the rotation of a token
 * whose session a revocation ended in between: that token was dead anyway, and the general path,
 * which checks the session first, answers it as such (refresh_token_invalid).
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
      `WITH rotated AS (
        UPDATE refresh_tokens r SET rotated_at = ${at}
         WHERE r.token_hash = ${p.add(sha256Hex(refreshToken), 'text')} AND r.rotated_at IS NULL
           AND EXISTS (
             SELECT 1 FROM sessions s JOIN users u ON u.id = s.user_id
              WHERE s.id = r.session_id AND s.revoked_at IS NULL AND s.expires_at > ${at} AND s.idle_expires_at > ${at}
                AND u.status = 'ACTIVE')
        RETURNING r.session_id),
      touched AS (
        UPDATE sessions s
           SET last_used_at = ${at}, idle_expires_at = LEAST(${p.add(addSeconds(now, ctx.config.refresh.idleTtlSeconds), 'timestamptz')}, s.expires_at),
               ip = ${p.add(meta.ip, 'text')}, user_agent = ${p.add(meta.userAgent, 'text')}
         WHERE s.id = (SELECT session_id FROM rotated) AND s.revoked_at IS NULL AND s.expires_at > ${at}
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
