import type { AppContext } from '../../context.js';
import type { Tx } from '../../db/client.js';
import type { TotpFactor } from '../../generated/prisma/client.js';
import { buildOtpauthUri, checkTotp, generateTotpSecret, hintedStep, stepAtMs, type TotpCheck } from '../../lib/totp.js';
import { generateRecoveryCodes, hashRecoveryCode, normalizeRecoveryCode } from '../../lib/recovery-codes.js';
import { mfaErrors } from './mfa.errors.js';
import { addSeconds } from '../../lib/clock.js';
import { secondsUntil } from '../../lib/lockout.js';
import { typedAddress } from '../../lib/email-address.js';
import { newId } from '../../db/sql.js';
import { Prisma } from '../../generated/prisma/client.js';
import { voidFlows } from '../flows/flow-tokens.js';
import { openTotpSecret, sealTotpSecret } from './totp-secret.js';

/**
 * TOTP factors and recovery codes. Every "use once" rule is a conditional UPDATE, never a
 * read-then-write: racing requests with one code (or one recovery code) have exactly one winner.
 */

export type CodeFailure =
  | { reason: 'invalid' }
  | { reason: 'replayed' }
  | { reason: 'clock_drift'; offsetSeconds: number };

export type CodeResult = { ok: true; step: number } | ({ ok: false } & CodeFailure);

export type TotpEnrollmentSecret = { secret: string; otpauthUri: string };

type EnrollCtx = Pick<AppContext, 'clock' | 'keyring' | 'config'>;

export async function findActiveFactor(tx: Tx, userId: string): Promise<TotpFactor | null> {
  return tx.totpFactor.findUnique({ where: { userId_status: { userId, status: 'ACTIVE' } } });
}

export async function findPendingFactor(tx: Tx, userId: string): Promise<TotpFactor | null> {
  return tx.totpFactor.findUnique({ where: { userId_status: { userId, status: 'PENDING' } } });
}

/**
 * How long a pending factor started by a signed-in session (self-service re-enrolment) stays that
 * session's: meanwhile a login with the password alone cannot replace it with an authenticator of
 * its own (after a self-service removal the account has no factor, and the login's enrolment step
 * would otherwise let anyone with the password set one up and leave the user's own set-up to fail).
 * The reservation also ends with the session that made it (logout, revocation, password reset,
 * block, expiry): a set-up abandoned by signing out does not block the next login's.
 */
export const SELF_ENROLMENT_RESERVATION_SECONDS = 15 * 60;

/**
 * SQL: the pending factor row `totp_factors` is reserved at `now` — before its time is up, by a
 * session still alive (rows reserved before the session was recorded count by time alone). Never
 * NULL: it is negated.
 */
const reservationInForce = (now: Date) => Prisma.sql`(
  totp_factors.reserved_until IS NOT NULL AND totp_factors.reserved_until > ${now}::timestamptz
  AND (totp_factors.reserved_by_session_id IS NULL OR EXISTS (
    SELECT 1 FROM sessions s
    WHERE s.id = totp_factors.reserved_by_session_id AND s.revoked_at IS NULL
      AND s.expires_at > ${now}::timestamptz AND s.idle_expires_at > ${now}::timestamptz)))`;

/** Seconds until the reservation of the user's pending factor ends; null when none is in force. */
export async function pendingReservation(tx: Tx, userId: string, now: Date): Promise<number | null> {
  const rows = await tx.$queryRaw<{ reserved_until: Date }[]>`
    SELECT reserved_until FROM totp_factors
    WHERE user_id = ${userId}::uuid AND status = 'PENDING' AND ${reservationInForce(now)}`;
  const until = rows[0]?.reserved_until;
  return until ? Math.max(1, secondsUntil(until, now)) : null;
}

export const enrollmentInProgress = (retryAfter: number) =>
  mfaErrors.mfa_enrollment_in_progress(
    'Two-step login is being set up in a signed-in session of this account: finish it there, or try again later.',
    { retryAfter },
    { 'retry-after': String(retryAfter) },
  );

/**
 * Creates the user's pending factor with a fresh 160-bit secret, replacing an earlier pending one
 * — unless that one is reserved by a signed-in session and this is the login's enrolment step
 * (409 mfa_enrollment_in_progress, Retry-After). `reservedBy`: the signed-in session starting it,
 * null for the login's enrolment step. Check and write are one statement (the conflicting row is
 * locked and re-checked), so a racing pair cannot both win. The plaintext secret leaves this
 * function once, for the enrolment response.
 */
export async function startTotpEnrollment(
  tx: Tx,
  ctx: EnrollCtx,
  user: { id: string; email: string },
  options: { reservedBy: string | null },
): Promise<TotpEnrollmentSecret> {
  if (await findActiveFactor(tx, user.id)) throw mfaErrors.mfa_already_enrolled();
  const secret = generateTotpSecret();
  const sealed = sealTotpSecret(ctx.keyring, user.id, secret);
  const now = ctx.clock.now();
  const reserve = options.reservedBy !== null;
  const reservedUntil = reserve ? addSeconds(now, SELF_ENROLMENT_RESERVATION_SECONDS) : null;
  const written = await tx.$queryRaw<{ id: string }[]>`
    INSERT INTO totp_factors (id, user_id, status, secret_ciphertext, encryption_key_id, created_at, reserved_until, reserved_by_session_id)
    VALUES (${newId()}::uuid, ${user.id}::uuid, 'PENDING', ${sealed.secretCiphertext}, ${sealed.encryptionKeyId}, ${now}::timestamptz,
      ${reservedUntil}::timestamptz, ${options.reservedBy}::uuid)
    ON CONFLICT (user_id, status) DO UPDATE SET
      secret_ciphertext = EXCLUDED.secret_ciphertext, encryption_key_id = EXCLUDED.encryption_key_id,
      last_used_step = NULL, created_at = EXCLUDED.created_at,
      reserved_until = EXCLUDED.reserved_until, reserved_by_session_id = EXCLUDED.reserved_by_session_id
    WHERE ${reserve}::boolean OR NOT ${reservationInForce(now)}
    RETURNING id`;
  if (written.length === 0) throw enrollmentInProgress((await pendingReservation(tx, user.id, now)) ?? 1);
  // The label's account part cannot carry ':' (apps split on it); e-mail addresses never need one.
  // An internationalised domain as typed: the apps show the label as given, and "xn--mller-…" was
  // not recognisably the user's own (interop review, session 32).
  const accountName = typedAddress(user.email).replaceAll(':', '');
  return { secret, otpauthUri: buildOtpauthUri({ issuer: ctx.config.totpIssuer, accountName, secret }) };
}

function evaluate(ctx: Pick<AppContext, 'clock' | 'keyring'>, factor: TotpFactor, code: string): TotpCheck {
  const secret = openTotpSecret(ctx.keyring, factor.userId, factor);
  return checkTotp({ secret, code, nowMs: ctx.clock.now().getTime(), lastUsedStep: factor.lastUsedStep, refusedSteps: factor.hintedSteps });
}

function codeResult(check: TotpCheck): CodeResult {
  switch (check.result) {
    case 'valid':
      return { ok: true, step: check.step };
    case 'replayed':
      return { ok: false, reason: 'replayed' };
    case 'clock_drift':
      return { ok: false, reason: 'clock_drift', offsetSeconds: check.offsetSeconds };
    default:
      return { ok: false, reason: 'invalid' };
  }
}

/**
 * Remembers the step of a clock-drift hint for a step still to come (checkTotp's refusedSteps), in
 * the transaction that counts the failure, and forgets the steps the window has left behind. In
 * SQL on the locked row, so concurrent hints add up rather than overwrite each other.
 */
async function rememberHintedStep(tx: Tx, ctx: Pick<AppContext, 'clock'>, factorId: string, step: number): Promise<void> {
  const passed = stepAtMs(ctx.clock.now().getTime()) - 1;
  await tx.$executeRaw`
    UPDATE totp_factors
    SET hinted_steps = ARRAY(SELECT s FROM unnest(hinted_steps) AS s WHERE s >= ${passed}::int AND s <> ${step}::int) || ${step}::int
    WHERE id = ${factorId}::uuid AND status = 'ACTIVE'`;
}

/**
 * Checks a code against the user's active factor and, when it is valid, records its time step
 * with `UPDATE ... WHERE last_used_step IS NULL OR last_used_step < step`. Whoever loses that
 * race gets `replayed`, so one code yields at most one success however many requests carry it.
 */
export async function useTotpCode(
  tx: Tx,
  ctx: Pick<AppContext, 'clock' | 'keyring'>,
  factor: TotpFactor,
  code: string,
): Promise<CodeResult> {
  const check = evaluate(ctx, factor, code);
  const hinted = hintedStep(check);
  if (hinted !== null) await rememberHintedStep(tx, ctx, factor.id, hinted);
  const result = codeResult(check);
  if (!result.ok) return result;
  const { count } = await tx.totpFactor.updateMany({
    where: {
      id: factor.id,
      status: 'ACTIVE',
      OR: [{ lastUsedStep: null }, { lastUsedStep: { lt: result.step } }],
      // A hint for this step committed since the factor was read (a concurrent request) stands.
      NOT: { hintedSteps: { has: result.step } },
    },
    data: { lastUsedStep: result.step },
  });
  return count === 1 ? result : { ok: false, reason: 'replayed' };
}

/**
 * Confirms a pending factor with its first code: it becomes ACTIVE with the code's step stored,
 * so the same code cannot be replayed for the next login. Conditional on the row still pending.
 * A support-verified reset still pending was about the state before (a code lock during set-up):
 * its link must not remove the factor set up now, so it is voided. The caller holds the user row.
 */
export async function activatePendingFactor(
  tx: Tx,
  ctx: Pick<AppContext, 'clock' | 'keyring'>,
  factor: TotpFactor,
  code: string,
): Promise<CodeResult> {
  // A pending factor's secret is shown to whoever enrols it: its hints tell them nothing.
  const result = codeResult(evaluate(ctx, { ...factor, lastUsedStep: null, hintedSteps: [] }, code));
  if (!result.ok) return result;
  if (await findActiveFactor(tx, factor.userId)) throw mfaErrors.mfa_already_enrolled();
  const { count } = await tx.totpFactor.updateMany({
    where: { id: factor.id, status: 'PENDING', secretCiphertext: factor.secretCiphertext },
    data: { status: 'ACTIVE', activatedAt: ctx.clock.now(), lastUsedStep: result.step, reservedUntil: null, reservedBySessionId: null },
  });
  // Lost to a concurrent confirmation or a replaced secret: this code enrolled nothing.
  if (count !== 1) return { ok: false, reason: 'replayed' };
  await voidFlows(tx, factor.userId, ['MFA_RESET']);
  return result;
}

/** Replaces all of the user's recovery codes with 10 new ones; the plaintext is returned once. */
export async function replaceRecoveryCodes(tx: Tx, ctx: Pick<AppContext, 'clock'>, userId: string): Promise<string[]> {
  const codes = generateRecoveryCodes();
  const now = ctx.clock.now();
  await tx.recoveryCode.deleteMany({ where: { userId } });
  await tx.recoveryCode.createMany({
    data: codes.map((code) => ({ userId, codeHash: hashRecoveryCode(normalizeRecoveryCode(code)!, userId), createdAt: now })),
  });
  return codes;
}

/** Spends one recovery code (conditional update: single use under races); returns how many are left. */
export async function useRecoveryCode(
  tx: Tx,
  ctx: Pick<AppContext, 'clock'>,
  userId: string,
  input: string,
): Promise<{ ok: true; remaining: number } | { ok: false }> {
  const normalized = normalizeRecoveryCode(input);
  if (normalized === null) return { ok: false };
  const { count } = await tx.recoveryCode.updateMany({
    where: { userId, codeHash: hashRecoveryCode(normalized, userId), usedAt: null },
    data: { usedAt: ctx.clock.now() },
  });
  if (count !== 1) return { ok: false };
  const remaining = await tx.recoveryCode.count({ where: { userId, usedAt: null } });
  return { ok: true, remaining };
}
