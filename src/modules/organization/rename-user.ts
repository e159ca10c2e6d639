import { authorize, policyErrors } from '../../access/policy.js';
import type { Tx } from '../../db/client.js';
import { commonErrors } from '../../errors.js';
import type { Language } from '../../lib/languages.js';
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
 * invitation, whatever the account's state, or the language of an invited user's mails (once
 * activated, the user chooses it: 409 already_activated, and nothing changes). Their own name they
 * change as every user does (409 self_service_required).
 */
export async function correctUser(
  ctx: AdminCtx,
  call: AdminCall,
  userId: string,
  input: { name?: string | undefined; language?: Language | undefined },
): Promise<ManagedUser> {
  return ctx.db.$transaction(async (tx) => {
    const { acting, target } = await lockForChange(tx, call, userId);
    authorize(acting, 'user.rename', target);
    const by: Renamer = { actorUserId: acting.userId, by: originOf(acting, call).by === 'support' ? 'support' : 'admin', meta: call.meta };
    if (input.language !== undefined && input.language !== target.language) {
      if (target.status !== 'INVITED') {
        throw policyErrors.already_activated('Once activated, users choose the language of their mails themselves (PATCH /v1/me/preferences).');
      }
      await tx.user.update({ where: { id: target.id }, data: { language: input.language } });
      await recordAudit(tx, ctx.clock, {
        type: 'user.preferences_changed',
        actorUserId: acting.userId,
        subjectUserId: target.id,
        organizationId: target.organizationId,
        meta: call.meta,
        details: { by: by.by, language: { from: target.language, to: input.language } },
      });
    }
    if (input.name !== undefined) await renameLocked(tx, ctx, target, input.name, by);
    return reloadManagedUser(tx, target.id);
  });
}
