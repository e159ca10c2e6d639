import type { AppContext } from '../../context.js';
import { isRolledBack, rollback, withTransaction } from '../../db/sql.js';
import { SqlParams } from '../../db/sql-params.js';
import type { Role } from '../../generated/prisma/enums.js';
import { checkTotp } from '../../lib/totp.js';
import { sha256Hex } from '../../lib/tokens.js';
import { announceAudit, auditInsertSql, type RequestMeta } from '../audit/audit.service.js';
import { MAX_CHALLENGE_ATTEMPTS, type ChallengeData } from '../login/challenge.js';
import { sessionStartSql, sessionTokens } from '../sessions/sessions.service.js';
import type { TokenResponse } from '../sessions/sessions.schemas.js';
import { openTotpSecret } from './totp-secret.js';

/**
 * The usual code step — a live challenge, an active account whose code entry is not locked, and a
 * valid, unused TOTP code — in one short transaction of three statements instead of the general
 * path's ~20 Prisma queries (login-mfa.service.ts completeMfaLogin; bench/README.md):
 *
 *  1. the user row, locked FOR UPDATE first (lock order, accounts/user-lock.ts), found through the
 *     challenge's token hash;
 *  2. the challenge row, locked NOWAIT, with the user's ACTIVE factor;
 *  3. after the checks and the code (in process, under both locks): ONE statement that consumes the
 *     challenge (counting the attempt, as reserveAttempt does), stores the code's time step
 *     (conditional: replay protection), resets the code failure count, records the login, and
 *     writes the session, its refresh token and the audit rows.
 *
 * Anything else — no such challenge, wrong or replayed code, a lock, a block, an expired, spent or
 * busy challenge — rolls back having written nothing and returns null: the general path then does
 * the whole attempt again and answers it (counting and auditing a failure). The checks here are
 * the general path's own conditions, so whatever this path accepts, the general path would too.
 */

type LockedUser = {
  id: string;
  status: string;
  mfa_locked_until: Date | null;
  organization_id: string | null;
  email: string;
  name: string;
  roles: Role[];
  terms_version: string | null;
  preferences_updated_at: Date | null;
};

type LockedChallenge = {
  id: string;
  state: string;
  attempts: number;
  expires_at: Date;
  data: Partial<ChallengeData> | null;
  factor_id: string | null;
  secret_ciphertext: string | null;
  encryption_key_id: string | null;
  last_used_step: number | null;
};

const LOCK_NOT_AVAILABLE = '55P03';

export async function completeCodeStepAtOnce(
  ctx: AppContext,
  body: { challengeToken: string; code: string },
  meta: RequestMeta,
): Promise<TokenResponse | null> {
  const tokenHash = sha256Hex(body.challengeToken);
  try {
    const result = await withTransaction(ctx.pool, async (sql) => {
      const [user] = await sql<LockedUser>(
        `SELECT id, status::text AS status, mfa_locked_until, organization_id, email, name, roles::text[] AS roles,
                terms_version, preferences_updated_at
           FROM users
          WHERE id = (SELECT user_id FROM flow_tokens WHERE token_hash = $1 AND purpose = 'LOGIN_CHALLENGE')
          FOR UPDATE`,
        [tokenHash],
      );
      const now = ctx.clock.now();
      if (!user || user.status !== 'ACTIVE' || (user.mfa_locked_until && user.mfa_locked_until > now)) return rollback();
      const [flow] = await sql<LockedChallenge>(
        `SELECT f.id, f.state::text AS state, f.attempts, f.expires_at, f.data,
                t.id AS factor_id, t.secret_ciphertext, t.encryption_key_id, t.last_used_step
           FROM flow_tokens f
           LEFT JOIN totp_factors t ON t.user_id = f.user_id AND t.status = 'ACTIVE'
          WHERE f.token_hash = $1 AND f.purpose = 'LOGIN_CHALLENGE' AND f.user_id = $2::uuid
          FOR UPDATE OF f NOWAIT`,
        [tokenHash, user.id],
      );
      if (
        !flow ||
        flow.state !== 'PENDING' ||
        flow.attempts >= MAX_CHALLENGE_ATTEMPTS ||
        flow.expires_at <= now ||
        flow.data?.next !== 'mfa' ||
        !flow.factor_id ||
        !flow.secret_ciphertext ||
        !flow.encryption_key_id
      ) {
        return rollback();
      }
      const secret = openTotpSecret(ctx.keyring, user.id, { secretCiphertext: flow.secret_ciphertext, encryptionKeyId: flow.encryption_key_id });
      const check = checkTotp({ secret, code: body.code, nowMs: now.getTime(), lastUsedStep: flow.last_used_step });
      if (check.result !== 'valid') return rollback();

      const passed = Array.isArray(flow.data.amr) && flow.data.amr.every((m) => typeof m === 'string') ? flow.data.amr : ['pwd'];
      const amr = [...new Set([...passed, 'otp'])];
      const p = new SqlParams();
      const at = p.add(now, 'timestamptz');
      const userId = p.add(user.id, 'uuid');
      const mfaAudit = auditInsertSql(
        p,
        ctx.clock,
        {
          type: 'login.mfa_succeeded',
          actorUserId: user.id,
          subjectUserId: user.id,
          organizationId: user.organization_id,
          meta,
          details: { factor: 'totp', amr },
        },
        { from: 'signed_in' },
      );
      const starting = sessionStartSql(p, ctx, { userId: user.id, organizationId: user.organization_id, amr, meta }, 'signed_in');
      const step = p.add(check.step, 'int');
      const written = await sql<{ id: string }>(
        `WITH consumed AS (
          UPDATE flow_tokens SET state = 'CONSUMED', consumed_at = ${at}, attempts = attempts + 1
          WHERE id = ${p.add(flow.id, 'uuid')} AND state = 'PENDING' RETURNING id),
        factor AS (
          UPDATE totp_factors SET last_used_step = ${step}
          WHERE id = ${p.add(flow.factor_id, 'uuid')} AND status = 'ACTIVE' AND (last_used_step IS NULL OR last_used_step < ${step})
            AND EXISTS (SELECT 1 FROM consumed)
          RETURNING id),
        signed_in AS (
          UPDATE users SET failed_mfa_count = 0, mfa_locked_until = NULL, last_login_at = ${at}
          WHERE id = ${userId} AND EXISTS (SELECT 1 FROM factor) RETURNING id),
        mfa_audit AS (${mfaAudit}),
        ${starting.ctes}
        SELECT id FROM session`,
        p.values,
      );
      // Not written (the factor changed under us, which only a writer ignoring the lock order could do): start over.
      if (written.length !== 1) return rollback();
      return { user, starting };
    });
    if (isRolledBack(result)) return null;
    announceAudit('login.mfa_succeeded');
    announceAudit('session.created');
    const { user, starting } = result;
    return sessionTokens(
      ctx,
      {
        id: user.id,
        email: user.email,
        name: user.name,
        organizationId: user.organization_id,
        roles: user.roles,
        termsVersion: user.terms_version,
        preferencesUpdatedAt: user.preferences_updated_at,
      },
      starting.session,
      starting.refreshToken,
      true,
    );
  } catch (err) {
    // Another request holds the challenge: the general path answers challenge_in_use (or its outcome).
    if ((err as { code?: unknown } | null)?.code === LOCK_NOT_AVAILABLE) return null;
    throw err;
  }
}
