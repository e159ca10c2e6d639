import type { Actor } from '../../access/actor.js';
import { authorize, policyErrors } from '../../access/policy.js';
import type { AppContext } from '../../context.js';
import type { Tx } from '../../db/client.js';
import type { Role } from '../../generated/prisma/enums.js';
import type { Language } from '../../lib/languages.js';
import { recordAudit, recordManyAudits, type AuditEventType, type AuditInput, type RequestMeta } from '../audit/audit.service.js';
import { spendMailBudget } from '../mail/mail-budget.js';
import { enqueueStatusMail, withdrawWaitingStatusMail } from '../mail/status-mail.js';
import { voidFlows, withdrawFlowsRequestedBy, withdrawFlowsRequestedByAll, type WithdrawnLink } from '../flows/flow-tokens.js';
import { mfaErrors } from '../mfa/mfa.errors.js';
import { revokeSessionsOf, revokeUserSessions } from '../sessions/revoke.js';
import { countActiveAdministrators, countOtherAdministrators, findTarget, loadActingUser, lockOrganization, lockTarget, type ActingUser, type TargetUser } from './acting-user.js';
import { administratorsToAsk, enqueueMail, hasMfaToReset, removeMfa, sendActivation, sendPasswordResetMail } from './dependencies.js';
import { refuseHeldAddress } from '../email-change/held-address.js';
import { isEmailTaken, organizationErrors } from './organization.errors.js';
import type { ManagedUser } from './organization.schemas.js';
import { findManagedUser, listUsers, toManagedUser, type UserFilter } from './users.query.js';

/**
 * Administration of one user by someone else: a customer administrator (own organisation) or
 * support (any organisation). Each function runs in one transaction: load the acting user as
 * stored now, lock and load the target, let the policy decide, apply the change, write the audit
 * row and queue the mail. Nothing here returns or accepts a password, code or secret.
 */

export type AdminCtx = Pick<AppContext, 'db' | 'clock' | 'config' | 'keyring'>;
export type AdminCall = { actor: Pick<Actor, 'userId'>; meta: RequestMeta };

/** Every kind of flow a user could still complete; all void when the user is blocked. */
const ALL_FLOWS = ['LOGIN_CHALLENGE', 'ACTIVATION', 'PASSWORD_RESET', 'MFA_RESET', 'EMAIL_CHANGE'] as const;

/** USER is every member's base role; the set is stored in a canonical order. */
export function normalizeRoles(roles: readonly Role[] | undefined): Role[] {
  const wanted = new Set<Role>(['USER', ...(roles ?? [])]);
  return (['USER', 'CUSTOMER_ADMIN', 'SUPPORT'] as const).filter((r) => wanted.has(r));
}

function actingAs(acting: ActingUser): 'support' | 'admin' {
  return acting.roles.includes('SUPPORT') ? 'support' : 'admin';
}

/**
 * Who makes a change, for its audit row and mail: a signed-in administrator or support user whom
 * the policy allowed, or the operator at the command line (`by: 'cli'`, no actor, like the
 * bootstrap). The `...InTx` functions below apply a change for either, on a target the caller
 * locked (lockForChange / lockTarget) and authorised.
 */
export type ChangeOrigin = { actorUserId: string | null; actorName: string | null; by: 'admin' | 'support' | 'cli'; meta: RequestMeta };

export function originOf(acting: ActingUser, call: AdminCall): ChangeOrigin {
  return { actorUserId: acting.userId, actorName: acting.name, by: actingAs(acting), meta: call.meta };
}

/** The audit row of a change made by `origin` to `target`; its details always say `by` whom. */
export function auditChange(tx: Tx, ctx: AdminCtx, type: AuditEventType, target: TargetUser, origin: ChangeOrigin, details: Record<string, unknown>) {
  return recordAudit(tx, ctx.clock, {
    type,
    actorUserId: origin.actorUserId,
    subjectUserId: target.id,
    organizationId: target.organizationId,
    meta: origin.meta,
    details: { by: origin.by, ...details },
  });
}

export async function reloadManagedUser(tx: Tx, id: string): Promise<ManagedUser> {
  const row = await findManagedUser(tx, id);
  if (!row) throw policyErrors.user_not_found();
  return toManagedUser(row);
}

/**
 * Locks the target (organisation row, then user row) and only then reads the acting user: every
 * change to an organisation's roles holds that lock, so an administrator demoted by a concurrent
 * request is seen as demoted here.
 */
export async function lockForChange(tx: Tx, call: AdminCall, id: string): Promise<{ acting: ActingUser; target: TargetUser }> {
  await loadActingUser(tx, call.actor); // fail fast when the caller is gone
  const target = await lockTarget(tx, id);
  if (!target) throw policyErrors.user_not_found();
  return { acting: await loadActingUser(tx, call.actor), target };
}

/**
 * The organisation's administrators besides `target` for the last-administrator rule of a block, a
 * demotion or a withdrawal at `now` (acting-user.ts `countOtherAdministrators`: invitees count only
 * while they can still activate, and not with a link `target` sent, which the change withdraws).
 */
export async function otherAdministrators(tx: Tx, target: TargetUser, now: Date): Promise<number> {
  return target.organizationId ? countOtherAdministrators(tx, target.organizationId, target.id, now) : 0;
}

export async function getUser(ctx: AdminCtx, call: AdminCall, userId: string): Promise<ManagedUser> {
  return ctx.db.$transaction(async (tx) => {
    const acting = await loadActingUser(tx, call.actor);
    const target = await findTarget(tx, userId);
    if (!target) throw policyErrors.user_not_found();
    authorize(acting, 'user.read', target);
    return reloadManagedUser(tx, userId);
  });
}

/** `own` means the acting user's organisation, as stored now (never taken from the request). */
export type OrganizationRef = string | 'own';

function resolveOrganization(acting: ActingUser, ref: OrganizationRef): string {
  if (ref !== 'own') return ref;
  if (!acting.organizationId) throw policyErrors.forbidden('Only members of an organisation administer one.');
  return acting.organizationId;
}

export async function listOrganizationUsers(
  ctx: AdminCtx,
  call: AdminCall,
  ref: OrganizationRef,
  filter: Omit<UserFilter, 'organizationId'>,
  pageQuery: { limit: number; cursor?: string | undefined },
) {
  return ctx.db.$transaction(async (tx) => {
    const acting = await loadActingUser(tx, call.actor);
    const organizationId = resolveOrganization(acting, ref);
    authorize(acting, 'organization.users.list', { organizationId });
    return listUsers(tx, { ...filter, organizationId }, pageQuery);
  });
}

/** `language`: of the user's mails; unset, the organisation's (if it has one). */
export type InviteInput = { email: string; name: string; roles?: readonly Role[] | undefined; language?: Language | undefined };

/**
 * Creates an INVITED user and queues the activation mail. The e-mail's global uniqueness is the
 * database's citext unique constraint: 409 email_taken, whichever organisation holds it.
 */
export async function inviteUserInTx(
  tx: Tx,
  ctx: Pick<AppContext, 'clock' | 'config' | 'keyring'>,
  input: InviteInput & { organization: { id: string; name: string; language: Language | null }; actorUserId: string | null; meta: RequestMeta; via: ChangeOrigin['by'] },
): Promise<{ user: ManagedUser; activation: { link: string; expiresAt: Date } }> {
  await spendMailBudget(tx, ctx.clock, input.email, 'activation');
  const roles = normalizeRoles(input.roles);
  const now = ctx.clock.now();
  const user = await tx.user.create({
    data: {
      email: input.email,
      name: input.name,
      organizationId: input.organization.id,
      roles,
      language: input.language ?? input.organization.language,
      status: 'INVITED',
      createdAt: now,
    },
    select: { id: true, email: true, name: true, language: true },
  });
  await refuseHeldAddress(tx, ctx.clock, user);
  const activation = await sendActivation(tx, ctx, { user, organizationName: input.organization.name, actorUserId: input.actorUserId, by: input.via });
  await recordAudit(tx, ctx.clock, {
    type: 'user.invited',
    actorUserId: input.actorUserId,
    subjectUserId: user.id,
    organizationId: input.organization.id,
    meta: input.meta,
    // The address and name as invited: the trail of an invitation outlives an erasure of the invitee
    // (an accomplice's address is what an incident responder looks for).
    details: { roles, via: input.via, email: user.email, name: user.name },
  });
  return { user: await reloadManagedUser(tx, user.id), activation };
}

export async function inviteUser(ctx: AdminCtx, call: AdminCall, ref: OrganizationRef, input: InviteInput): Promise<ManagedUser> {
  try {
    return await ctx.db.$transaction(async (tx) => {
      const organizationId = resolveOrganization(await loadActingUser(tx, call.actor), ref);
      // Same lock as every role change (lockForChange): a concurrent demotion/block is seen here.
      if (!(await lockOrganization(tx, organizationId))) throw policyErrors.organization_not_found();
      const acting = await loadActingUser(tx, call.actor);
      const organization = await tx.organization.findUnique({ where: { id: organizationId }, select: { id: true, name: true, language: true, suspendedAt: true } });
      authorize(acting, 'user.invite', { organizationId }, { roles: normalizeRoles(input.roles), organizationSuspended: Boolean(organization?.suspendedAt) });
      if (!organization) throw policyErrors.organization_not_found();
      const { user } = await inviteUserInTx(tx, ctx, { ...input, organization, actorUserId: acting.userId, meta: call.meta, via: actingAs(acting) });
      return user;
    });
  } catch (err) {
    if (isEmailTaken(err)) throw organizationErrors.email_taken();
    throw err;
  }
}

export async function resendActivation(ctx: AdminCtx, call: AdminCall, userId: string): Promise<ManagedUser> {
  return ctx.db.$transaction(async (tx) => {
    const { acting, target } = await lockForChange(tx, call, userId);
    authorize(acting, 'user.resend_activation', target);
    await spendMailBudget(tx, ctx.clock, target.email, 'activation');
    await resendActivationInTx(tx, ctx, target, originOf(acting, call));
    return reloadManagedUser(tx, target.id);
  });
}

/**
 * A new activation link (older ones void) and its mail; returns the link (only the CLI shows it).
 * `details` are added to the audit row. `mailBy`: whom the mail names for a further link (the
 * activation template's `by`), by default whoever sends this one.
 */
export async function resendActivationInTx(
  tx: Tx,
  ctx: AdminCtx,
  target: TargetUser,
  origin: ChangeOrigin,
  details: Record<string, unknown> = {},
  mailBy: ChangeOrigin['by'] = origin.by,
): Promise<{ link: string; expiresAt: Date }> {
  const activation = await sendActivation(tx, ctx, {
    user: target,
    organizationName: target.organization?.name ?? null,
    actorUserId: origin.actorUserId,
    by: mailBy,
  });
  await auditChange(tx, ctx, 'user.activation_resent', target, origin, details);
  return activation;
}

/** Blocks a user: no login, no refresh, every session and pending link ends now; the user is told. */
export async function blockUser(ctx: AdminCtx, call: AdminCall, userId: string): Promise<ManagedUser> {
  return ctx.db.$transaction(async (tx) => {
    const { acting, target } = await lockForChange(tx, call, userId);
    await blockLockedUser(tx, ctx, call, acting, target);
    return reloadManagedUser(tx, target.id);
  });
}

/**
 * The block as an administrator or support user asks for it, for a target locked as lockForChange
 * does (organisation row, then user row): the policy decides on the administrators counted now,
 * then blockUserInTx. `details` are added to the audit row (e.g. why it happened).
 */
export async function blockLockedUser(
  tx: Tx,
  ctx: AdminCtx,
  call: AdminCall,
  acting: ActingUser,
  target: TargetUser,
  details: Record<string, unknown> = {},
): Promise<void> {
  authorize(acting, 'user.block', target, { otherAdministrators: await otherAdministrators(tx, target, ctx.clock.now()), blockedBySuspension: target.blockedBySuspension });
  await blockUserInTx(tx, ctx, target, originOf(acting, call), details);
}

/** What an audit row records of withdrawn links (block, demotion): holder and kind, not the address. */
const auditedLinks = (links: WithdrawnLink[]) => links.map(({ userId, purpose }) => ({ userId, purpose }));

/**
 * The block itself, authorised by the caller: status, sessions, the user's own pending links and
 * those the user sent to others (withdrawn), mail, audit row. Returns how many sessions ended and
 * the links to others that were withdrawn (the audit row lists their holders and purposes).
 */
export async function blockUserInTx(
  tx: Tx,
  ctx: AdminCtx,
  target: TargetUser,
  origin: ChangeOrigin,
  details: Record<string, unknown> = {},
): Promise<{ sessionsRevoked: number; linksWithdrawn: WithdrawnLink[] }> {
  return (await blockUsersInTx(tx, ctx, [target], origin, details)).get(target.id)!;
}

/**
 * blockUserInTx for many users at once, in a handful of statements whatever their number (an
 * organisation's suspension: `bySuspension`, which marks them so that its reinstatement unblocks
 * exactly them, and mails nobody). Each user gets their own `user.blocked` audit row.
 */
export async function blockUsersInTx(
  tx: Tx,
  ctx: AdminCtx,
  targets: readonly TargetUser[],
  origin: ChangeOrigin,
  details: Record<string, unknown> = {},
  options: { bySuspension?: boolean } = {},
): Promise<Map<string, { sessionsRevoked: number; linksWithdrawn: WithdrawnLink[] }>> {
  const ids = targets.map((t) => t.id);
  await tx.user.updateMany({
    where: { id: { in: ids } },
    data: {
      status: 'BLOCKED',
      blockedAt: ctx.clock.now(),
      blockedBySuspension: options.bySuspension ?? false,
      // A suspension's blocks are lifted by its reinstatement, not by anyone's unblock.
      blockedBySupport: origin.by === 'support' && !options.bySuspension,
    },
  });
  const ended = await revokeSessionsOf(tx, ctx.clock, ids, 'user_blocked');
  // Links they sent to others first: among many targets (a suspension) a link one sent another is
  // withdrawn and audited as such, not merely voided as the holder's own.
  const withdrawn = await withdrawFlowsRequestedByAll(tx, ctx.clock, ids);
  await voidFlows(tx, ids, [...ALL_FLOWS]);
  const sessionsRevoked = new Map<string, number>();
  for (const { userId } of ended) sessionsRevoked.set(userId, (sessionsRevoked.get(userId) ?? 0) + 1);
  const results = new Map(ids.map((id) => [id, { sessionsRevoked: sessionsRevoked.get(id) ?? 0, linksWithdrawn: withdrawn.get(id) ?? [] }]));
  // A suspension blocks the whole organisation; whether its people are told is the shop's to decide.
  // An unblock mail still waiting for the budget ("you can sign in again") would be wrong now: withdrawn.
  if (options.bySuspension) {
    await withdrawWaitingStatusMail(tx, ctx.clock, ids);
  } else {
    for (const target of targets) {
      await enqueueStatusMail(tx, ctx, {
        to: target,
        template: 'account_blocked',
        data: { name: target.name, administrators: await administratorsToAsk(tx, target, origin.by === 'support') },
      });
    }
  }
  const audits = targets.map((target): AuditInput => {
    const { sessionsRevoked, linksWithdrawn } = results.get(target.id)!;
    return {
      type: 'user.blocked',
      actorUserId: origin.actorUserId,
      subjectUserId: target.id,
      organizationId: target.organizationId,
      meta: origin.meta,
      details: { by: origin.by, sessionsRevoked, linksWithdrawn: auditedLinks(linksWithdrawn), ...details },
    };
  });
  await recordManyAudits(tx, ctx.clock, audits);
  return results;
}

/** Unblocks: back to ACTIVE, or to INVITED when the account was never activated. */
export async function unblockUser(ctx: AdminCtx, call: AdminCall, userId: string): Promise<ManagedUser> {
  return ctx.db.$transaction(async (tx) => {
    const { acting, target } = await lockForChange(tx, call, userId);
    authorize(acting, 'user.unblock', target, { organizationSuspended: Boolean(target.organization?.suspendedAt), blockedBySupport: target.blockedBySupport });
    // A user who never activated gets a new invitation (unblockUserInTx): block, unblock, again must not mail without limit.
    if (!target.passwordHash) await spendMailBudget(tx, ctx.clock, target.email, 'activation');
    await unblockUserInTx(tx, ctx, target, originOf(acting, call));
    return reloadManagedUser(tx, target.id);
  });
}

/**
 * Returns the status the user is back to. An ACTIVE user is told they can sign in again. A user who
 * never activated is back to INVITED without a link (the block voided it), so they get a fresh
 * invitation instead (returned: only the CLI shows it).
 */
export async function unblockUserInTx(
  tx: Tx,
  ctx: AdminCtx,
  target: TargetUser,
  origin: ChangeOrigin,
  details: Record<string, unknown> = {},
): Promise<{ status: 'ACTIVE' | 'INVITED'; activation?: { link: string; expiresAt: Date } }> {
  const status = target.passwordHash ? 'ACTIVE' : 'INVITED';
  await tx.user.update({ where: { id: target.id }, data: { status, blockedAt: null, blockedBySuspension: false, blockedBySupport: false } });
  await auditChange(tx, ctx, 'user.unblocked', target, origin, { status, ...details });
  if (status === 'INVITED') {
    // Whom the invitation names for a further link: the organisation's administrators when it has an
    // active one (support's unblock or a reinstatement renews a member's invitation, but only
    // administrators resend one), support when it has none.
    const administrators = target.organizationId && origin.by === 'support' ? await countActiveAdministrators(tx, target.organizationId, target.id) : 0;
    const mailBy = administrators > 0 ? 'admin' : origin.by;
    // The new invitation tells them where they stand: a "blocked" mail still waiting would contradict it.
    await withdrawWaitingStatusMail(tx, ctx.clock, [target.id]);
    return { status, activation: await resendActivationInTx(tx, ctx, { ...target, status }, origin, { via: 'unblocked' }, mailBy) };
  }
  await enqueueStatusMail(tx, ctx, { to: target, template: 'account_unblocked', data: { name: target.name } });
  return { status };
}

/**
 * A customer administrator (or the operator, for support staff) resets a user's MFA (the user
 * cannot log in, e.g. lost phone): factor and recovery codes go, every session ends, the next login
 * leads to enrolment, and the user is told who did it.
 */
export async function resetUserMfa(ctx: AdminCtx, call: AdminCall, userId: string): Promise<ManagedUser> {
  return ctx.db.$transaction(async (tx) => {
    const { acting, target } = await lockForChange(tx, call, userId);
    authorize(acting, 'user.mfa_reset', target);
    await resetUserMfaInTx(tx, ctx, target, originOf(acting, call));
    return reloadManagedUser(tx, target.id);
  });
}

/** 409 mfa_not_enrolled when there is nothing to reset (hasMfaToReset); returns how many sessions ended. */
export async function resetUserMfaInTx(tx: Tx, ctx: AdminCtx, target: TargetUser, origin: ChangeOrigin): Promise<{ sessionsRevoked: number }> {
  if (!(await hasMfaToReset(tx, target.id, ctx.clock.now()))) throw mfaErrors.mfa_not_enrolled();
  // Factor, recovery codes, pending challenges and every session go; the next login enrols.
  const { revokedSessions: sessionsRevoked } = await removeMfa(tx, ctx, target.id, { reason: 'mfa_reset_by_admin' });
  // A pending support-verified reset is moot now.
  await voidFlows(tx, target.id, ['MFA_RESET']);
  await enqueueMail(tx, ctx, {
    to: target,
    template: 'mfa_removed',
    data: { name: target.name, by: origin.by, ...(origin.actorName && origin.actorUserId ? { actorName: origin.actorName, actorId: origin.actorUserId } : {}) },
  });
  await auditChange(tx, ctx, 'mfa.reset_by_admin', target, origin, { sessionsRevoked });
  return { sessionsRevoked };
}

/** Sends the user a password-reset link; the administrator never sees or sets a password. */
export async function triggerPasswordReset(ctx: AdminCtx, call: AdminCall, userId: string): Promise<ManagedUser> {
  return ctx.db.$transaction(async (tx) => {
    const { acting, target } = await lockForChange(tx, call, userId);
    authorize(acting, 'user.password_reset', target);
    await spendMailBudget(tx, ctx.clock, target.email, 'password_reset');
    await sendPasswordResetMail(tx, ctx, { user: target, actorUserId: acting.userId, by: actingAs(acting), actorName: acting.name });
    await recordAudit(tx, ctx.clock, {
      type: 'password.reset_requested',
      actorUserId: acting.userId,
      subjectUserId: target.id,
      organizationId: target.organizationId,
      meta: call.meta,
      details: { by: actingAs(acting) },
    });
    return reloadManagedUser(tx, target.id);
  });
}

/**
 * Sets a user's roles (USER is always kept). Demotion ends the user's sessions, so tokens that
 * still carry CUSTOMER_ADMIN stop refreshing and introspect as inactive at once, and withdraws the
 * links the user sent to others as an administrator (invitations, reset mails), as a block does:
 * they were sent with a right the user no longer has. The audit row lists their holders.
 */
export async function setUserRoles(ctx: AdminCtx, call: AdminCall, userId: string, requested: readonly Role[]): Promise<ManagedUser> {
  return ctx.db.$transaction(async (tx) => {
    const { acting, target } = await lockForChange(tx, call, userId);
    const roles = normalizeRoles(requested);
    authorize(acting, 'user.set_roles', target, { roles, otherAdministrators: await otherAdministrators(tx, target, ctx.clock.now()) });
    const before = normalizeRoles(target.roles);
    if (before.length === roles.length && before.every((r, i) => r === roles[i])) return reloadManagedUser(tx, target.id);
    await tx.user.update({ where: { id: target.id }, data: { roles } });
    const demoted = before.includes('CUSTOMER_ADMIN') && !roles.includes('CUSTOMER_ADMIN');
    const sessionsRevoked = demoted ? await revokeUserSessions(tx, ctx.clock, target.id, 'roles_reduced') : 0;
    const linksWithdrawn = demoted ? await withdrawFlowsRequestedBy(tx, ctx.clock, target.id) : [];
    await recordAudit(tx, ctx.clock, {
      type: 'user.roles_changed',
      actorUserId: acting.userId,
      subjectUserId: target.id,
      organizationId: target.organizationId,
      meta: call.meta,
      details: {
        from: before,
        to: roles,
        sessionsRevoked,
        ...(demoted ? { linksWithdrawn: auditedLinks(linksWithdrawn) } : {}),
      },
    });
    return reloadManagedUser(tx, target.id);
  });
}
