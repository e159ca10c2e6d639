import { authorize } from '../../access/policy.js';
import type { Tx } from '../../db/client.js';
import { recordAudit } from '../audit/audit.service.js';
import type { TargetUser } from './acting-user.js';
import { lockForChange, originOf, otherAdministrators, type AdminCall, type AdminCtx, type ChangeOrigin } from './user-admin.service.js';
import { withdrawWaitingStatusMail } from '../mail/status-mail.js';

/**
 * Withdraws the invitation of a user who never activated: a mistyped address, or someone who will
 * not join after all. The account is deleted, so its e-mail address is free for a new invitation
 * (one account per address), its activation link stops working (link_invalid: the link's row goes
 * with the account) and an activation mail still waiting in the outbox is not sent. A mail a worker
 * is handing to SMTP at this moment still goes out; its link is dead.
 *
 * An account that was ever activated is never deleted (409 already_activated): blocking it keeps
 * its sessions' and audit trail's owner. Nor is an organisation's last administrator, invited ones
 * included (409 last_administrator): support appoints the successor first.
 */
export async function withdrawInvitation(ctx: AdminCtx, call: AdminCall, userId: string): Promise<void> {
  await ctx.db.$transaction(async (tx) => {
    // Organisation row, then user row: an activation of this account waits for the deletion (and
    // then finds its link gone), or commits first and the policy sees the account active.
    const { acting, target } = await lockForChange(tx, call, userId);
    authorize(acting, 'user.withdraw_invitation', target, {
      activated: target.passwordHash !== null,
      blockedBySupport: target.blockedBySupport,
      otherAdministrators: await otherAdministrators(tx, target, ctx.clock.now()),
    });
    await withdrawInvitationInTx(tx, ctx, target, originOf(acting, call));
  });
}

/**
 * The withdrawal itself, for a target the caller locked and authorised (the API above; the
 * operator's command for support staff). Returns how many unsent activation mails were removed.
 * The audit row keeps the address and name, which the audit views can no longer look up for the
 * deleted id.
 */
export async function withdrawInvitationInTx(tx: Tx, ctx: Pick<AdminCtx, 'clock'>, target: TargetUser, origin: ChangeOrigin): Promise<{ mailsCancelled: number }> {
  // A block mail still waiting for the budget goes too: the address may be someone else's next.
  const mailsCancelled = (await withdrawWaitingStatusMail(tx, ctx.clock, [target.id])) + (await cancelUnsentActivationMail(tx, ctx, target));
  await tx.user.delete({ where: { id: target.id } });
  await recordAudit(tx, ctx.clock, {
    type: 'user.invitation_withdrawn',
    actorUserId: origin.actorUserId,
    subjectUserId: target.id,
    organizationId: target.organizationId,
    meta: origin.meta,
    details: { by: origin.by, email: target.email, name: target.name, roles: target.roles, status: target.status, mailsCancelled },
  });
  return { mailsCancelled };
}

/**
 * Removes the activation mails to the user's address that no worker holds (never claimed, or
 * waiting for a retry). A row under a live claim is left alone: the worker is sending it and marks
 * it itself. Its claim takes the row lock first, so this sees its lease once it has committed.
 */
async function cancelUnsentActivationMail(tx: Tx, ctx: Pick<AdminCtx, 'clock'>, target: TargetUser): Promise<number> {
  const now = ctx.clock.now();
  const { count } = await tx.mailOutbox.deleteMany({
    where: {
      // By account, and rows older than that column by address: not another account's mail to an address it had before.
      AND: [{ OR: [{ userId: target.id }, { userId: null, toAddress: target.email }] }, { OR: [{ lockedUntil: null }, { lockedUntil: { lte: now } }] }],
      template: 'activation',
      sentAt: null,
      failedAt: null,
    },
  });
  return count;
}
