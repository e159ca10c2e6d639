import type { AppContext } from '../../context.js';
import type { Tx } from '../../db/client.js';
import { commonErrors } from '../../errors.js';
import type { RequestMeta } from '../audit/audit.service.js';
import { mfaErrors } from '../mfa/mfa.errors.js';
import { normalizePassword } from './passwords.js';
import { lockLoginState } from './user-lock.js';
import { accountLockedError, isPasswordLocked, registerPasswordFailure, type PasswordFailureFlow } from './password-lockout.js';

/**
 * Re-authentication ("sudo") with the current password before a sensitive action (change password,
 * remove MFA, regenerate recovery codes). A wrong password counts towards the account's password
 * lockout exactly like a failed login, so a stolen session cannot be used to guess the password;
 * while the password is locked the answer is 423 account_locked.
 * Throws 403 reauthentication_failed on a wrong password; returns the user row otherwise. The
 * caller then runs confirmReauthentication() first in the transaction that performs the action.
 */
export async function reauthenticate(
  ctx: Pick<AppContext, 'db' | 'clock' | 'hasher'>,
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
      failedPasswordCount: true,
      passwordLockedUntil: true,
      organization: { select: { name: true } },
    },
  });
  if (!user || user.status !== 'ACTIVE' || !user.passwordHash) throw commonErrors.unauthenticated();
  const now = ctx.clock.now();
  if (isPasswordLocked(user, now) && user.passwordLockedUntil) throw accountLockedError(user.passwordLockedUntil, now);

  const { valid } = await ctx.hasher.verify(user.passwordHash, normalizePassword(password));
  if (!valid) {
    await ctx.db.$transaction((tx) => registerPasswordFailure(tx, ctx, user, meta, flow));
    throw mfaErrors.reauthentication_failed('The password is not correct.');
  }
  return user;
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
