import type { AppContext } from '../../context.js';
import type { Tx } from '../../db/client.js';
import type { User } from '../../generated/prisma/client.js';
import { AppError } from '../../errors.js';
import { addSeconds } from '../../lib/clock.js';
import { LOCKOUT_THRESHOLD, lockoutSeconds, secondsUntil } from '../../lib/lockout.js';
import { sha256Hex } from '../../lib/tokens.js';
import { accountBlockedError, blockedContact, contactText } from '../accounts/blocked.js';
import { recordAudit, type RequestMeta } from '../audit/audit.service.js';
import { voidFlows } from '../flows/flow-tokens.js';
import { mfaErrors } from './mfa.errors.js';
import type { CodeFailure } from './factors.js';

/**
 * Per-account protection of the code step (security.md item 6): consecutive wrong codes are counted
 * on the user, separately from passwords; the 10th locks code entry for 15 min (doubling per lock,
 * capped at 24 h, see lib/lockout.ts); a correct code resets the count.
 */

/**
 * mfa_locked, with whom to ask when the authenticator is lost (the help page: "ask the customer
 * administrator in your organization to reset your MFA"). Only answered to the holder of a login
 * challenge, i.e. after a correct password, as account_blocked's contact is.
 */
export async function mfaLockedError(
  db: Tx,
  config: Pick<AppContext['config'], 'supportContact' | 'supportContactIn' | 'defaultLanguage'>,
  user: Parameters<typeof blockedContact>[2],
  until: Date,
  now: Date,
): Promise<AppError> {
  const retryAfter = secondsUntil(until, now);
  const contact = await blockedContact(db, config, user);
  return mfaErrors.mfa_locked(
    `Too many wrong codes. Code entry is locked for a while; try again later. No longer have your authenticator? Ask ${contactText(config, contact)} to reset your two-step login.`,
    { retryAfter, contact },
    { 'retry-after': String(retryAfter) },
  );
}

/**
 * Loads the challenge's user and throws when they may not complete a login now: blocked (with whom
 * to contact: they typed the correct password), not active, or code entry locked.
 */
export async function loadUserForLogin(tx: Tx, ctx: Pick<AppContext, 'clock' | 'config'>, userId: string): Promise<User> {
  const user = await tx.user.findUnique({ where: { id: userId } });
  if (!user || user.status === 'INVITED') throw mfaErrors.challenge_invalid();
  if (user.status === 'BLOCKED') throw await accountBlockedError(tx, ctx.config, user);
  const now = ctx.clock.now();
  if (user.mfaLockedUntil && user.mfaLockedUntil > now) throw await mfaLockedError(tx, ctx.config, user, user.mfaLockedUntil, now);
  return user;
}

/**
 * Why a code attempt was refused before any code was evaluated (audit `reason`), by error code.
 * Not listed, so not audited: tokens that are no login challenge (nobody to attribute them to),
 * a request for the other step, and a duplicate racing the attempt that holds the challenge.
 */
const REFUSAL_REASONS: Readonly<Record<string, string>> = {
  mfa_locked: 'locked',
  account_blocked: 'blocked',
  challenge_expired: 'challenge_expired',
  challenge_used: 'challenge_used',
  challenge_exhausted: 'challenge_exhausted',
};

/**
 * Audits a code attempt that was refused before its code was looked at (security.md item 26: every
 * login attempt is audited, as the password step records reason "locked" and blocked attempts):
 * code entry locked, account blocked, challenge expired, used or spent. Call with the error that
 * rolled the attempt's transaction back; other errors are ignored. It only writes an audit row:
 * nothing is counted, no lock changes, the answer stays the same; and the caller holds a login
 * challenge, i.e. has passed the password step, so nothing is revealed about unknown accounts.
 */
export async function auditRefusedCodeAttempt(
  ctx: Pick<AppContext, 'db' | 'clock'>,
  error: unknown,
  input: { challengeToken: unknown; factor: 'totp' | 'recovery_code'; flow: 'login' | 'login_enrollment'; meta: RequestMeta },
): Promise<void> {
  if (!(error instanceof AppError)) return;
  const reason = REFUSAL_REASONS[error.code];
  if (!reason || typeof input.challengeToken !== 'string') return;
  const challenge = await ctx.db.flowToken.findUnique({
    where: { tokenHash: sha256Hex(input.challengeToken) },
    select: { purpose: true, user: { select: { id: true, organizationId: true, mfaLockedUntil: true } } },
  });
  if (!challenge || challenge.purpose !== 'LOGIN_CHALLENGE') return;
  const { user } = challenge;
  const audit = { actorUserId: user.id, subjectUserId: user.id, organizationId: user.organizationId, meta: input.meta };
  const details = { reason, factor: input.factor, flow: input.flow, refused: true };
  await ctx.db.$transaction((tx) =>
    reason === 'blocked'
      ? recordAudit(tx, ctx.clock, { ...audit, type: 'login.blocked_attempt', details: { ...details, step: 'code' } })
      : recordAudit(tx, ctx.clock, {
          ...audit,
          type: 'login.mfa_failed',
          details: { ...details, ...(reason === 'locked' && user.mfaLockedUntil ? { until: user.mfaLockedUntil.toISOString() } : {}) },
        }),
  );
}

export type FailureContext = {
  user: User;
  factor: 'totp' | 'recovery_code';
  failure: CodeFailure;
  meta: RequestMeta;
  /** Which flow the wrong code was entered in. */
  flow: 'login' | 'login_enrollment';
  attemptsRemaining: number;
};

/**
 * Counts a wrong code against the account and audits it. Returns the error to answer with: the
 * lock when this failure reached the threshold, otherwise the code-specific error.
 */
export async function recordCodeFailure(tx: Tx, ctx: Pick<AppContext, 'clock' | 'config'>, input: FailureContext): Promise<AppError> {
  const { user, meta, failure, attemptsRemaining } = input;
  const now = ctx.clock.now();
  // A replayed code was a valid one, not a guess: it costs a challenge attempt but does not count
  // towards the account lock (a double submit right after a success must not push a user to it).
  const guess = failure.reason !== 'replayed';
  const select = { failedMfaCount: true, mfaLockouts: true } as const;
  const counted = guess
    ? await tx.user.update({ where: { id: user.id }, data: { failedMfaCount: { increment: 1 } }, select })
    : await tx.user.findUniqueOrThrow({ where: { id: user.id }, select });
  await recordAudit(tx, ctx.clock, {
    type: 'login.mfa_failed',
    actorUserId: user.id,
    subjectUserId: user.id,
    organizationId: user.organizationId,
    meta,
    details: {
      factor: input.factor,
      reason: failure.reason,
      flow: input.flow,
      consecutiveFailures: counted.failedMfaCount,
      ...(failure.reason === 'clock_drift' ? { offsetSeconds: failure.offsetSeconds } : {}),
    },
  });

  if (guess && counted.failedMfaCount >= LOCKOUT_THRESHOLD) {
    const seconds = lockoutSeconds(counted.mfaLockouts);
    const until = addSeconds(now, seconds);
    await tx.user.update({
      where: { id: user.id },
      data: { failedMfaCount: 0, mfaLockedUntil: until, mfaLockouts: { increment: 1 } },
    });
    // The locked user starts over with the password after the lock.
    await voidFlows(tx, user.id, ['LOGIN_CHALLENGE']);
    await recordAudit(tx, ctx.clock, {
      type: 'mfa.locked',
      actorUserId: user.id,
      subjectUserId: user.id,
      organizationId: user.organizationId,
      meta,
      details: { lockSeconds: seconds, lockNumber: counted.mfaLockouts + 1, until: until.toISOString() },
    });
    return mfaLockedError(tx, ctx.config, user, until, now);
  }

  // What the screen shows: the codes this challenge still takes, or fewer when the account's code
  // lock comes first (a wrong code on a second login attempt may be the account's 10th), and which
  // of the two follows the last of them (German frontend review, session 30: "1 remaining" could
  // mean "sign in again" or "locked for 15 minutes").
  const beforeLock = LOCKOUT_THRESHOLD - counted.failedMfaCount;
  return codeFailureError(input.factor, failure, {
    attemptsRemaining: Math.min(attemptsRemaining, beforeLock),
    afterLastAttempt: beforeLock <= attemptsRemaining ? 'locked' : 'sign_in_again',
  });
}

/** The client-facing error for a wrong code (also used outside login, without attempt counts). */
export function codeFailureError(
  factor: 'totp' | 'recovery_code',
  failure: CodeFailure,
  extras: { attemptsRemaining?: number; afterLastAttempt?: 'sign_in_again' | 'locked' } = {},
): AppError {
  if (factor === 'recovery_code') return mfaErrors.recovery_code_invalid(undefined, extras);
  switch (failure.reason) {
    case 'replayed':
      return mfaErrors.mfa_code_reused(undefined, extras);
    case 'clock_drift': {
      const minutes = Math.round(Math.abs(failure.offsetSeconds) / 60);
      const direction = failure.offsetSeconds < 0 ? 'behind' : 'ahead of';
      return mfaErrors.mfa_code_invalid(
        `The code belongs to a time about ${minutes > 0 ? `${minutes} min` : `${Math.abs(failure.offsetSeconds)} s`} ${direction} the server. Set the device clock to automatic time and try the current code.`,
        { ...extras, hint: 'clock_drift', offsetSeconds: failure.offsetSeconds },
      );
    }
    default:
      return mfaErrors.mfa_code_invalid(undefined, extras);
  }
}

/** A correct code (or recovery code) ends the run of failures. */
export async function resetCodeFailures(tx: Tx, userId: string): Promise<void> {
  // Unconditional: the user row read earlier may be stale under concurrent attempts.
  await tx.user.update({ where: { id: userId }, data: { failedMfaCount: 0, mfaLockedUntil: null } });
}
