import type { AppContext } from '../../context.js';
import { newId, poolSql } from '../../db/sql.js';
import { SqlParams } from '../../db/sql-params.js';
import { LOCKOUT_THRESHOLD, lockoutSeconds } from '../../lib/lockout.js';
import { addSeconds } from '../../lib/clock.js';
import { randomToken, sha256Hex } from '../../lib/tokens.js';
import { announceAudit, auditInsertSql, type RequestMeta } from '../audit/audit.service.js';
import type { ReservedPasswordAttempt } from '../accounts/password-lockout.js';
import { challengeData, type ChallengeNext, type LoginChallenge } from './challenge.js';
import { isUniqueViolation } from '../../db/errors.js';

const ONE_LIVE_CHALLENGE = 'flow_tokens_one_pending_login_challenge';

/** Audit details of a correct password step: a re-hash stored (what became of a lock it set: lockOutcome). */
export const successDetails = (rehash: string | undefined) => (rehash ? { rehashed: true } : {});

/**
 * What a correct password at login resets: the failures counted up to and including its own
 * attempt. Failures counted after its reservation — wrong guesses that came while its hash was
 * checked — stay counted, as they would after the success in a sequence (found by the race review,
 * session 29: they were erased with it). LOCKOUT_THRESHOLD of them (the most there can be: they
 * come during the lock this attempt set, and no more are counted) lock as ten failures after a
 * success do: the first lock, 15 minutes from now (its own lock, on the old lock count, was longer:
 * attacker's read, session 29). A SET list for `UPDATE users`.
 */
export function successResetSql(p: SqlParams, attempt: ReservedPasswordAttempt, now: Date): string {
  const later = `GREATEST(failed_password_count - ${p.add(attempt.consecutiveFailures, 'int')}, 0)`;
  const locks = `${later} >= ${LOCKOUT_THRESHOLD}`;
  return `failed_password_count = ${later},
        password_locked_until = CASE WHEN ${locks} THEN ${p.add(addSeconds(now, lockoutSeconds(0)), 'timestamptz')} END,
        password_lockouts = CASE WHEN ${locks} THEN 1 ELSE 0 END`;
}

/**
 * The condition under which a correct password at login resets (the row as committed now): still
 * ACTIVE, the password unchanged since the reservation, and no lock in force other than (possibly)
 * the one this attempt set itself. A WHERE condition for `UPDATE users`.
 */
export function successAllowedSql(p: SqlParams, attempt: ReservedPasswordAttempt, now: Date): string {
  const ownLock = attempt.newLock
    ? ` OR (password_locked_until = ${p.add(attempt.newLock.until, 'timestamptz')} AND password_lockouts = ${p.add(attempt.newLock.number, 'int')})`
    : '';
  return `status = 'ACTIVE' AND password_changed_at IS NOT DISTINCT FROM ${p.add(attempt.passwordChangedAt, 'timestamptz')}
        AND (password_locked_until IS NULL OR password_locked_until <= ${p.add(now, 'timestamptz')}${ownLock})`;
}

/**
 * For the audit row of a success whose attempt had set the lock: `lockLifted: true` when the reset
 * (RETURNING password_locked_until) lifted it, else `lockedUntil`, the lock the ten failures counted
 * meanwhile left (successResetSql). As SQL over the reset's row, and in TypeScript for the general path.
 */
const lockOutcomeSql = (attempt: ReservedPasswordAttempt, lockedUntil: string) =>
  attempt.newLock
    ? ` || CASE WHEN ${lockedUntil} IS NULL THEN '{"lockLifted": true}'::jsonb
        ELSE jsonb_build_object('lockedUntil', to_char(${lockedUntil} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')) END`
    : '';
export const lockOutcome = (attempt: ReservedPasswordAttempt, lockedUntil: Date | null | undefined) =>
  attempt.newLock ? (lockedUntil ? { lockedUntil: lockedUntil.toISOString() } : { lockLifted: true }) : {};

/**
 * The usual end of a correct password step, in ONE statement (one round trip, one commit):
 *
 *  1. `cleared`: the conditional reset of the user's failure count — the very condition of the
 *     general path in login.service.ts: still ACTIVE, password unchanged since the reservation,
 *     and no lock other than (possibly) the one this attempt set itself. It takes the user row
 *     lock first (lock order, accounts/user-lock.ts) and stores a stronger re-hash if one was made
 *     and nobody changed the password meanwhile;
 *  2. the user's older pending login challenges are voided and then the new one inserted, for the code
 *     prompt when an ACTIVE factor exists, for enrolment otherwise (as issueChallengeAfterPassword);
 *  3. the `login.password_succeeded` audit row.
 *
 * Steps 2 and 3 read the rows step 1 returned: when the condition does not hold, nothing at all is
 * written and null comes back; the general path then takes the same decision on the locked row and
 * answers it (blocked, locked, or the password changed meanwhile).
 *
 * The statement's snapshot is taken before it waits for the user row, so step 2 cannot void a
 * challenge that a concurrent login of the same user committed meanwhile. The unique index on the
 * user's live login challenge (migration 20261128170000) then refuses the insert: nothing is
 * written, null comes back, and the general path replaces that challenge with fresh snapshots.
 */
export async function succeedAtOnce(
  ctx: Pick<AppContext, 'pool' | 'clock' | 'config'>,
  user: { id: string; organizationId: string | null },
  attempt: ReservedPasswordAttempt,
  rehash: string | undefined,
  meta: RequestMeta,
): Promise<LoginChallenge | null> {
  const now = ctx.clock.now();
  const ttl = ctx.config.loginChallengeTtlSeconds;
  const token = randomToken(32);
  const p = new SqlParams();
  const userId = p.add(user.id, 'uuid');
  const at = p.add(now, 'timestamptz');
  const audit = auditInsertSql(
    p,
    ctx.clock,
    {
      type: 'login.password_succeeded',
      actorUserId: user.id,
      subjectUserId: user.id,
      organizationId: user.organizationId,
      meta,
      details: successDetails(rehash),
    },
    { from: 'challenge, cleared', details: `jsonb_build_object('next', challenge.next)${lockOutcomeSql(attempt, 'cleared.password_locked_until')}` },
  );
  const rows = await poolSql(ctx.pool)<{ next: ChallengeNext }>(
    `WITH cleared AS (
      UPDATE users SET ${successResetSql(p, attempt, now)},
        password_hash = CASE WHEN password_hash = ${p.add(attempt.passwordHash, 'text')}
          THEN COALESCE(${p.add(rehash ?? null, 'text')}, password_hash) ELSE password_hash END
      WHERE id = ${userId} AND ${successAllowedSql(p, attempt, now)}
      RETURNING id, password_locked_until),
    enrolled AS (SELECT EXISTS (SELECT 1 FROM totp_factors WHERE user_id = ${userId} AND status = 'ACTIVE') AS yes),
    voided AS (
      UPDATE flow_tokens SET state = 'VOIDED'
      WHERE user_id = (SELECT id FROM cleared) AND purpose = 'LOGIN_CHALLENGE' AND state = 'PENDING'
      RETURNING id),
    -- The insert reads the count of voided rows, so the older challenge is voided BEFORE the new one
    -- is inserted (the order of a WITH's data-modifying parts is otherwise not defined, and an insert
    -- first hit the one-live-challenge index: a failed statement, a dropped connection, the general path).
    challenge AS (
      INSERT INTO flow_tokens (id, user_id, purpose, token_hash, state, expires_at, attempts, data, created_at)
      SELECT ${p.add(newId(), 'uuid')}, cleared.id, 'LOGIN_CHALLENGE', ${p.add(sha256Hex(token), 'text')}, 'PENDING',
        ${p.add(addSeconds(now, ttl), 'timestamptz')}, 0,
        CASE WHEN enrolled.yes THEN ${p.add(JSON.stringify(challengeData('mfa')), 'jsonb')}
          ELSE ${p.add(JSON.stringify(challengeData('mfa_enrollment')), 'jsonb')} END, ${at}
      FROM cleared, enrolled, (SELECT count(*) FROM voided) AS replaced
      RETURNING data->>'next' AS next),
    audit AS (${audit})
    SELECT next FROM challenge`,
    p.values,
  ).catch((err: unknown) => {
    if (isUniqueViolation(err, ONE_LIVE_CHALLENGE)) return [];
    throw err;
  });
  const next = rows[0]?.next;
  if (!next) return null;
  announceAudit('login.password_succeeded');
  return { next, challengeToken: token, expiresIn: ttl };
}
