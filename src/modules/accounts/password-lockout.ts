import type { AppContext } from '../../context.js';
import type { Tx } from '../../db/client.js';
import type { AppError } from '../../errors.js';
import { addSeconds } from '../../lib/clock.js';
import { LOCKOUT_THRESHOLD, lockoutSeconds, secondsUntil } from '../../lib/lockout.js';
import { recordAudit, type RequestMeta } from '../audit/audit.service.js';
import { accountErrors } from './accounts.errors.js';

/**
 * Per-account lockout of the password step (security.md item 6), on User.failedPasswordCount /
 * passwordLockedUntil / passwordLockouts:
 *
 * - every wrong password counts; the 10th consecutive one locks password sign-in for 15 min,
 *   doubling with each further lock (capped at 24 h, src/lib/lockout.ts); a correct password at
 *   login, a password reset or a change resets all three;
 * - after a lock has run out the count starts again from zero, so there are never more than 10
 *   failures without a lock (NIST 800-63B 3.2.2 allows 100);
 * - during a lock the password is still checked, because the lock (like a block) is only told to
 *   whoever typed the correct one (security.md item 5). So that this cannot become an unlimited
 *   guessing oracle, failures during a lock go on counting, and once another 10 have piled up the
 *   password is no longer checked at all until the lock ends (everyone gets invalid_credentials);
 * - the lock never blocks the forgotten-password flow, and finishing a reset lifts it.
 */

/** Once this many consecutive failures are counted during a lock, passwords are no longer checked. */
export const UNCHECKED_DURING_LOCK_AFTER = 2 * LOCKOUT_THRESHOLD;

type LockFields = { failedPasswordCount: number; passwordLockedUntil: Date | null };

export function isPasswordLocked(user: LockFields, now: Date): boolean {
  return user.passwordLockedUntil !== null && user.passwordLockedUntil > now;
}

/** True while locked and so many more failures were counted that the password is not even checked. */
export function isPasswordCheckSuspended(user: LockFields, now: Date): boolean {
  return isPasswordLocked(user, now) && user.failedPasswordCount >= UNCHECKED_DURING_LOCK_AFTER;
}

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

export type PasswordFailure = { consecutiveFailures: number; locked: boolean; lockedUntil: Date | null };

type Row = { failed_password_count: number; password_locked_until: Date | null; password_lockouts: number };

/**
 * Counts one wrong password against the account (the row is locked for the update, so concurrent
 * failures are all counted) and locks it at the threshold. Audits the failure and any new lock.
 */
export async function registerPasswordFailure(
  tx: Tx,
  ctx: Pick<AppContext, 'clock'>,
  user: { id: string; organizationId: string | null },
  meta: RequestMeta,
  flow: PasswordFailureFlow,
): Promise<PasswordFailure> {
  const now = ctx.clock.now();
  const [row] = await tx.$queryRaw<Row[]>`
    SELECT failed_password_count, password_locked_until, password_lockouts FROM users WHERE id = ${user.id}::uuid FOR UPDATE`;
  if (!row) return { consecutiveFailures: 0, locked: false, lockedUntil: null };

  const lockRunning = row.password_locked_until !== null && row.password_locked_until > now;
  const lockOver = row.password_locked_until !== null && !lockRunning;
  let count = lockOver ? 1 : row.failed_password_count + 1;
  let lockedUntil = lockOver ? null : row.password_locked_until;
  let lockouts = row.password_lockouts;
  let newLockSeconds: number | undefined;
  if (!lockRunning && count >= LOCKOUT_THRESHOLD) {
    newLockSeconds = lockoutSeconds(lockouts);
    lockedUntil = addSeconds(now, newLockSeconds);
    lockouts += 1;
  }
  await tx.user.update({
    where: { id: user.id },
    data: { failedPasswordCount: count, passwordLockedUntil: lockedUntil, passwordLockouts: lockouts },
  });
  const audit = { actorUserId: null, subjectUserId: user.id, organizationId: user.organizationId, meta };
  await recordAudit(tx, ctx.clock, {
    ...audit,
    type: 'login.password_failed',
    details: { reason: 'wrong_password', flow, consecutiveFailures: count, ...(lockRunning ? { duringLock: true } : {}) },
  });
  if (newLockSeconds !== undefined && lockedUntil) {
    await recordAudit(tx, ctx.clock, {
      ...audit,
      type: 'login.locked',
      details: { flow, lockSeconds: newLockSeconds, lockNumber: lockouts, until: lockedUntil.toISOString() },
    });
  }
  return { consecutiveFailures: count, locked: lockedUntil !== null && lockedUntil > now, lockedUntil };
}

const NO_USER = '00000000-0000-0000-0000-000000000000';

/**
 * The database round trips of registerPasswordFailure, touching no row. Login failures that do not
 * count against an account (unknown e-mail, not activated) run this, so that every failed login
 * costs the same (security.md item 5: no timing difference between the three cases).
 */
export async function mimicPasswordFailure(tx: Tx): Promise<void> {
  await tx.$queryRaw<Row[]>`
    SELECT failed_password_count, password_locked_until, password_lockouts FROM users WHERE id = ${NO_USER}::uuid FOR UPDATE`;
  await tx.user.updateMany({ where: { id: NO_USER }, data: { failedPasswordCount: 0 } });
}

/** Data that ends a run of failures and any lock (correct password at login, reset, change). */
export const CLEARED_PASSWORD_LOCKOUT = { failedPasswordCount: 0, passwordLockedUntil: null, passwordLockouts: 0 } as const;
