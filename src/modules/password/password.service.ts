import type { Actor } from '../../access/actor.js';
import type { AppContext } from '../../context.js';
import type { Tx } from '../../db/client.js';
import { recordAudit, type RequestMeta } from '../audit/audit.service.js';
import { accountBlockedError, blockedLinkHolder } from '../accounts/blocked.js';
import { CLEARED_PASSWORD_LOCKOUT } from '../accounts/password-lockout.js';
import { hashNewPassword, passwordContext } from '../accounts/passwords.js';
import { inReauthenticatedTransaction, reauthenticate } from '../accounts/reauthenticate.js';
import { lockUserRow } from '../accounts/user-lock.js';
import { consumeFlow, findUsableFlow, flowErrors, issueFlowToken, voidFlows } from '../flows/flow-tokens.js';
import { buildLink, enqueueMail, LINK_PATHS, type MailRecipient } from '../mail/mail.service.js';
import { findActiveFactor } from '../mfa/factors.js';
import { revokeUserSessions } from '../sessions/revoke.js';
import type { Language } from '../../lib/languages.js';
import { PASSWORD_POLICY } from '../../lib/password-policy.js';

/** Reset links live 30 minutes (security.md item 14). */
export const PASSWORD_RESET_TTL_SECONDS = 30 * 60;

type Ctx = Pick<AppContext, 'db' | 'pool' | 'clock' | 'config' | 'hasher' | 'keyring'>;

/**
 * Issues a password-reset link (voiding older ones) and queues the mail in the caller's
 * transaction, for administrators and support ("send a reset mail"), who never see or set the
 * password; the mail names who sent it ("forgot password" is forgot-password.ts). The caller
 * records the audit event.
 */
export async function sendPasswordResetMail(
  tx: Tx,
  ctx: Pick<AppContext, 'config' | 'clock' | 'keyring'>,
  input: { user: MailRecipient & { id: string; name: string }; actorUserId: string | null; by: 'admin' | 'support'; actorName: string },
): Promise<{ expiresAt: Date }> {
  const { token, flow } = await issueFlowToken(tx, ctx.clock, {
    userId: input.user.id,
    purpose: 'PASSWORD_RESET',
    ttlSeconds: PASSWORD_RESET_TTL_SECONDS,
    requestedById: input.actorUserId,
  });
  await enqueueMail(tx, ctx, {
    to: input.user,
    template: 'password_reset',
    data: {
      name: input.user.name,
      link: buildLink(ctx.config, LINK_PATHS.passwordReset, token),
      expiresAt: flow.expiresAt,
      mfaEnrolled: (await findActiveFactor(tx, input.user.id)) !== null,
      by: input.by,
      actorName: input.actorName,
      ...(input.actorUserId ? { actorId: input.actorUserId } : {}),
    },
  });
  return { expiresAt: flow.expiresAt };
}

/** A reset link that may be used now, and its account; the errors the reset would answer otherwise. */
async function usableReset(ctx: Pick<AppContext, 'db' | 'clock' | 'config'>, token: string) {
  const flow = await findUsableFlow(ctx.db, ctx.clock, token, 'PASSWORD_RESET', blockedLinkHolder(ctx.db, ctx.config));
  const user = await ctx.db.user.findUnique({
    where: { id: flow.userId },
    select: { id: true, email: true, name: true, language: true, status: true, organizationId: true, organization: { select: { name: true } } },
  });
  if (!user || user.status === 'INVITED') throw flowErrors.link_invalid();
  if (user.status === 'BLOCKED') throw await accountBlockedError(ctx.db, ctx.config, user);
  return { flow, user };
}

export type ResetLinkInfo = { email: string; language: Language; expiresAt: string; passwordPolicy: { minLength: number; maxLength: number } };

/**
 * What the reset page shows before the user types a new password (as the activation page does):
 * whose account and until when; a used, replaced, expired or blocked link answers as the reset
 * would. Cheap (no hashing), and it does not use the link up.
 */
export async function inspectReset(ctx: Pick<AppContext, 'db' | 'clock' | 'config'>, token: string): Promise<ResetLinkInfo> {
  const { flow, user } = await usableReset(ctx, token);
  return {
    email: user.email,
    language: user.language ?? ctx.config.defaultLanguage,
    expiresAt: flow.expiresAt.toISOString(),
    passwordPolicy: PASSWORD_POLICY,
  };
}

/**
 * Sets a new password with a reset link. Ends every session and refresh token of the user, lifts a
 * password lock, leaves MFA alone and does not sign in (the user logs in with password and code).
 */
export async function resetPassword(ctx: Ctx, input: { token: string; password: string }, meta: RequestMeta): Promise<void> {
  const { flow, user } = await usableReset(ctx, input.token);
  const passwordHash = await hashNewPassword(ctx, input.password, passwordContext(ctx.config, user, user.organization?.name));

  await ctx.db.$transaction(async (tx) => {
    // Lock order user → flows (accounts/user-lock.ts): a block committing meanwhile voids this link
    // first, and then it is link_used here (not a deadlock, not a password set on a blocked account).
    await lockUserRow(tx, user.id);
    await consumeFlow(tx, ctx.clock, flow);
    await tx.user.update({
      where: { id: user.id },
      data: { passwordHash, passwordChangedAt: ctx.clock.now(), ...CLEARED_PASSWORD_LOCKOUT },
    });
    const sessionsRevoked = await revokeUserSessions(tx, ctx.clock, user.id, 'password_reset');
    // A login half-done with the old password must not be finished with it, nor an address change
    // asked for with it (by whoever knew it) be confirmed.
    await voidFlows(tx, user.id, ['LOGIN_CHALLENGE', 'PASSWORD_RESET', 'EMAIL_CHANGE']);
    await enqueueMail(tx, ctx, { to: user, template: 'password_changed', data: { name: user.name, sessionsEnded: 'all' } });
    await recordAudit(tx, ctx.clock, {
      type: 'password.reset_completed',
      actorUserId: user.id,
      subjectUserId: user.id,
      organizationId: user.organizationId,
      meta,
      details: { sessionsRevoked, requestedBy: flow.requestedById ?? 'self' },
    });
  });
}

/**
 * A signed-in user changes the password; the current one is required (re-authentication). Wrong
 * current passwords count towards the account's password lockout like failed logins. Ends every
 * other session of the user (this one stays), notification mail.
 */
export async function changePassword(
  ctx: Ctx,
  actor: Actor,
  input: { currentPassword: string; newPassword: string },
  meta: RequestMeta,
): Promise<void> {
  const user = await reauthenticate(ctx, actor.userId, input.currentPassword, meta, 'change_password');
  const passwordHash = await hashNewPassword(ctx, input.newPassword, passwordContext(ctx.config, user, user.organization?.name));

  await inReauthenticatedTransaction(ctx, user, meta, async (tx) => {
    await tx.user.update({
      where: { id: user.id },
      data: { passwordHash, passwordChangedAt: ctx.clock.now(), ...CLEARED_PASSWORD_LOCKOUT },
    });
    const sessionsRevoked = await revokeUserSessions(tx, ctx.clock, user.id, 'password_changed', { exceptSessionId: actor.sessionId });
    await voidFlows(tx, user.id, ['LOGIN_CHALLENGE', 'PASSWORD_RESET', 'EMAIL_CHANGE']);
    await enqueueMail(tx, ctx, { to: user, template: 'password_changed', data: { name: user.name, sessionsEnded: 'others' } });
    await recordAudit(tx, ctx.clock, {
      type: 'password.changed',
      actorUserId: user.id,
      subjectUserId: user.id,
      organizationId: user.organizationId,
      meta,
      details: { sessionsRevoked },
    });
  });
}
