import { authorize } from '../../access/policy.js';
import type { ManagedUser } from './organization.schemas.js';
import { auditChange, lockForChange, originOf, reloadManagedUser, type AdminCall, type AdminCtx } from './user-admin.service.js';

export const UNLOCK_SUMMARY =
  'Lift a running sign-in lock (wrong passwords) or code-entry lock (wrong codes) of a user who cannot sign in; the next lock, if someone keeps guessing before the user signs in, lasts twice as long';

/**
 * An administrator (own organisation) or support lifts a running sign-in lock of a user who called
 * ("I cannot sign in"): the password lock, the code-entry lock, or both, with their counts of
 * failures in a row. The number of locks so far stays (a password lock's is reset by the user's
 * next sign-in; a code-entry lock's never is: docs/security.md, observation 5), so the next lock of
 * someone still guessing lasts twice as long as the last one did.
 * 409 not_locked when neither is running. Audited as `user.unlocked` with which locks were
 * lifted; the user can sign in at once.
 */
export async function unlockUser(ctx: AdminCtx, call: AdminCall, userId: string): Promise<ManagedUser> {
  return ctx.db.$transaction(async (tx) => {
    const { acting, target } = await lockForChange(tx, call, userId);
    const now = ctx.clock.now();
    const password = target.passwordLockedUntil !== null && target.passwordLockedUntil > now;
    const code = target.mfaLockedUntil !== null && target.mfaLockedUntil > now;
    authorize(acting, 'user.unlock', target, { locked: password || code });
    await tx.user.update({
      where: { id: target.id },
      data: {
        ...(password ? { failedPasswordCount: 0, passwordLockedUntil: null } : {}),
        ...(code ? { failedMfaCount: 0, mfaLockedUntil: null } : {}),
      },
    });
    await auditChange(tx, ctx, 'user.unlocked', target, originOf(acting, call), {
      password: password ? { until: target.passwordLockedUntil!.toISOString() } : null,
      code: code ? { until: target.mfaLockedUntil!.toISOString() } : null,
    });
    return reloadManagedUser(tx, target.id);
  });
}
