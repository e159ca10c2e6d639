import { authorize } from '../../access/policy.js';
import { revokeUserSessions } from '../sessions/revoke.js';
import type { ManagedUser } from './organization.schemas.js';
import { auditChange, lockForChange, originOf, reloadManagedUser, type AdminCall, type AdminCtx } from './user-admin.service.js';

export const SIGN_OUT_SUMMARY =
  'Sign a user out of every device (e.g. a lost laptop) without blocking: all sessions end at once, the user can sign in again with password and code';

/**
 * An administrator (own organisation) or support signs a user out of every device, e.g. a laptop
 * left in a hotel, without blocking the account: every session ends at once (refresh tokens fail,
 * introspection answers inactive, the service refuses the access tokens), and the user can sign in
 * again at once with password and code. Audited as `user.signed_out` with the number of sessions
 * ended (0 included: the request is on record either way).
 */
export async function signOutUser(ctx: AdminCtx, call: AdminCall, userId: string): Promise<ManagedUser> {
  return ctx.db.$transaction(async (tx) => {
    const { acting, target } = await lockForChange(tx, call, userId);
    authorize(acting, 'user.sign_out', target);
    const sessionsRevoked = await revokeUserSessions(tx, ctx.clock, target.id, 'signed_out');
    await auditChange(tx, ctx, 'user.signed_out', target, originOf(acting, call), { sessionsRevoked });
    return reloadManagedUser(tx, target.id);
  });
}
