import { authorize, decide, policyErrors, toError } from '../../access/policy.js';
import type { Tx } from '../../db/client.js';
import { lockUserRow } from '../accounts/user-lock.js';
import { recordAudit } from '../audit/audit.service.js';
import { findTarget, loadActingUser, lockOrganization, type ActingUser } from '../organization/acting-user.js';
import { blockUserInTx, originOf, unblockUserInTx, type AdminCall, type AdminCtx } from '../organization/user-admin.service.js';
import { organizationSelect, summaries } from './support.service.js';

/** A large organisation's users are blocked or unblocked one by one, in one transaction. */
const TRANSACTION_TIMEOUT_MS = 120_000;

/**
 * Locks the organisation row and decides, on it as committed now, whether support may suspend or
 * reinstate it. Returns the acting user.
 */
async function lockForSuspension(
  tx: Tx,
  call: AdminCall,
  organizationId: string,
  action: 'organization.suspend' | 'organization.reinstate',
): Promise<ActingUser> {
  const acting = await loadActingUser(tx, call.actor);
  // Who may at all first (403 before 404); the organisation's state once its row is locked.
  const allowed = decide(acting, action, { organizationId }, { organizationSuspended: action === 'organization.reinstate' });
  if (allowed.effect === 'forbidden') throw toError(allowed);
  if (!(await lockOrganization(tx, organizationId))) throw policyErrors.organization_not_found();
  const { suspendedAt } = await tx.organization.findUniqueOrThrow({ where: { id: organizationId }, select: { suspendedAt: true } });
  authorize(acting, action, { organizationId }, { organizationSuspended: suspendedAt !== null });
  return acting;
}

/**
 * Support suspends a whole organisation (contract ended, fraud, a credit stop): every user not
 * blocked yet is blocked as by supportBlockUser — sessions end, pending links are voided, links they
 * sent to others are withdrawn, `user.blocked` is audited for each (`via: organization_suspended`) —
 * but not told by mail (whether and how a reseller's people are told is the shop's to decide). The
 * last-administrator rule does not hold here: the whole organisation stops. While it is suspended
 * nobody is invited or appointed into it and none of its users is unblocked (409
 * organization_suspended); a sign-in is told `account_blocked` with the support contact (its
 * administrators are blocked too). `organization.suspended` records the reason and the counts.
 */
export async function suspendOrganization(ctx: AdminCtx, call: AdminCall, organizationId: string, reason: string) {
  return ctx.db.$transaction(
    async (tx) => {
      const acting = await lockForSuspension(tx, call, organizationId, 'organization.suspend');
      const now = ctx.clock.now();
      const organization = await tx.organization.update({
        where: { id: organizationId },
        data: { suspendedAt: now, suspensionReason: reason },
        select: organizationSelect,
      });
      const origin = originOf(acting, call);
      const members = await tx.user.findMany({ where: { organizationId, status: { not: 'BLOCKED' } }, select: { id: true }, orderBy: { id: 'asc' } });
      let usersBlocked = 0;
      let sessionsRevoked = 0;
      for (const { id } of members) {
        // Lock order: organisation (held), then user; re-read as committed now.
        await lockUserRow(tx, id);
        const target = await findTarget(tx, id);
        if (!target || target.status === 'BLOCKED') continue;
        const blocked = await blockUserInTx(tx, ctx, target, origin, { via: 'organization_suspended' }, { bySuspension: true });
        usersBlocked += 1;
        sessionsRevoked += blocked.sessionsRevoked;
      }
      await recordAudit(tx, ctx.clock, {
        type: 'organization.suspended',
        actorUserId: acting.userId,
        organizationId,
        meta: call.meta,
        details: { reason, usersBlocked, sessionsRevoked },
      });
      const [summary] = await summaries(tx, [organization]);
      return summary!;
    },
    { timeout: TRANSACTION_TIMEOUT_MS },
  );
}

/**
 * Support lifts a suspension: the users the suspension blocked are unblocked as by
 * supportUnblockUser (back to ACTIVE with a mail, or, never activated, INVITED with a new activation
 * link); users who were blocked before it, on their own, stay blocked. `organization.reinstated`
 * records the count.
 */
export async function reinstateOrganization(ctx: AdminCtx, call: AdminCall, organizationId: string) {
  return ctx.db.$transaction(
    async (tx) => {
      const acting = await lockForSuspension(tx, call, organizationId, 'organization.reinstate');
      const organization = await tx.organization.update({
        where: { id: organizationId },
        data: { suspendedAt: null, suspensionReason: null },
        select: organizationSelect,
      });
      const origin = originOf(acting, call);
      const members = await tx.user.findMany({ where: { organizationId, blockedBySuspension: true }, select: { id: true }, orderBy: { id: 'asc' } });
      let usersUnblocked = 0;
      for (const { id } of members) {
        await lockUserRow(tx, id);
        const target = await findTarget(tx, id);
        if (!target || target.status !== 'BLOCKED') continue;
        await unblockUserInTx(tx, ctx, target, origin);
        usersUnblocked += 1;
      }
      await recordAudit(tx, ctx.clock, {
        type: 'organization.reinstated',
        actorUserId: acting.userId,
        organizationId,
        meta: call.meta,
        details: { usersUnblocked },
      });
      const [summary] = await summaries(tx, [organization]);
      return summary!;
    },
    { timeout: TRANSACTION_TIMEOUT_MS },
  );
}
