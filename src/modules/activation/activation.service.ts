import type { AppContext } from '../../context.js';
import type { ChangeOrigin } from '../organization/user-admin.service.js';
import type { Tx } from '../../db/client.js';
import { recordAudit, type RequestMeta } from '../audit/audit.service.js';
import { accountBlockedError, blockedContact, blockedLinkHolder, contactText } from '../accounts/blocked.js';
import { AppError } from '../../errors.js';
import { sha256Hex } from '../../lib/tokens.js';
import { CLEARED_PASSWORD_LOCKOUT } from '../accounts/password-lockout.js';
import { hashNewPassword, passwordContext } from '../accounts/passwords.js';
import { lockUserRow } from '../accounts/user-lock.js';
import { consumeFlow, findUsableFlow, flowErrors, issueFlowToken } from '../flows/flow-tokens.js';
import { issueChallengeAfterPassword, type LoginChallenge } from '../login/challenge.js';
import { buildLink, enqueueMail, LINK_PATHS, type MailRecipient } from '../mail/mail.service.js';
import { PASSWORD_POLICY } from '../../lib/password-policy.js';
import { findUsableActivationLink, type UsableActivationLink } from './usable-activation-link.js';
import type { Language } from '../../lib/languages.js';

/** Activation links live 7 days (security.md item 14). */
export const ACTIVATION_TTL_SECONDS = 7 * 24 * 3600;

export type ActivationUser = MailRecipient & { id: string; name: string };

/**
 * Issues a new activation link for an invited user (voiding any older one) and queues the mail in
 * the caller's transaction. Used by invitations, "resend activation" and the bootstrap CLI (which
 * prints the returned link); API callers must never return the link. The caller records the audit
 * event (user.invited / user.activation_resent).
 */
export async function sendActivation(
  tx: Tx,
  ctx: Pick<AppContext, 'config' | 'clock' | 'keyring'>,
  input: { user: ActivationUser; organizationName: string | null; actorUserId: string | null; by: ChangeOrigin['by'] },
): Promise<{ link: string; expiresAt: Date }> {
  const { token, flow } = await issueFlowToken(tx, ctx.clock, {
    userId: input.user.id,
    purpose: 'ACTIVATION',
    ttlSeconds: ACTIVATION_TTL_SECONDS,
    requestedById: input.actorUserId,
  });
  const link = buildLink(ctx.config, LINK_PATHS.activation, token);
  await enqueueMail(tx, ctx, {
    to: input.user,
    template: 'activation',
    data: {
      name: input.user.name,
      link,
      expiresAt: flow.expiresAt,
      organizationName: input.organizationName,
      username: input.user.email,
      by: input.by,
    },
  });
  return { link, expiresAt: flow.expiresAt };
}

type Ctx = Pick<AppContext, 'db' | 'pool' | 'clock' | 'config' | 'hasher'>;

/** link_used for an activation link of an account that is active already: sign in instead. */
const alreadyActive = () =>
  flowErrors.link_used('This account is already active. Sign in, or use "Forgot password".', { linkState: 'account_active' });

/**
 * An invitee whose link expired or was replaced cannot ask for a new one themselves
 * (forgotten-password mails go to active accounts only) and has no token to look up their
 * administrators: the answer names whom to ask (`contact`, as account_blocked does). Only while
 * the account is still INVITED: a used link of an active account tells nothing more than before.
 */
async function withContact(ctx: Ctx, token: string, err: unknown): Promise<unknown> {
  if (!(err instanceof AppError)) return err;
  // Not for a withdrawn link: its sender was blocked or demoted, and whoever they invited (an
  // accomplice's address, say) learns nothing about the organisation's administrators.
  const dead = err.code === 'link_expired' || (err.code === 'link_used' && err.extras.linkState === 'replaced');
  if (!dead) return err;
  const flow = await ctx.db.flowToken.findUnique({
    where: { tokenHash: sha256Hex(token) },
    select: { userId: true, data: true, requestedBy: { select: { status: true, roles: true } } },
  });
  const user = flow && (await ctx.db.user.findUnique({ where: { id: flow.userId }, select: { id: true, status: true, organizationId: true, language: true } }));
  if (!flow || user?.status !== 'INVITED') return err;
  // Nor for a link its sender sent while they had a right they no longer have (blocked, demoted):
  // an earlier link of theirs counts as replaced, not withdrawn. CLI invitations have no sender; a
  // link whose sender was erased (blocked before) has none either, and is marked so (erase-user.ts).
  const sender = flow.requestedBy;
  if (sender && (sender.status !== 'ACTIVE' || !sender.roles.some((r) => r === 'CUSTOMER_ADMIN' || r === 'SUPPORT'))) return err;
  if ((flow.data as Record<string, unknown> | null)?.requesterErased === true) return err;
  const contact = await blockedContact(ctx.db, ctx.config, user);
  const again = err.code === 'link_expired' ? flowErrors.link_expired : flowErrors.link_used;
  // A title ("The link has expired") has no full stop; a custom message may end with one.
  const sentence = /[.!?]$/.test(err.message) ? err.message : `${err.message}.`;
  return again(`${sentence} For a new invitation, ask ${contactText(ctx.config, contact)}.`, { ...err.extras, contact });
}

/** The link and its account when the link works; otherwise throws why it does not (the Prisma path). */
async function usableActivation(ctx: Ctx, token: string): Promise<UsableActivationLink> {
  return (await findUsableActivationLink(ctx.pool, ctx.clock, token)) ?? explainedActivation(ctx, token);
}

async function explainedActivation(ctx: Ctx, token: string): Promise<UsableActivationLink> {
  const flow = await findUsableFlow(ctx.db, ctx.clock, token, 'ACTIVATION', blockedLinkHolder(ctx.db, ctx.config)).catch(
    async (err: unknown) => {
      throw await withContact(ctx, token, err);
    },
  );
  const user = await ctx.db.user.findUnique({
    where: { id: flow.userId },
    select: { id: true, email: true, name: true, status: true, language: true, organizationId: true, organization: { select: { name: true } } },
  });
  if (!user) throw flowErrors.link_invalid();
  if (user.status === 'BLOCKED') throw await accountBlockedError(ctx.db, ctx.config, user);
  if (user.status !== 'INVITED') throw alreadyActive();
  return { flow, user };
}

export type ActivationInfo = {
  email: string;
  name: string;
  organizationName: string | null;
  language: Language;
  expiresAt: string;
  passwordPolicy: { minLength: number; maxLength: number };
};

/** What the activation page shows before the user chooses a password. Cheap: no hashing. */
export async function inspectActivation(ctx: Ctx, token: string): Promise<ActivationInfo> {
  const { flow, user } = await usableActivation(ctx, token);
  return {
    email: user.email,
    name: user.name,
    organizationName: user.organization?.name ?? null,
    language: user.language ?? ctx.config.defaultLanguage,
    expiresAt: flow.expiresAt.toISOString(),
    passwordPolicy: PASSWORD_POLICY,
  };
}

/**
 * Sets the first password, marks the e-mail verified (the link proved it) and activates the
 * account; answers a login challenge so the frontend can go straight on to the MFA set-up.
 * Two concurrent uses of one link: exactly one wins (consumeFlow), the other gets link_used.
 */
export async function activateAccount(ctx: Ctx, input: { token: string; password: string }, meta: RequestMeta): Promise<LoginChallenge> {
  const { flow, user } = await usableActivation(ctx, input.token);
  const passwordHash = await hashNewPassword(ctx, input.password, passwordContext(ctx.config, user, user.organization?.name));

  return ctx.db.$transaction(async (tx) => {
    // Lock order user → flows (accounts/user-lock.ts): a block committing meanwhile voids this link first.
    await lockUserRow(tx, user.id);
    await consumeFlow(tx, ctx.clock, flow);
    const now = ctx.clock.now();
    const { count } = await tx.user.updateMany({
      where: { id: user.id, status: 'INVITED' },
      data: { status: 'ACTIVE', passwordHash, passwordChangedAt: now, emailVerifiedAt: now, ...CLEARED_PASSWORD_LOCKOUT },
    });
    if (count !== 1) throw alreadyActive();
    const challenge = await issueChallengeAfterPassword(tx, ctx, user.id);
    await recordAudit(tx, ctx.clock, {
      type: 'user.activated',
      actorUserId: user.id,
      subjectUserId: user.id,
      organizationId: user.organizationId,
      meta,
      details: { invitedBy: flow.requestedById },
    });
    return challenge;
  });
}
