import { authorize, policyErrors } from '../../access/policy.js';
import type { AppContext } from '../../context.js';
import type { Tx } from '../../db/client.js';
import { accountBlockedError, blockedLinkHolder } from '../accounts/blocked.js';
import { lockUserRow } from '../accounts/user-lock.js';
import { recordAudit, type RequestMeta } from '../audit/audit.service.js';
import { consumeFlow, findUsableFlow, issueFlowToken, usedLinkError } from '../flows/flow-tokens.js';
import { spendMailBudget } from '../mail/mail-budget.js';
import { mfaErrors } from '../mfa/mfa.errors.js';
import { findTarget, loadActingUser } from '../organization/acting-user.js';
import { buildLink, enqueueMail, hasMfaToReset, LINK_PATHS, removeMfa } from '../organization/dependencies.js';
import { lockForChange, type AdminCall, type AdminCtx } from '../organization/user-admin.service.js';

/**
 * The support-verified MFA reset (product rule 11). Support cannot reset a factor directly: it
 * starts a request, the user gets a single-use link (24 h) at the address stored for the account,
 * and only opening it resets the MFA. Support sees the request's state, never a token or link.
 */

export const MFA_RESET_TTL_SECONDS = 24 * 3600;

export type MfaResetRequestView = {
  state: 'none' | 'pending' | 'confirmed' | 'expired' | 'voided';
  requestedAt: string | null;
  expiresAt: string | null;
  confirmedAt: string | null;
  requestedBy: { id: string; name: string } | null;
};

async function latestRequest(tx: Tx, now: Date, userId: string): Promise<MfaResetRequestView> {
  const flow = await tx.flowToken.findFirst({
    where: { userId, purpose: 'MFA_RESET' },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    include: { requestedBy: { select: { id: true, name: true } } },
  });
  if (!flow) return { state: 'none', requestedAt: null, expiresAt: null, confirmedAt: null, requestedBy: null };
  const state =
    flow.state === 'CONSUMED' ? 'confirmed' : flow.state === 'VOIDED' ? 'voided' : flow.expiresAt <= now ? 'expired' : 'pending';
  return {
    state,
    requestedAt: flow.createdAt.toISOString(),
    expiresAt: flow.expiresAt.toISOString(),
    confirmedAt: flow.consumedAt?.toISOString() ?? null,
    requestedBy: flow.requestedBy,
  };
}

/** Starts a verified reset: the confirmation link goes to the user's stored address only. */
export async function requestMfaReset(ctx: AdminCtx, call: AdminCall, userId: string): Promise<MfaResetRequestView> {
  return ctx.db.$transaction(async (tx) => {
    const { acting, target } = await lockForChange(tx, call, userId);
    authorize(acting, 'user.mfa_reset_request', target);
    // A factor, or a code lock during the set-up (hasMfaToReset). Should the user finish a set-up
    // before confirming, its activation voids this link (activatePendingFactor), so the link
    // never removes the factor set up after it was sent.
    if (!(await hasMfaToReset(tx, target.id, ctx.clock.now()))) throw mfaErrors.mfa_not_enrolled();
    // Five confirmation links an hour per address, like every mail sent to an address on others' request.
    await spendMailBudget(tx, ctx.clock, target.email, 'mfa_reset_confirm');
    // A new request voids an older pending one (issueFlowToken), so only the newest link works.
    const { token, flow } = await issueFlowToken(tx, ctx.clock, {
      userId: target.id,
      purpose: 'MFA_RESET',
      ttlSeconds: MFA_RESET_TTL_SECONDS,
      requestedById: acting.userId,
    });
    await enqueueMail(tx, ctx, {
      to: target,
      template: 'mfa_reset_confirm',
      data: { name: target.name, link: buildLink(ctx.config, LINK_PATHS.mfaResetConfirm, token), expiresAt: flow.expiresAt },
    });
    await recordAudit(tx, ctx.clock, {
      type: 'mfa.reset_requested',
      actorUserId: acting.userId,
      subjectUserId: target.id,
      organizationId: target.organizationId,
      meta: call.meta,
      details: { expiresAt: flow.expiresAt.toISOString() },
    });
    return latestRequest(tx, ctx.clock.now(), target.id);
  });
}

export async function getMfaResetRequest(ctx: AdminCtx, call: AdminCall, userId: string): Promise<MfaResetRequestView> {
  return ctx.db.$transaction(async (tx) => {
    const acting = await loadActingUser(tx, call.actor);
    const target = await findTarget(tx, userId);
    if (!target) throw policyErrors.user_not_found();
    authorize(acting, 'user.mfa_reset_request.read', target);
    return latestRequest(tx, ctx.clock.now(), target.id);
  });
}

/**
 * The user confirms from the e-mail (public, the token is the credential). The flow is consumed
 * first, in the transaction that removes the MFA: of two concurrent confirmations exactly one
 * wins, and the loser's transaction (and its mail) rolls back.
 */
export async function confirmMfaReset(ctx: Pick<AppContext, 'db' | 'clock' | 'config' | 'keyring'>, token: string, meta: RequestMeta): Promise<void> {
  await ctx.db.$transaction(async (tx) => {
    // The holder of a link that a block voided learns that the account is blocked and whom to contact (rule 13).
    const flow = await findUsableFlow(tx, ctx.clock, token, 'MFA_RESET', blockedLinkHolder(tx, ctx.config));
    // Lock order user → flows (accounts/user-lock.ts), like blocking, which voids this link.
    await lockUserRow(tx, flow.userId);
    await consumeFlow(tx, ctx.clock, flow);
    const user = await tx.user.findUnique({ where: { id: flow.userId }, select: { id: true, email: true, name: true, language: true, status: true, organizationId: true } });
    if (!user) throw usedLinkError();
    // Blocking voids pending requests; this only guards against a block that raced the click.
    if (user.status === 'BLOCKED') throw await accountBlockedError(tx, ctx.config, user);
    const { revokedSessions } = await removeMfa(tx, ctx, user.id, { reason: 'mfa_reset_by_support' });
    await enqueueMail(tx, ctx, { to: user, template: 'mfa_reset_done', data: { name: user.name } });
    await recordAudit(tx, ctx.clock, {
      type: 'mfa.reset_confirmed',
      actorUserId: user.id,
      subjectUserId: user.id,
      organizationId: user.organizationId,
      meta,
      details: { requestedById: flow.requestedById, sessionsRevoked: revokedSessions },
    });
  });
}
