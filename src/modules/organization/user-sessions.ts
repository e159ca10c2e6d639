import { authorize, policyErrors } from '../../access/policy.js';
import { revokeUserSessions } from '../sessions/revoke.js';
import { liveSessions, type SessionView } from '../sessions/sessions.service.js';
import { findTarget, loadActingUser } from './acting-user.js';
import type { ManagedUser } from './organization.schemas.js';
import { auditChange, lockForChange, originOf, reloadManagedUser, type AdminCall, type AdminCtx } from './user-admin.service.js';

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

/**
 * The live sessions (devices) of a user, for an administrator (own organisation) or support (any)
 * deciding whether to sign the user out: when each started and was last used, from which address
 * and browser, and how it signed in (`amr`). Support staff's sessions are not shown to other
 * support staff (support_staff_protected).
 */
export async function listUserSessions(ctx: AdminCtx, call: AdminCall, userId: string): Promise<SessionView[]> {
  return ctx.db.$transaction(async (tx) => {
    const acting = await loadActingUser(tx, call.actor);
    const target = await findTarget(tx, userId);
    if (!target) throw policyErrors.user_not_found();
    authorize(acting, 'user.sessions.read', target);
    return liveSessions(tx, ctx.clock.now(), target.id, null);
  });
}
