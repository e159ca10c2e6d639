import { decideOnState, policyErrors, toError, type ChangeFacts, type UserAction } from '../../access/policy.js';
import type { Tx } from '../../db/client.js';
import { defineErrors } from '../../errors.js';
import { lockTarget, type TargetUser } from '../organization/acting-user.js';
import {
  blockUserInTx,
  resendActivationInTx,
  resetUserMfaInTx,
  unblockUserInTx,
  type AdminCtx,
} from '../organization/user-admin.service.js';
import { managedUserSelect, toManagedUser } from '../organization/users.query.js';
import { eraseUserInTx } from '../organization/erase-user.js';
import { withdrawInvitationInTx } from '../organization/withdraw-invitation.js';
import type { CliOrigin } from './cli-origin.js';

/**
 * The operator's commands for SUPPORT accounts (the CLI; the API refuses every change to them with
 * support_staff_protected). Each runs in one transaction: lock the account found by e-mail, make
 * sure it is support staff, let the policy decide on its state (decideOnState), then apply the very
 * change the API applies to other users (user-admin.service.ts), audited with the CLI's origin
 * (cliOrigin: no actor; the operator and their --reason in the details) and its mail in the outbox
 * of the same transaction.
 */

export const supportStaffErrors = defineErrors({
  not_support_staff: { status: 409, title: 'Not a SUPPORT account: manage this user through the API (their administrator or support)' },
  last_support_user: { status: 409, title: 'This is the last ACTIVE support user (--allow-last blocks it anyway)' },
});

/** The id of the SUPPORT user with this e-mail. Nothing grants or takes SUPPORT after the bootstrap, so no lock is needed yet. */
async function supportUserId(tx: Tx, email: string): Promise<string> {
  const found = await tx.user.findUnique({ where: { email }, select: { id: true, roles: true } });
  if (!found) throw policyErrors.user_not_found();
  if (!found.roles.includes('SUPPORT')) throw supportStaffErrors.not_support_staff();
  return found.id;
}

/** Locks the support user's row and decides on its state as committed now (and on `facts` about it). */
async function lockForOperator(tx: Tx, id: string, action: UserAction, facts: (target: TargetUser) => ChangeFacts = () => ({})): Promise<TargetUser> {
  const target = await lockTarget(tx, id);
  if (!target) throw policyErrors.user_not_found();
  const decision = decideOnState(action, target, facts(target));
  if (decision.effect !== 'allow') throw toError(decision, action);
  return target;
}

export async function listSupportUsers(ctx: AdminCtx) {
  const rows = await ctx.db.user.findMany({
    where: { roles: { has: 'SUPPORT' } },
    select: managedUserSelect,
    orderBy: [{ name: 'asc' }, { id: 'asc' }],
  });
  return rows.map(toManagedUser);
}

/** Only while INVITED: a new link (older ones void), mailed and returned for the operator. */
export async function resendSupportActivation(ctx: AdminCtx, email: string, origin: CliOrigin) {
  return ctx.db.$transaction(async (tx) => {
    const target = await lockForOperator(tx, await supportUserId(tx, email), 'user.resend_activation');
    return { userId: target.id, email: target.email, ...(await resendActivationInTx(tx, ctx, target, origin)) };
  });
}

/**
 * Refuses to block the last ACTIVE support user unless `allowLast` (someone must be left to run
 * the support desk; an operator can always bootstrap a new one). Every support row is locked first,
 * in id order, so two operators blocking the last two at once are serialised.
 */
export async function blockSupportUser(ctx: AdminCtx, email: string, options: { allowLast: boolean }, origin: CliOrigin) {
  return ctx.db.$transaction(async (tx) => {
    const id = await supportUserId(tx, email);
    await tx.$queryRaw`SELECT id FROM users WHERE 'SUPPORT' = ANY(roles) ORDER BY id FOR UPDATE`;
    const target = await lockForOperator(tx, id, 'user.block');
    if (target.status === 'ACTIVE' && !options.allowLast) {
      const others = await tx.user.count({ where: { roles: { has: 'SUPPORT' }, status: 'ACTIVE', id: { not: target.id } } });
      if (others === 0) throw supportStaffErrors.last_support_user();
    }
    return { userId: target.id, email: target.email, ...(await blockUserInTx(tx, ctx, target, origin)) };
  });
}

export async function unblockSupportUser(ctx: AdminCtx, email: string, origin: CliOrigin) {
  return ctx.db.$transaction(async (tx) => {
    const target = await lockForOperator(tx, await supportUserId(tx, email), 'user.unblock');
    return { userId: target.id, email: target.email, ...(await unblockUserInTx(tx, ctx, target, origin)) };
  });
}

/** Factor and recovery codes go, every session ends; the next login enrols a new authenticator. */
export async function resetSupportUserMfa(ctx: AdminCtx, email: string, origin: CliOrigin) {
  return ctx.db.$transaction(async (tx) => {
    const target = await lockForOperator(tx, await supportUserId(tx, email), 'user.mfa_reset');
    return { userId: target.id, email: target.email, ...(await resetUserMfaInTx(tx, ctx, target, origin)) };
  });
}

/**
 * A SUPPORT invitation nobody took up (a mistyped address): the account is deleted as the API
 * deletes other users' (withdrawInvitationInTx); never one that was activated.
 */
export async function withdrawSupportInvitation(ctx: AdminCtx, email: string, origin: CliOrigin) {
  return ctx.db.$transaction(async (tx) => {
    const target = await lockForOperator(tx, await supportUserId(tx, email), 'user.withdraw_invitation', (t) => ({ activated: t.passwordHash !== null }));
    return { userId: target.id, email: target.email, ...(await withdrawInvitationInTx(tx, ctx, target, origin)) };
  });
}

/**
 * A former support employee who asks to be forgotten (GDPR Art. 17), blocked before: erased as the
 * API erases other users (eraseUserInTx).
 */
export async function eraseSupportUser(ctx: AdminCtx, email: string, origin: CliOrigin) {
  return ctx.db.$transaction(async (tx) => {
    const target = await lockForOperator(tx, await supportUserId(tx, email), 'user.erase');
    await eraseUserInTx(tx, ctx, target, origin);
    return { userId: target.id };
  });
}
