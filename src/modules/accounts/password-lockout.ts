import type { AppContext } from '../../context.js';
import type { Sql } from '../../db/sql.js';
import { SqlParams } from '../../db/sql-params.js';
import { isDatabaseUnavailable } from '../../db/errors.js';
import type { AppError } from '../../errors.js';
import { LOCKOUT_THRESHOLD, lockoutSeconds, secondsUntil } from '../../lib/lockout.js';
import { retrying } from '../../lib/retry.js';
import { announceAudit, auditInsertSql, recordAudits, type RequestMeta } from '../audit/audit.service.js';
import { accountErrors } from './accounts.errors.js';

/**
 * Per-account lockout of the password step (security.md item 6), on User.failedPasswordCount /
 * passwordLockedUntil / passwordLockouts:
 *
 * - every wrong password counts; the 10th consecutive one locks password sign-in for 15 min,
 *   doubling with each further lock (capped at 24 h, src/lib/lockout.ts); a password reset or a
 *   change resets all three, a correct password at login the failures counted up to its own
 *   attempt (login-success.ts, successResetSql: those counted while its hash was checked stay);
 * - after a lock has run out the count starts again from zero, so there are never more than 10
 *   failures without a lock (NIST 800-63B 3.2.2 allows 100);
 * - during a lock the password is still checked at login, because the lock (like a block) is only
 *   told to whoever typed the correct one (security.md item 5). So that this cannot become an
 *   unlimited guessing oracle, failures during a lock go on counting, and once another 10 have
 *   piled up the password is no longer checked at all until the lock ends (everyone gets
 *   invalid_credentials). Re-authentication (a signed-in user) checks nothing during a lock;
 * - the lock never blocks the forgotten-password flow, and finishing a reset lifts it.
 *
 * Every attempt is counted BEFORE its hash is checked (reservePasswordAttempt: one conditional
 * UPDATE of the user row, so concurrent attempts are numbered one after the other and each
 * decision "check or not" is taken on the count as it stands, like reserveAttempt for login
 * challenges), then settled after the hash: a wrong password stays counted (recordPasswordFailure
 * only audits it), a correct one resets the count (login) or gives its attempt back
 * (releasePasswordAttempt). A burst of concurrent guesses is therefore limited exactly like a
 * sequence of guesses, and the reserved attempt that reaches the threshold sets the lock itself.
 */

/** Once this many consecutive failures are counted during a lock, passwords are no longer checked at login. */
export const UNCHECKED_DURING_LOCK_AFTER = 2 * LOCKOUT_THRESHOLD;

export function accountLockedError(until: Date, now: Date): AppError {
  const retryAfter = secondsUntil(until, now);
  return accountErrors.account_locked(
    'Too many failed sign-in attempts. Try again later, or reset your password with "Forgot password".',
    { retryAfter },
    { 'retry-after': String(retryAfter) },
  );
}

/** Where the wrong password was typed (audit detail). */
export type PasswordFailureFlow = 'login' | 'change_password' | 'reauthentication';

/**
 * Who may still have the password checked while a lock is running: at login, until
 * UNCHECKED_DURING_LOCK_AFTER failures are counted; at re-authentication, nobody.
 */
export type PasswordAttemptPolicy = 'login' | 'reauthentication';

/** An attempt counted against the account before its password is checked. */
export type ReservedPasswordAttempt = {
  userId: string;
  /** The account as of the reservation (the hash to check, and what the settlement compares with). */
  status: 'ACTIVE' | 'BLOCKED';
  passwordHash: string;
  passwordChangedAt: Date | null;
  /** Consecutive failures counted, this attempt included. */
  consecutiveFailures: number;
  /** The lock in force after the reservation, or null. */
  lockedUntil: Date | null;
  lockouts: number;
  /** A lock was already running when this attempt was counted. */
  duringLock: boolean;
  /** This attempt was the LOCKOUT_THRESHOLD-th consecutive one and set the lock now in force. */
  newLock: { number: number; until: Date } | null;
  /** Code entry locked (10 wrong codes in a row) until then, as of the reservation; told after a correct password. */
  mfaLockedUntil: Date | null;
  /** Where it came from, for the audit row of a lock it set and that is lifted again (releasePasswordAttempt). */
  origin: { organizationId: string | null; meta: RequestMeta; flow: PasswordFailureFlow };
};

type ReservedRow = {
  id: string;
  organization_id: string | null;
  account_status: 'INVITED' | 'ACTIVE' | 'BLOCKED';
  has_password: boolean;
  /** The columns below are null when nothing was counted. */
  status: 'ACTIVE' | 'BLOCKED' | null;
  password_hash: string | null;
  password_changed_at: Date | null;
  failed_password_count: number | null;
  password_locked_until: Date | null;
  password_lockouts: number | null;
  mfa_locked_until: Date | null;
  /** 1 when this attempt set a lock (and wrote its login.locked row), else 0. */
  lock_audited: number;
};

/** The account a password attempt was made for, as found by the reservation. */
export type PasswordAccount = {
  id: string;
  organizationId: string | null;
  status: 'INVITED' | 'ACTIVE' | 'BLOCKED';
  hasPassword: boolean;
};

/** lockoutSeconds(n) for n = 0..16 (it is constant from 16 on): the lock length by lockouts so far. */
const LOCK_SCHEDULE = Array.from({ length: 17 }, (_, n) => lockoutSeconds(n));

/**
 * Finds the account (by e-mail at login, by id at re-authentication) and counts one password
 * attempt against it BEFORE the password is checked, in one statement — one conditional UPDATE
 * (concurrent attempts serialise on the row; each sees its predecessors' counts):
 *
 * - a lock that has run out is lifted and the count starts again at 1;
 * - otherwise the count goes up by one; the attempt that brings it to LOCKOUT_THRESHOLD sets the
 *   lock (15 min, growing; lib/lockout.ts), later ones are counted "during the lock";
 * - nothing is counted, and `attempt` is null (the caller must not check the password), when a
 *   lock is running and the policy stops checking: at login once UNCHECKED_DURING_LOCK_AFTER
 *   failures are counted, at re-authentication always; also when the account cannot sign in with
 *   a password at all (not activated).
 *
 * The attempt that sets a lock writes its `login.locked` audit row in the same statement, so no
 * lock is ever committed without its row (security.md item 26); the wrong password's own
 * `login.password_failed` row follows when the hash has said so (recordPasswordFailure). A correct
 * password that turns out to have set the lock lifts it again (its success says `lockLifted`).
 *
 * An unknown e-mail or an account that is not activated runs the very same statement and finds
 * nothing to update, so those failures cost the same round trip as a counted one (security.md item 5).
 */
export async function reservePasswordAttempt(
  sql: Sql,
  ctx: Pick<AppContext, 'clock'>,
  target: { email: string } | { userId: string },
  policy: PasswordAttemptPolicy,
  audit: { meta: RequestMeta; flow: PasswordFailureFlow },
): Promise<{ account: PasswordAccount | null; attempt: ReservedPasswordAttempt | null }> {
  const now = ctx.clock.now();
  const checkedDuringLockBelow = policy === 'login' ? UNCHECKED_DURING_LOCK_AFTER : 0;
  const p = new SqlParams();
  const account = 'email' in target ? `email = ${p.add(target.email)}` : `id = ${p.add(target.userId, 'uuid')}`;
  const at = p.add(now, 'timestamptz');
  const schedule = p.add(LOCK_SCHEDULE, 'int[]');
  const lockAudit = auditInsertSql(
    p,
    ctx.clock,
    { type: 'login.locked', actorUserId: null, meta: audit.meta, details: { flow: audit.flow } },
    {
      from: 'reserved, target',
      subject: { userId: 'target.id', organizationId: 'target.organization_id' },
      details: `jsonb_build_object('lockSeconds', (${schedule})[LEAST(reserved.password_lockouts - 1, ${LOCK_SCHEDULE.length - 1}) + 1],
        'lockNumber', reserved.password_lockouts,
        'until', to_char(reserved.password_locked_until AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))`,
    },
  );
  // SET expressions see the row as it was before this UPDATE (and, in a race, as the preceding
  // UPDATE committed it). Invariants that make the returned row self-describing: the attempt that
  // sets a lock leaves the count at exactly LOCKOUT_THRESHOLD, one counted during a lock above it.
  //
  // The statement's own commit does not wait for the WAL flush (synchronous_commit off for this
  // one transaction): the settlement that always follows (the failure's audit row, or the success)
  // commits synchronously and so flushes this write too, before anything is answered; a
  // reservation lost in a crash before that was never answered. Above all it keeps the work equal
  // to the no-row UPDATE run for unknown addresses, which has nothing to flush (security.md
  // item 5: a wrong password must not take one WAL flush longer than an unknown e-mail).
  const rows = await sql<ReservedRow>(
    `WITH no_flush_wait AS (SELECT set_config('synchronous_commit', 'off', true)),
    target AS (
      SELECT id, organization_id, status::text AS account_status, password_hash IS NOT NULL AS has_password
        FROM users WHERE ${account}),
    reserved AS (
      UPDATE users SET
        failed_password_count = CASE
          WHEN password_locked_until > ${at} THEN GREATEST(failed_password_count, ${LOCKOUT_THRESHOLD}) + 1
          WHEN password_locked_until IS NOT NULL THEN 1
          ELSE LEAST(failed_password_count, ${LOCKOUT_THRESHOLD - 1}) + 1 END,
        password_locked_until = CASE
          WHEN password_locked_until > ${at} THEN password_locked_until
          WHEN password_locked_until IS NULL AND failed_password_count >= ${LOCKOUT_THRESHOLD - 1}
            THEN ${at} + make_interval(secs => (${schedule})[LEAST(password_lockouts, ${LOCK_SCHEDULE.length - 1}) + 1])
          ELSE NULL END,
        password_lockouts = CASE
          WHEN password_locked_until IS NULL AND failed_password_count >= ${LOCKOUT_THRESHOLD - 1} THEN password_lockouts + 1
          ELSE password_lockouts END
      FROM no_flush_wait, target
      WHERE users.id = target.id
        AND users.status <> 'INVITED' AND users.password_hash IS NOT NULL
        AND (password_locked_until IS NULL OR password_locked_until <= ${at} OR failed_password_count < ${p.add(checkedDuringLockBelow, 'int')})
      RETURNING users.status::text AS status, users.password_hash, password_changed_at, failed_password_count, password_locked_until, password_lockouts,
        mfa_locked_until),
    -- The attempt that set the lock (the count is exactly the threshold only then, see above).
    lock_audit AS (${lockAudit}
      WHERE reserved.failed_password_count = ${LOCKOUT_THRESHOLD} AND reserved.password_locked_until > ${at}
      RETURNING 1)
    SELECT target.*, reserved.*, (SELECT count(*)::int FROM lock_audit) AS lock_audited FROM target LEFT JOIN reserved ON true`,
    p.values,
  );
  const row = rows[0];
  if (!row) return { account: null, attempt: null };
  if (row.lock_audited) announceAudit('login.locked');
  const found: PasswordAccount = { id: row.id, organizationId: row.organization_id, status: row.account_status, hasPassword: row.has_password };
  if (row.status === null || row.password_hash === null || row.failed_password_count === null || row.password_lockouts === null) {
    return { account: found, attempt: null };
  }

  const locked = row.password_locked_until !== null && row.password_locked_until > now;
  const lockedNow = locked && row.failed_password_count === LOCKOUT_THRESHOLD;
  return {
    account: found,
    attempt: {
      userId: row.id,
      status: row.status,
      passwordHash: row.password_hash,
      passwordChangedAt: row.password_changed_at,
      consecutiveFailures: row.failed_password_count,
      lockedUntil: locked ? row.password_locked_until : null,
      lockouts: row.password_lockouts,
      duringLock: locked && !lockedNow,
      newLock:
        lockedNow && row.password_locked_until
          ? { number: row.password_lockouts, until: row.password_locked_until }
          : null,
      mfaLockedUntil: row.mfa_locked_until,
      origin: { organizationId: row.organization_id, meta: audit.meta, flow: audit.flow },
    },
  };
}

/**
 * Gives a reserved attempt back: the password was correct but did not sign in (blocked, locked,
 * re-authentication, which does not reset the count), or it could not be checked (hash queue
 * full). If nobody counted an attempt since, the row returns exactly to its state before the
 * reservation (a lock this attempt set is lifted again, and a `login.lock_lifted` row says so next
 * to its `login.locked` one); otherwise only the count goes down by one, within the same lock
 * period (a later attempt counted during this lock keeps it).
 */
export async function releasePasswordAttempt(sql: Sql, ctx: Pick<AppContext, 'clock'>, attempt: ReservedPasswordAttempt): Promise<void> {
  const before = attempt.newLock
    ? { count: LOCKOUT_THRESHOLD - 1, until: null, lockouts: attempt.lockouts - 1 }
    : { count: Math.max(0, attempt.consecutiveFailures - 1), until: attempt.lockedUntil, lockouts: attempt.lockouts };
  const p = new SqlParams();
  // Counted during a lock that a correct password's success lifted meanwhile (which left this
  // attempt counted among the failures after it: login-success.ts), not one that ran out (a run-out
  // lock keeps the lock count; a success sets it to 0): still this attempt's to give back.
  const liftedBySuccess = attempt.lockedUntil && !attempt.newLock ? ' OR (password_locked_until IS NULL AND password_lockouts = 0)' : '';
  const unchanged = `failed_password_count = ${p.add(attempt.consecutiveFailures, 'int')} AND password_lockouts = ${p.add(attempt.lockouts, 'int')}`;
  const release = `UPDATE users SET
      failed_password_count = CASE WHEN ${unchanged} THEN ${p.add(before.count, 'int')} ELSE GREATEST(failed_password_count - 1, 0) END,
      password_locked_until = CASE WHEN ${unchanged} THEN ${p.add(before.until, 'timestamptz')} ELSE password_locked_until END,
      password_lockouts = CASE WHEN ${unchanged} THEN ${p.add(before.lockouts, 'int')} ELSE password_lockouts END
    WHERE id = ${p.add(attempt.userId, 'uuid')} AND failed_password_count > 0
      AND (password_locked_until IS NOT DISTINCT FROM ${p.add(attempt.lockedUntil, 'timestamptz')}${liftedBySuccess})`;
  if (!attempt.newLock) {
    await sql(release, p.values);
    return;
  }
  const { organizationId, meta, flow } = attempt.origin;
  const lifted = auditInsertSql(
    p,
    ctx.clock,
    { type: 'login.lock_lifted', actorUserId: null, subjectUserId: attempt.userId, organizationId, meta, details: { flow, lockNumber: attempt.newLock.number } },
    { from: 'released' },
  );
  const rows = await sql<{ lifted: number }>(
    `WITH released AS (${release} RETURNING password_locked_until),
    lifted AS (${lifted} WHERE released.password_locked_until IS NULL RETURNING 1)
    SELECT count(*)::int AS lifted FROM lifted`,
    p.values,
  );
  if (rows[0]?.lifted) announceAudit('login.lock_lifted');
}

/** Tries of releasePasswordAttempt when the database drops it, and the first pause (then doubling: 50, 100 ms). */
const RELEASE_TRIES = 3;
const RELEASE_RETRY_MS = 50;

/**
 * releasePasswordAttempt for the paths where the attempt must not stay counted although the
 * settlement failed (a correct password whose success could not be written, a hash that could not
 * be checked): a statement the database dropped is tried again, on whichever pool connection is
 * free, up to RELEASE_TRIES times. A release that did commit but whose answer was lost with the
 * connection is taken for failed and repeated: that takes one more failure off the count (never
 * below zero, never past a lock someone else set), the lesser error next to keeping a correct
 * password counted, and one that needs a connection dropped between commit and answer.
 */
export async function releasePasswordAttemptSurely(sql: Sql, ctx: Pick<AppContext, 'clock'>, attempt: ReservedPasswordAttempt): Promise<void> {
  await retrying(() => releasePasswordAttempt(sql, ctx, attempt), { tries: RELEASE_TRIES, firstDelayMs: RELEASE_RETRY_MS, retryable: isDatabaseUnavailable });
}

/**
 * Settles a reserved attempt whose password was wrong: it is already counted (and any lock it
 * reached is already set and audited by the reservation); this audits the failure.
 */
export async function recordPasswordFailure(
  sql: Sql,
  ctx: Pick<AppContext, 'clock'>,
  user: { id: string; organizationId: string | null },
  attempt: ReservedPasswordAttempt,
  meta: RequestMeta,
  flow: PasswordFailureFlow,
): Promise<void> {
  await recordAudits(sql, ctx.clock, [
    {
      type: 'login.password_failed',
      // At login nobody is known yet; at re-authentication (change password, MFA removal, new
      // recovery codes) the password was typed in the user's own signed-in session.
      actorUserId: flow === 'login' ? null : user.id,
      subjectUserId: user.id,
      organizationId: user.organizationId,
      meta,
      details: {
        reason: 'wrong_password',
        flow,
        consecutiveFailures: attempt.consecutiveFailures,
        ...(attempt.duringLock ? { duringLock: true } : {}),
      },
    },
  ]);
}

/** Data that ends a run of failures and any lock (correct password at login, reset, change). */
export const CLEARED_PASSWORD_LOCKOUT = { failedPasswordCount: 0, passwordLockedUntil: null, passwordLockouts: 0 } as const;
