import { authorize, decide, policyErrors, toError } from '../../access/policy.js';
import type { Tx } from '../../db/client.js';
import { recordAudit } from '../audit/audit.service.js';
import { findTargets, loadActingUser, lockOrganization, type ActingUser } from '../organization/acting-user.js';
import { blockUsersInTx, originOf, unblockUserInTx, type AdminCall, type AdminCtx } from '../organization/user-admin.service.js';
import { organizationSelect, summaries } from './support.service.js';

/** A reinstatement unblocks (and mails) its users one by one, in one transaction. */
const TRANSACTION_TIMEOUT_MS = 120_000;

/**
 * Locks every user row of the organisation, in id order, right after the organisation row (the
 * documented lock order: organisation → users → their flows and sessions). Blocking one user
 * touches the links it sent to others; locking them all first keeps a concurrent activation or
 * password reset (user row, then its link) from deadlocking with the suspension.
 */
async function lockMembers(tx: Tx, organizationId: string): Promise<void> {
  await tx.$queryRaw`SELECT id FROM users WHERE organization_id = ${organizationId}::uuid ORDER BY id FOR UPDATE`;
}

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
 * blocked yet is blocked as by supportBlockUser, all in a few statements (blockUsersInTx) — sessions end, pending links are voided, links they
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
      await lockMembers(tx, organizationId);
      const targets = await findTargets(tx, { organizationId, status: { not: 'BLOCKED' } });
      const blocked = await blockUsersInTx(tx, ctx, targets, originOf(acting, call), { via: 'organization_suspended' }, { bySuspension: true });
      const sessionsRevoked = [...blocked.values()].reduce((sum, b) => sum + b.sessionsRevoked, 0);
      await recordAudit(tx, ctx.clock, {
        type: 'organization.suspended',
        actorUserId: acting.userId,
        organizationId,
        meta: call.meta,
        details: { reason, usersBlocked: targets.length, sessionsRevoked },
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
      await lockMembers(tx, organizationId);
      const origin = originOf(acting, call);
      const targets = await findTargets(tx, { organizationId, status: 'BLOCKED', blockedBySuspension: true });
      // Activated accounts first: the renewed invitations of the others then find the organisation's
      // administrators active again, and name them for a further link (unblockUserInTx).
      targets.sort((a, b) => Number(a.passwordHash === null) - Number(b.passwordHash === null));
      for (const target of targets) await unblockUserInTx(tx, ctx, target, origin, { via: 'organization_reinstated' });
      const usersUnblocked = targets.length;
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
