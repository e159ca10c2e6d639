import { authorize } from '../../access/policy.js';
import type { Tx } from '../../db/client.js';
import { recordAudit } from '../audit/audit.service.js';
import type { TargetUser } from './acting-user.js';
import { lockForChange, originOf, type AdminCall, type AdminCtx, type ChangeOrigin } from './user-admin.service.js';
import { renderWaitingMailWithout } from '../mail/mention-erasure.js';
import { withdrawWaitingStatusMail } from '../mail/status-mail.js';

/**
 * Erases a former employee's account (GDPR Art. 17): an administrator (own organisation) or support,
 * for a user blocked before. The account row goes, and with it the password hash, the
 * authenticator secret, the recovery codes, the sessions and refresh tokens, the e-mail links and
 * the preferences; the outbox loses every mail about it or to its address that no worker is sending
 * right now (one being handed to SMTP is sent, and retention deletes its row later), also those to
 * addresses it had before or asked to move to. The address is free for a new invitation.
 *
 * What stays is the audit trail (append-only): rows about the account keep its id, and some keep
 * what they recorded then (the address and name an invitation was sent to, an address in a change
 * of address, a name in a renaming, IP addresses and browsers). They go after
 * AUDIT_RETENTION_DAYS. The `user.erased` row itself names nobody.
 */
export async function eraseUser(ctx: AdminCtx, call: AdminCall, userId: string): Promise<void> {
  await ctx.db.$transaction(async (tx) => {
    // Organisation row, then user row, as every change: an unblock or a sign-in waits, then finds nobody.
    const { acting, target } = await lockForChange(tx, call, userId);
    authorize(acting, 'user.erase', target, { blockedBySupport: target.blockedBySupport });
    await eraseUserInTx(tx, ctx, target, originOf(acting, call));
  });
}

/** The erasure itself, for a target the caller locked and authorised. */
export async function eraseUserInTx(tx: Tx, ctx: Pick<AdminCtx, 'clock' | 'config' | 'keyring'>, target: TargetUser, origin: ChangeOrigin): Promise<void> {
  // Its mails by account (any address it had or asked for), and rows older than that column by its
  // address: compared exactly as citext (Prisma's case-insensitive `equals` is an ILIKE, where `_`
  // matches anything). Not another account's mail to an address it had before this one took it.
  // A block mail still waiting for the budget goes first, giving back its place in the budget (dated ahead).
  // One a worker is handing to SMTP right now goes too: that attempt cannot be called back, but should
  // it fail, nothing is left to try again (the worker's writes find no row).
  const waitingDeleted = await withdrawWaitingStatusMail(tx, ctx.clock, [target.id]);
  const mailsDeleted = waitingDeleted + await tx.$executeRaw`
    DELETE FROM mail_outbox
     WHERE user_id = ${target.id}::uuid OR (user_id IS NULL AND to_address::citext = ${target.email}::citext)`;
  // Mails waiting for others that name it (who reset their authenticator, the administrators to ask).
  const mailsRewritten = await renderWaitingMailWithout(tx, ctx, target.id);
  // The links it sent lose their sender with it (requested_by_id SET NULL), like the operator's,
  // whose holders are told whom to ask; these stay marked as a sender's who lost the right to send
  // them (blocked first), so their holders learn no administrator's address (withContact).
  await tx.$executeRaw`UPDATE flow_tokens SET data = data || '{"requesterErased": true}'::jsonb WHERE requested_by_id = ${target.id}::uuid`;
  await tx.user.delete({ where: { id: target.id } });
  await recordAudit(tx, ctx.clock, {
    type: 'user.erased',
    actorUserId: origin.actorUserId,
    subjectUserId: target.id,
    organizationId: target.organizationId,
    meta: origin.meta,
    details: { by: origin.by, roles: target.roles, mailsDeleted, mailsRewritten },
  });
}
