import { authorize } from '../../access/policy.js';
import type { Tx } from '../../db/client.js';
import { commonErrors } from '../../errors.js';
import { lockUserRow } from '../accounts/user-lock.js';
import { recordAudit, type RequestMeta } from '../audit/audit.service.js';
import type { ManagedUser } from './organization.schemas.js';
import { lockForChange, originOf, reloadManagedUser, type AdminCall, type AdminCtx } from './user-admin.service.js';

type Renamed = { id: string; organizationId: string | null; name: string };
type Renamer = { actorUserId: string; by: 'self' | 'admin' | 'support'; meta: RequestMeta };

/**
 * Sets the name of a user whose row the caller locked and read (`user.name` is the name as stored
 * now), audited as `user.renamed` with the old and the new name; the same name again changes and
 * audits nothing. Mails already queued keep the name they were written with.
 */
async function renameLocked(tx: Tx, ctx: Pick<AdminCtx, 'clock'>, user: Renamed, name: string, by: Renamer): Promise<void> {
  if (user.name === name) return;
  await tx.user.update({ where: { id: user.id }, data: { name } });
  await recordAudit(tx, ctx.clock, {
    type: 'user.renamed',
    actorUserId: by.actorUserId,
    subjectUserId: user.id,
    organizationId: user.organizationId,
    meta: by.meta,
    details: { by: by.by, name: { from: user.name, to: name } },
  });
}

/** A user corrects their own name (PATCH /v1/me). */
export async function renameSelf(ctx: AdminCtx, actor: { userId: string }, name: string, meta: RequestMeta): Promise<void> {
  await ctx.db.$transaction(async (tx) => {
    await lockUserRow(tx, actor.userId);
    const user = await tx.user.findUnique({ where: { id: actor.userId }, select: { id: true, organizationId: true, name: true } });
    if (!user) throw commonErrors.token_invalid();
    await renameLocked(tx, ctx, user, name, { actorUserId: actor.userId, by: 'self', meta });
  });
}

/**
 * An administrator (own organisation) or support corrects a user's name, e.g. one mistyped in the
 * invitation; whatever the account's state. Their own name they change as every user does
 * (409 self_service_required).
 */
export async function renameUser(ctx: AdminCtx, call: AdminCall, userId: string, name: string): Promise<ManagedUser> {
  return ctx.db.$transaction(async (tx) => {
    const { acting, target } = await lockForChange(tx, call, userId);
    authorize(acting, 'user.rename', target);
    const { by } = originOf(acting, call);
    await renameLocked(tx, ctx, target, name, { actorUserId: acting.userId, by: by === 'support' ? 'support' : 'admin', meta: call.meta });
    return reloadManagedUser(tx, target.id);
  });
}
