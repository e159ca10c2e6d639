import type { AppContext } from '../../context.js';
import type { Tx } from '../../db/client.js';
import { poolSql } from '../../db/sql.js';
import { commonErrors } from '../../errors.js';
import type { RequestMeta } from '../audit/audit.service.js';
import { mfaErrors } from '../mfa/mfa.errors.js';
import { normalizePassword } from './passwords.js';
import { lockLoginState } from './user-lock.js';
import {
  accountLockedError,
  recordPasswordFailure,
  releasePasswordAttemptSurely,
  reservePasswordAttempt,
  type PasswordFailureFlow,
} from './password-lockout.js';

/**
 * Re-authentication ("sudo") with the current password before a sensitive action (change password,
 * remove MFA, regenerate recovery codes). A wrong password counts towards the account's password
 * lockout exactly like a failed login, so a stolen session cannot be used to guess the password;
 * while the password is locked the answer is 423 account_locked and nothing is checked.
 * The attempt is counted before the hash is checked (reservePasswordAttempt), so concurrent
 * guesses meet the lock like sequential ones; a correct password gives its attempt back (unlike a
 * login it does not reset the count).
 * Throws 403 reauthentication_failed on a wrong password; returns the user row otherwise. The
 * caller then runs confirmReauthentication() first in the transaction that performs the action.
 */
export async function reauthenticate(
  ctx: Pick<AppContext, 'db' | 'pool' | 'clock' | 'hasher'>,
  userId: string,
  password: string,
  meta: RequestMeta,
  flow: PasswordFailureFlow = 'reauthentication',
) {
  const user = await ctx.db.user.findUnique({
    where: { id: userId },
    select: {
      id: true,
      email: true,
      name: true,
      status: true,
      organizationId: true,
      passwordHash: true,
      passwordChangedAt: true,
      organization: { select: { name: true } },
    },
  });
  if (!user || user.status !== 'ACTIVE' || !user.passwordHash) throw commonErrors.unauthenticated();

  const sql = poolSql(ctx.pool);
  const { attempt } = await reservePasswordAttempt(sql, ctx, { userId: user.id }, 'reauthentication', { meta, flow });
  if (!attempt) {
    // Nothing counted, nothing checked: the password is locked (or the account changed meanwhile).
    const current = await ctx.db.user.findUnique({ where: { id: user.id }, select: { status: true, passwordLockedUntil: true } });
    const now = ctx.clock.now();
    if (current?.status === 'ACTIVE' && current.passwordLockedUntil && current.passwordLockedUntil > now) {
      throw accountLockedError(current.passwordLockedUntil, now);
    }
    throw commonErrors.unauthenticated();
  }
  if (attempt.status !== 'ACTIVE') {
    await releasePasswordAttemptSurely(sql, ctx, attempt);
    throw commonErrors.unauthenticated();
  }

  let valid: boolean;
  try {
    // The hash as of the reservation; confirmReauthentication compares its passwordChangedAt.
    ({ valid } = await ctx.hasher.verify(attempt.passwordHash, normalizePassword(password)));
  } catch (err) {
    await releasePasswordAttemptSurely(sql, ctx, attempt).catch(() => undefined);
    throw err;
  }
  if (!valid) {
    await recordPasswordFailure(sql, ctx, user, attempt, meta, flow);
    throw mfaErrors.reauthentication_failed('The password is not correct.');
  }
  // Not counted, even when the database drops the first try (the action's transaction follows).
  await releasePasswordAttemptSurely(sql, ctx, attempt);
  return { ...user, passwordHash: attempt.passwordHash, passwordChangedAt: attempt.passwordChangedAt };
}

/**
 * Call first in the transaction of the sensitive action, with the user returned by
 * reauthenticate(): locks the user row and decides again on it as committed now. Concurrent wrong
 * guesses may have locked the password (or a reset replaced it) while this password was being
 * hashed; a lock in force then wins over this (correct) password, exactly as at login.
 */
export async function confirmReauthentication(
  tx: Tx,
  ctx: Pick<AppContext, 'clock'>,
  user: { id: string; passwordChangedAt: Date | null },
): Promise<void> {
  const current = await lockLoginState(tx, user.id);
  if (!current || current.status !== 'ACTIVE') throw commonErrors.unauthenticated();
  if (current.passwordChangedAt?.getTime() !== user.passwordChangedAt?.getTime()) {
    throw mfaErrors.reauthentication_failed('The password is not correct.');
  }
  const now = ctx.clock.now();
  if (current.passwordLockedUntil && current.passwordLockedUntil > now) throw accountLockedError(current.passwordLockedUntil, now);
}
