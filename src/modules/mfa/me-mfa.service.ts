import type { Actor } from '../../access/actor.js';
import type { AppContext } from '../../context.js';
import { commonErrors } from '../../errors.js';
import { renderQrCode } from '../../lib/qr.js';
import { inReauthenticatedTransaction, reauthenticate } from '../accounts/reauthenticate.js';
import { lockUserRow } from '../accounts/user-lock.js';
import { recordAudit, type RequestMeta } from '../audit/audit.service.js';
import { enqueueMail } from '../mail/mail.service.js';
import { codeFailureError } from './account-guard.js';
import { activatePendingFactor, findActiveFactor, findPendingFactor, replaceRecoveryCodes, startTotpEnrollment } from './factors.js';
import type { TotpEnrollment } from './login-mfa.service.js';
import { mfaErrors } from './mfa.errors.js';
import { removeMfa } from './remove.js';

/**
 * The signed-in user's own MFA (help page: new phone while still signed in): remove it after
 * re-entering the password, enrol again, regenerate recovery codes. Removal keeps only the
 * caller's session, which can then do nothing but enrol (the authenticate hook checks that the
 * user has an ACTIVE factor). Re-authentication is the accounts module's (password lockout applies).
 */

/** DELETE /v1/me/mfa */
export async function removeOwnMfa(ctx: AppContext, actor: Actor, password: string, meta: RequestMeta): Promise<void> {
  const user = await reauthenticate(ctx, actor.userId, password, meta);
  await inReauthenticatedTransaction(ctx, user, meta, async (tx) => {
    if (!(await findActiveFactor(tx, user.id))) throw mfaErrors.mfa_not_enrolled();
    const result = await removeMfa(tx, ctx, user.id, { exceptSessionId: actor.sessionId, reason: 'mfa_removed' });
    await recordAudit(tx, ctx.clock, {
      type: 'mfa.removed',
      actorUserId: user.id,
      subjectUserId: user.id,
      organizationId: user.organizationId,
      meta,
      details: { by: 'self', revokedSessions: result.revokedSessions, removedRecoveryCodes: result.removedRecoveryCodes },
    });
    await enqueueMail(tx, ctx, { to: user, template: 'mfa_removed', data: { name: user.name, by: 'self' } });
  });
}

/** POST /v1/me/mfa/totp */
export async function startSelfEnrollment(ctx: AppContext, actor: Actor): Promise<TotpEnrollment> {
  const enrollment = await ctx.db.$transaction(async (tx) => {
    await lockUserRow(tx, actor.userId); // the lock order: user row before factor rows (user-lock.ts)
    const user = await tx.user.findUnique({ where: { id: actor.userId } });
    if (!user) throw commonErrors.unauthenticated();
    return startTotpEnrollment(tx, ctx, user, { reservedBy: actor.sessionId });
  });
  return { ...enrollment, qrCode: await renderQrCode(enrollment.otpauthUri) };
}

/** POST /v1/me/mfa/totp/verify */
export async function verifySelfEnrollment(
  ctx: AppContext,
  actor: Actor,
  code: string,
  meta: RequestMeta,
): Promise<{ recoveryCodes: string[] }> {
  return ctx.db.$transaction(async (tx) => {
    await lockUserRow(tx, actor.userId); // as in startSelfEnrollment
    const user = await tx.user.findUnique({ where: { id: actor.userId } });
    if (!user) throw commonErrors.unauthenticated();
    const factor = await findPendingFactor(tx, user.id);
    if (!factor) {
      if (await findActiveFactor(tx, user.id)) throw mfaErrors.mfa_already_enrolled();
      throw mfaErrors.mfa_enrollment_not_started('Call POST /v1/me/mfa/totp first.');
    }
    const result = await activatePendingFactor(tx, ctx, factor, code);
    if (!result.ok) throw codeFailureError('totp', result);
    const recoveryCodes = await replaceRecoveryCodes(tx, ctx, user.id);
    await recordAudit(tx, ctx.clock, {
      type: 'mfa.enrolled',
      actorUserId: user.id,
      subjectUserId: user.id,
      organizationId: user.organizationId,
      meta,
      details: { factor: 'totp', via: 'self_service' },
    });
    await enqueueMail(tx, ctx, { to: user, template: 'mfa_enrolled', data: { name: user.name } });
    return { recoveryCodes };
  });
}

/** POST /v1/me/mfa/recovery-codes */
export async function regenerateRecoveryCodes(
  ctx: AppContext,
  actor: Actor,
  password: string,
  meta: RequestMeta,
): Promise<{ recoveryCodes: string[] }> {
  const user = await reauthenticate(ctx, actor.userId, password, meta);
  return inReauthenticatedTransaction(ctx, user, meta, async (tx) => {
    if (!(await findActiveFactor(tx, user.id))) throw mfaErrors.mfa_not_enrolled();
    const recoveryCodes = await replaceRecoveryCodes(tx, ctx, user.id);
    await recordAudit(tx, ctx.clock, {
      type: 'mfa.recovery_codes_regenerated',
      actorUserId: user.id,
      subjectUserId: user.id,
      organizationId: user.organizationId,
      meta,
      details: { count: recoveryCodes.length },
    });
    await enqueueMail(tx, ctx, { to: user, template: 'recovery_codes_regenerated', data: { name: user.name } });
    return { recoveryCodes };
  });
}
