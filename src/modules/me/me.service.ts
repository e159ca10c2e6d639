import type { Actor } from '../../access/actor.js';
import type { AppContext } from '../../context.js';
import { commonErrors } from '../../errors.js';
import { asciiDomain } from '../../lib/email-address.js';
import type { Language } from '../../lib/languages.js';
import { lockUserRow } from '../accounts/user-lock.js';
import { recordAudit, type RequestMeta } from '../audit/audit.service.js';
import { meErrors } from './me.errors.js';
import { loadMe } from './me-query.js';
import type { Me } from './me.schemas.js';
import { computeRequiredActions } from './required-actions.js';

const iso = (d: Date | null) => (d ? d.toISOString() : null);

/** The signed-in user's own view: profile, organisation, roles, MFA status, terms, preferences. */
export async function getMe(ctx: AppContext, actor: Actor): Promise<Me> {
  const user = await loadMe(ctx.pool, actor.userId);
  if (!user) throw commonErrors.token_invalid();
  const { mfaEnrolled } = user;
  const termsVersion = ctx.config.termsVersion;
  return {
    id: user.id,
    email: user.email,
    name: user.name,
    roles: user.roles,
    organization: user.organization,
    mfa: {
      enrolled: mfaEnrolled,
      enrolledAt: iso(user.factorSince),
      recoveryCodesLeft: mfaEnrolled ? user.recoveryCodesLeft : 0,
    },
    terms: {
      currentVersion: termsVersion,
      acceptedVersion: user.termsVersion,
      acceptedAt: iso(user.termsAcceptedAt),
      accepted: user.termsVersion === termsVersion,
    },
    preferences: {
      newsletterOptIn: user.newsletterOptIn,
      language: user.language ?? ctx.config.defaultLanguage,
      updatedAt: iso(user.preferencesUpdatedAt),
    },
    lastLoginAt: iso(user.lastLoginAt),
    session: { id: actor.sessionId, amr: actor.amr },
    requiredActions: computeRequiredActions(user, { mfaEnrolled, termsVersion }),
  };
}

/**
 * Accepts the general terms (product rule 8): the version must be the current one and the typed
 * e-mail must be the account's (case-insensitive, surrounding spaces ignored). Accepting it again
 * changes nothing.
 */
export async function acceptTerms(
  ctx: AppContext,
  actor: Actor,
  input: { version: string; email: string },
  meta: RequestMeta,
): Promise<void> {
  if (input.version !== ctx.config.termsVersion) {
    throw meErrors.terms_version_mismatch(`The current terms version is ${ctx.config.termsVersion}.`, {
      currentVersion: ctx.config.termsVersion,
    });
  }
  await ctx.db.$transaction(async (tx) => {
    const user = await tx.user.findUniqueOrThrow({ where: { id: actor.userId }, select: { email: true } });
    const typed = asciiDomain(input.email.normalize('NFKC').trim()).toLowerCase();
    if (typed !== user.email.normalize('NFKC').toLowerCase()) {
      throw meErrors.terms_email_mismatch('Type the e-mail address of your account.');
    }
    const now = ctx.clock.now();
    // Idempotent: accepting the version already accepted keeps the time it was accepted (the
    // record product rule 8 asks for) and writes no second audit row (a double submit, a re-shown page).
    const { count } = await tx.user.updateMany({
      where: { id: actor.userId, OR: [{ termsVersion: null }, { termsVersion: { not: input.version } }] },
      data: { termsVersion: input.version, termsAcceptedAt: now },
    });
    if (count === 0) return;
    await recordAudit(tx, ctx.clock, {
      type: 'user.terms_accepted',
      actorUserId: actor.userId,
      subjectUserId: actor.userId,
      organizationId: actor.organizationId,
      meta,
      details: { version: input.version },
    });
  });
}

export async function updatePreferences(
  ctx: AppContext,
  actor: Actor,
  input: { newsletterOptIn?: boolean | undefined; language?: Language | undefined },
  meta: RequestMeta,
): Promise<void> {
  await ctx.db.$transaction(async (tx) => {
    // Locked first, so two saves at once audit false → true, then true → true (not both false → true).
    await lockUserRow(tx, actor.userId);
    const before = await tx.user.findUniqueOrThrow({
      where: { id: actor.userId },
      select: { newsletterOptIn: true, language: true, preferencesUpdatedAt: true },
    });
    const after = { newsletterOptIn: input.newsletterOptIn ?? before.newsletterOptIn, language: input.language ?? before.language };
    // set_preferences asks the newsletter question: a language switch alone does not answer it.
    const answered = input.newsletterOptIn !== undefined || before.preferencesUpdatedAt !== null;
    // A save that changes nothing and answers nothing new writes nothing: repeated, it would only
    // grow the audit log (found by session 19's review).
    const changed = after.newsletterOptIn !== before.newsletterOptIn || after.language !== before.language;
    if (!changed && !(answered && before.preferencesUpdatedAt === null)) return;
    await tx.user.update({ where: { id: actor.userId }, data: { ...after, ...(answered ? { preferencesUpdatedAt: ctx.clock.now() } : {}) } });
    await recordAudit(tx, ctx.clock, {
      type: 'user.preferences_changed',
      actorUserId: actor.userId,
      subjectUserId: actor.userId,
      organizationId: actor.organizationId,
      meta,
      // What the user saved (also an unchanged value when the save is the first answer to set_preferences).
      details: {
        ...(input.newsletterOptIn !== undefined ? { newsletterOptIn: { from: before.newsletterOptIn, to: after.newsletterOptIn } } : {}),
        ...(input.language !== undefined ? { language: { from: before.language, to: after.language } } : {}),
      },
    });
  });
}

/**
 * Names and e-mails of the active CUSTOMER_ADMINs of the caller's organisation (product rule 12),
 * nothing about other members. Empty for users without an organisation (support staff).
 */
export async function listOwnAdministrators(ctx: AppContext, actor: Actor): Promise<{ name: string; email: string }[]> {
  if (!actor.organizationId) return [];
  return ctx.db.user.findMany({
    where: { organizationId: actor.organizationId, status: 'ACTIVE', roles: { has: 'CUSTOMER_ADMIN' } },
    select: { name: true, email: true },
    orderBy: [{ name: 'asc' }, { email: 'asc' }],
  });
}
