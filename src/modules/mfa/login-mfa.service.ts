import type { AppContext } from '../../context.js';
import type { Tx } from '../../db/client.js';
import type { FlowToken, User } from '../../generated/prisma/client.js';
import type { AppError } from '../../errors.js';
import { secondsLeft } from '../../lib/clock.js';
import { renderQrCode, type QrCode } from '../../lib/qr.js';
import { recordAudit, type RequestMeta } from '../audit/audit.service.js';
import { enqueueMail } from '../mail/mail.service.js';
import { issueSession } from '../sessions/sessions.service.js';
import type { TokenResponse } from '../sessions/sessions.schemas.js';
import { auditRefusedCodeAttempt, loadUserForLogin, recordCodeFailure, resetCodeFailures } from './account-guard.js';
import { completeCodeStepAtOnce } from './code-step-at-once.js';
import { amrAfter, consumeChallenge, loadChallenge, reserveAttempt, retireIfSpent } from './challenge-guard.js';
import {
  activatePendingFactor,
  enrollmentInProgress,
  findActiveFactor,
  findPendingFactor,
  pendingReservation,
  replaceRecoveryCodes,
  startTotpEnrollment,
  useRecoveryCode,
  useTotpCode,
  type CodeFailure,
} from './factors.js';
import { mfaErrors } from './mfa.errors.js';
import type { LoginMfaBody } from './mfa.schemas.js';

/**
 * The second login step (after the password, or after activation): code or recovery code, or the
 * first enrolment of a TOTP factor. Tokens are issued only here, in the transaction that consumes
 * the challenge and burns the code, so no session ever exists on a password alone.
 *
 * Wrong codes must be *committed* (challenge attempt, account failure count, audit) while the
 * request still fails, so the transaction returns an outcome and the error is thrown after it.
 */

export type TotpEnrollment = { secret: string; otpauthUri: string; qrCode: QrCode };
export type EnrollmentTokens = TokenResponse & { recoveryCodes: string[] };

type Outcome<T> = { ok: true; value: T } | { ok: false; error: AppError };

/**
 * Awaits a code attempt's transaction. When the attempt is refused before a code is evaluated
 * (code entry locked, account blocked, dead challenge: the transaction threw and rolled back), the
 * refusal is audited after it (`refusal`). Evaluated wrong codes are outcomes, audited inside the
 * transaction (recordCodeFailure).
 */
async function unwrap<T>(
  outcome: Promise<Outcome<T>>,
  refusal?: { ctx: AppContext; audit: Parameters<typeof auditRefusedCodeAttempt>[2] },
): Promise<T> {
  let settled: Outcome<T>;
  try {
    settled = await outcome;
  } catch (err) {
    if (refusal) await auditRefusedCodeAttempt(refusal.ctx, err, refusal.audit);
    throw err;
  }
  if (!settled.ok) throw settled.error;
  return settled.value;
}

async function loadUser(tx: Tx, ctx: AppContext, flow: FlowToken): Promise<User> {
  return loadUserForLogin(tx, ctx, flow.userId);
}

async function fail(
  tx: Tx,
  ctx: AppContext,
  input: {
    flow: FlowToken;
    user: User;
    factor: 'totp' | 'recovery_code';
    failure: CodeFailure;
    attemptsRemaining: number;
    meta: RequestMeta;
    step: 'login' | 'login_enrollment';
  },
): Promise<Outcome<never>> {
  const error = await recordCodeFailure(tx, ctx, {
    user: input.user,
    factor: input.factor,
    failure: input.failure,
    meta: input.meta,
    flow: input.step,
    attemptsRemaining: input.attemptsRemaining,
  });
  await retireIfSpent(tx, input.flow, input.attemptsRemaining);
  return { ok: false, error };
}

/** POST /v1/auth/login/mfa: a TOTP code or a recovery code completes the login. */
export async function completeMfaLogin(ctx: AppContext, body: LoginMfaBody, meta: RequestMeta): Promise<TokenResponse> {
  if (body.code !== undefined) {
    // The usual case in three statements (code-step-at-once.ts); null → everything else, below.
    const tokens = await completeCodeStepAtOnce(ctx, body, meta);
    if (tokens) return tokens;
  }
  const factorKind = body.code !== undefined ? 'totp' : 'recovery_code';
  return unwrap(
    ctx.db.$transaction(async (tx): Promise<Outcome<TokenResponse>> => {
      const flow = await loadChallenge(tx, ctx.clock, body.challengeToken, 'mfa');
      const user = await loadUser(tx, ctx, flow);
      let amr: string[];
      let factorName: 'totp' | 'recovery_code';

      if (body.code !== undefined) {
        const factor = await findActiveFactor(tx, user.id);
        // MFA was reset since the password step: the user logs in again and enrols.
        if (!factor) throw mfaErrors.challenge_used('MFA was reset for this account. Log in again to set it up.');
        const attemptsRemaining = await reserveAttempt(tx, ctx.clock, flow);
        const result = await useTotpCode(tx, ctx, factor, body.code);
        if (!result.ok) {
          return fail(tx, ctx, { flow, user, factor: 'totp', failure: result, attemptsRemaining, meta, step: 'login' });
        }
        amr = amrAfter(flow, 'otp');
        factorName = 'totp';
      } else {
        const attemptsRemaining = await reserveAttempt(tx, ctx.clock, flow);
        const result = await useRecoveryCode(tx, ctx, user.id, body.recoveryCode);
        if (!result.ok) {
          const failure = { reason: 'invalid' } as const;
          return fail(tx, ctx, { flow, user, factor: 'recovery_code', failure, attemptsRemaining, meta, step: 'login' });
        }
        amr = amrAfter(flow, 'rec');
        factorName = 'recovery_code';
        await recordAudit(tx, ctx.clock, {
          type: 'mfa.recovery_code_used',
          actorUserId: user.id,
          subjectUserId: user.id,
          organizationId: user.organizationId,
          meta,
          details: { remaining: result.remaining },
        });
        await enqueueMail(tx, ctx, {
          to: user,
          template: 'recovery_code_used',
          data: { name: user.name, remaining: result.remaining },
        });
      }

      await consumeChallenge(tx, ctx.clock, flow);
      await resetCodeFailures(tx, user.id);
      await recordAudit(tx, ctx.clock, {
        type: 'login.mfa_succeeded',
        actorUserId: user.id,
        subjectUserId: user.id,
        organizationId: user.organizationId,
        meta,
        details: { factor: factorName, amr },
      });
      const tokens = await issueSession(ctx, tx, { userId: user.id, amr, meta });
      return { ok: true, value: tokens };
    }),
    { ctx, audit: { challengeToken: body.challengeToken, factor: factorKind, flow: 'login', meta } },
  );
}

/** POST /v1/auth/login/mfa-enrollment: a new pending secret (replacing an unconfirmed one). */
export async function startLoginEnrollment(
  ctx: AppContext,
  challengeToken: string,
): Promise<TotpEnrollment & { challengeExpiresIn: number }> {
  const { enrollment, expiresAt } = await ctx.db.$transaction(async (tx) => {
    const flow = await loadChallenge(tx, ctx.clock, challengeToken, 'mfa_enrollment');
    const user = await loadUser(tx, ctx, flow);
    // A set-up the user's signed-in session started after removing MFA is not replaced from here.
    return { enrollment: await startTotpEnrollment(tx, ctx, user, { reservedBy: null }), expiresAt: flow.expiresAt };
  });
  // Rounded down (not as a Retry-After): never more time than the challenge has.
  const challengeExpiresIn = secondsLeft(expiresAt, ctx.clock.now());
  // Rendering is CPU work: outside the transaction, so no row lock or connection waits on it.
  return { ...enrollment, qrCode: await renderQrCode(enrollment.otpauthUri), challengeExpiresIn };
}

/** POST /v1/auth/login/mfa-enrollment/verify: the first code activates the factor and logs in. */
export async function verifyLoginEnrollment(
  ctx: AppContext,
  body: { challengeToken: string; code: string },
  meta: RequestMeta,
): Promise<EnrollmentTokens> {
  return unwrap(
    ctx.db.$transaction(async (tx): Promise<Outcome<EnrollmentTokens>> => {
      const flow = await loadChallenge(tx, ctx.clock, body.challengeToken, 'mfa_enrollment');
      const user = await loadUser(tx, ctx, flow);
      const factor = await findPendingFactor(tx, user.id);
      if (!factor) {
        if (await findActiveFactor(tx, user.id)) throw mfaErrors.mfa_already_enrolled();
        throw mfaErrors.mfa_enrollment_not_started('Call /v1/auth/login/mfa-enrollment first.');
      }
      // A signed-in session replaced this step's secret with its own (it may: the removal was its
      // user's): no code from this step's QR code can match, so say so instead of counting a failure.
      const reservedFor = await pendingReservation(tx, user.id, ctx.clock.now());
      if (reservedFor !== null) throw enrollmentInProgress(reservedFor);
      const attemptsRemaining = await reserveAttempt(tx, ctx.clock, flow);
      const result = await activatePendingFactor(tx, ctx, factor, body.code);
      if (!result.ok) {
        return fail(tx, ctx, { flow, user, factor: 'totp', failure: result, attemptsRemaining, meta, step: 'login_enrollment' });
      }
      const recoveryCodes = await replaceRecoveryCodes(tx, ctx, user.id);
      await consumeChallenge(tx, ctx.clock, flow);
      await resetCodeFailures(tx, user.id);
      const amr = amrAfter(flow, 'otp');
      await recordAudit(tx, ctx.clock, {
        type: 'mfa.enrolled',
        actorUserId: user.id,
        subjectUserId: user.id,
        organizationId: user.organizationId,
        meta,
        details: { factor: 'totp', via: 'login' },
      });
      await recordAudit(tx, ctx.clock, {
        type: 'login.mfa_succeeded',
        actorUserId: user.id,
        subjectUserId: user.id,
        organizationId: user.organizationId,
        meta,
        details: { factor: 'totp', amr, enrollment: true },
      });
      await enqueueMail(tx, ctx, { to: user, template: 'mfa_enrolled', data: { name: user.name } });
      const tokens = await issueSession(ctx, tx, { userId: user.id, amr, meta });
      return { ok: true, value: { ...tokens, recoveryCodes } };
    }),
    { ctx, audit: { challengeToken: body.challengeToken, factor: 'totp', flow: 'login_enrollment', meta } },
  );
}
