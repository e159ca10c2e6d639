import type { AppContext } from '../../context.js';
import type { Tx } from '../../db/client.js';
import { lockUserRow } from '../accounts/user-lock.js';
import { voidFlows } from '../flows/flow-tokens.js';
import { revokeUserSessions } from '../sessions/revoke.js';

export type RemoveMfaOptions = {
  /** Keep this session alive (self-service removal keeps the caller's own session). */
  exceptSessionId?: string;
  /** Stored on the revoked sessions; default 'mfa_reset'. */
  reason?: string;
};

export type RemoveMfaResult = {
  /** Whether the user had an ACTIVE factor before. */
  hadActiveFactor: boolean;
  removedRecoveryCodes: number;
  revokedSessions: number;
};

/**
 * Whether an administrator's or support's MFA reset has anything to do: a factor (working, or
 * being set up) or a code lock in force — a user locked out during their first set-up (a
 * drifted device clock) has no working factor, and the reset is what lifts the lock.
 */
export async function hasMfaToReset(tx: Tx, userId: string, now: Date): Promise<boolean> {
  if ((await tx.totpFactor.count({ where: { userId } })) > 0) return true;
  const user = await tx.user.findUnique({ where: { id: userId }, select: { mfaLockedUntil: true } });
  return !!user?.mfaLockedUntil && user.mfaLockedUntil > now;
}

/**
 * Removes a user's MFA entirely: every TOTP factor (active and pending), every recovery code,
 * pending login challenges (they were issued for the old factor), pending support-verified reset
 * links (about the old factor), and the code-failure count and
 * lock (whoever resets MFA has verified the user). Ends the user's sessions except
 * `options.exceptSessionId`. The next login asks for enrolment.
 *
 * Data only: callers write their own audit event and notification mail (self-service removal,
 * admin reset, support reset differ in both). Call inside the caller's transaction.
 */
export async function removeMfa(
  tx: Tx,
  ctx: Pick<AppContext, 'clock'>,
  userId: string,
  options: RemoveMfaOptions = {},
): Promise<RemoveMfaResult> {
  // Lock order user → factors/flows/sessions (accounts/user-lock.ts), like the MFA login step.
  await lockUserRow(tx, userId);
  const active = await tx.totpFactor.count({ where: { userId, status: 'ACTIVE' } });
  await tx.totpFactor.deleteMany({ where: { userId } });
  const codes = await tx.recoveryCode.deleteMany({ where: { userId } });
  // Pending login challenges were issued for the old factor; a pending support-verified reset
  // link was about the old factor too and must not later remove the one set up next.
  await voidFlows(tx, userId, ['LOGIN_CHALLENGE', 'MFA_RESET']);
  await tx.user.update({ where: { id: userId }, data: { failedMfaCount: 0, mfaLockedUntil: null } });
  const revokedSessions = await revokeUserSessions(
    tx,
    ctx.clock,
    userId,
    options.reason ?? 'mfa_reset',
    options.exceptSessionId ? { exceptSessionId: options.exceptSessionId } : {},
  );
  return { hadActiveFactor: active > 0, removedRecoveryCodes: codes.count, revokedSessions };
}
