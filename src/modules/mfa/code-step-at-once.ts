import type { AppContext } from '../../context.js';
import { onOneConnection, type Sql } from '../../db/sql.js';
import { SqlParams } from '../../db/sql-params.js';
import { checkTotp } from '../../lib/totp.js';
import { sha256Hex } from '../../lib/tokens.js';
import { announceAudit, auditInsertSql, type RequestMeta } from '../audit/audit.service.js';
import type { FlowToken } from '../../generated/prisma/client.js';
import { MAX_CHALLENGE_ATTEMPTS } from '../login/challenge.js';
import { sessionStartSql, sessionTokens, type UserForTokens } from '../sessions/sessions.service.js';
import type { TokenResponse } from '../sessions/sessions.schemas.js';
import { amrAfter, deadReason, nextOf } from './challenge-guard.js';
import { openTotpSecret } from './totp-secret.js';

/**
 * The usual code step — a live challenge, an active account whose code entry is not locked, and a
 * valid, unused TOTP code — in two statements instead of the general path's ~20 Prisma queries
 * (login-mfa.service.ts completeMfaLogin; bench/README.md):
 *
 *  1. a plain read of the challenge with its user and the user's ACTIVE factor; the checks and the
 *     code are evaluated in process;
 *  2. ONE statement that first locks, in the lock order (accounts/user-lock.ts), the user row, the
 *     challenge row and the factor row, each only if it still is exactly as the checks found it
 *     (a row changed meanwhile is re-read and re-checked under its lock: READ COMMITTED re-checks
 *     the WHERE of a locking read on the newest row version), and only when all three qualify
 *     writes everything: the challenge consumed (counting the attempt, as reserveAttempt does), the
 *     code's time step stored (replay protection), the code failure count reset, the login time,
 *     the session with its refresh token, and the audit rows. It returns the user row as locked,
 *     and the tokens are built from that row: a change committed between the two statements (a
 *     demotion, which ends the user's sessions first) is in the token of the session started after it.
 *
 * The signing key is taken before statement 2 (in memory): without one the step answers 503 having
 * written nothing, so the same challenge and code work once a key is loaded.
 *
 * Anything else — no such challenge, wrong or replayed code, a lock, a block, an expired or spent
 * challenge, a row that changed between the two statements — writes nothing and returns null: the
 * general path then does the whole attempt again and answers it (counting and auditing a failure).
 * The conditions here are the general path's own, so whatever this path accepts, it would too.
 */

type Found = Pick<FlowToken, 'state' | 'attempts' | 'expiresAt' | 'data'> & {
  flow_id: string;
  user_id: string;
  status: string;
  mfa_locked_until: Date | null;
  organization_id: string | null;
  factor_id: string | null;
  secret_ciphertext: string | null;
  encryption_key_id: string | null;
  last_used_step: number | null;
  hinted_steps: number[] | null;
};

export async function completeCodeStepAtOnce(
  ctx: AppContext,
  body: { challengeToken: string; code: string },
  meta: RequestMeta,
): Promise<TokenResponse | null> {
  // Both statements on one connection, so none waits for a free one after the clock was read.
  return onOneConnection(ctx.pool, (sql) => codeStep(sql, ctx, body, meta));
}

async function codeStep(
  sql: Sql,
  ctx: AppContext,
  body: { challengeToken: string; code: string },
  meta: RequestMeta,
): Promise<TokenResponse | null> {
  const [found] = await sql<Found>(
    `SELECT f.id AS flow_id, f.user_id, f.state::text AS state, f.attempts, f.expires_at AS "expiresAt", f.data,
            u.status::text AS status, u.mfa_locked_until, u.organization_id,
            t.id AS factor_id, t.secret_ciphertext, t.encryption_key_id, t.last_used_step, t.hinted_steps
       FROM flow_tokens f
       JOIN users u ON u.id = f.user_id
       LEFT JOIN totp_factors t ON t.user_id = f.user_id AND t.status = 'ACTIVE'
      WHERE f.token_hash = $1 AND f.purpose = 'LOGIN_CHALLENGE'`,
    [sha256Hex(body.challengeToken)],
  );
  const now = ctx.clock.now();
  if (
    !found ||
    found.status !== 'ACTIVE' ||
    (found.mfa_locked_until && found.mfa_locked_until > now) ||
    deadReason(found, now) !== null ||
    nextOf(found) !== 'mfa' ||
    !found.factor_id ||
    !found.secret_ciphertext ||
    !found.encryption_key_id
  ) {
    return null;
  }
  const secret = openTotpSecret(ctx.keyring, found.user_id, { secretCiphertext: found.secret_ciphertext, encryptionKeyId: found.encryption_key_id });
  const check = checkTotp({ secret, code: body.code, nowMs: now.getTime(), lastUsedStep: found.last_used_step, refusedSteps: found.hinted_steps ?? [] });
  if (check.result !== 'valid') return null;

  const key = ctx.signer.signingKey();
  const amr = amrAfter(found, 'otp');
  const p = new SqlParams();
  const at = p.add(now, 'timestamptz');
  const userId = p.add(found.user_id, 'uuid');
  const flowId = p.add(found.flow_id, 'uuid');
  const factorId = p.add(found.factor_id, 'uuid');
  const step = p.add(check.step, 'int');
  const mfaAudit = auditInsertSql(
    p,
    ctx.clock,
    { type: 'login.mfa_succeeded', actorUserId: found.user_id, subjectUserId: found.user_id, organizationId: found.organization_id, meta, details: { factor: 'totp', amr } },
    { from: 'signed_in' },
  );
  const starting = sessionStartSql(p, ctx, { userId: found.user_id, organizationId: found.organization_id, amr, meta }, 'signed_in');
  // Each locking read runs only once the one before it found its row (the EXISTS), so the locks
  // are taken user → challenge → factor; the writes all hang on `qualified`, decided before any of them.
  const [user] = await sql<UserForTokens>(
    `WITH locked_user AS (
      SELECT id FROM users
      WHERE id = ${userId} AND status = 'ACTIVE' AND (mfa_locked_until IS NULL OR mfa_locked_until <= ${at})
      FOR UPDATE),
    locked_challenge AS (
      SELECT id FROM flow_tokens
      WHERE id = ${flowId} AND user_id = ${userId} AND purpose = 'LOGIN_CHALLENGE' AND state = 'PENDING'
        AND expires_at > ${at} AND attempts < ${p.add(MAX_CHALLENGE_ATTEMPTS, 'int')} AND data->>'next' = 'mfa'
        AND EXISTS (SELECT 1 FROM locked_user)
      FOR UPDATE),
    locked_factor AS (
      SELECT id FROM totp_factors
      WHERE id = ${factorId} AND user_id = ${userId} AND status = 'ACTIVE' AND (last_used_step IS NULL OR last_used_step < ${step})
        AND NOT (${step} = ANY (hinted_steps))
        AND EXISTS (SELECT 1 FROM locked_challenge)
      FOR UPDATE),
    qualified AS (SELECT 1 FROM locked_factor),
    consumed AS (
      UPDATE flow_tokens SET state = 'CONSUMED', consumed_at = ${at}, attempts = attempts + 1
      WHERE id = ${flowId} AND EXISTS (SELECT 1 FROM qualified)),
    used_step AS (
      UPDATE totp_factors SET last_used_step = ${step}
      WHERE id = ${factorId} AND EXISTS (SELECT 1 FROM qualified)),
    signed_in AS (
      UPDATE users SET failed_mfa_count = 0, mfa_locked_until = NULL, last_login_at = ${at}
      WHERE id = ${userId} AND EXISTS (SELECT 1 FROM qualified)
      RETURNING id, email, name, organization_id AS "organizationId", roles::text[] AS roles,
        terms_version AS "termsVersion", preferences_updated_at AS "preferencesUpdatedAt"),
    mfa_audit AS (${mfaAudit}),
    ${starting.ctes}
    SELECT signed_in.* FROM signed_in, session`,
    p.values,
  );
  if (!user) return null;
  announceAudit('login.mfa_succeeded');
  announceAudit('session.created');
  return sessionTokens(ctx, user, starting.session, starting.refreshToken, true, key);
}
