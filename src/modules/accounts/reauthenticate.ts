import type { AppContext } from '../../context.js';
import type { Tx } from '../../db/client.js';
import { poolSql } from '../../db/sql.js';
import { commonErrors } from '../../errors.js';
import { recordAudits, type RequestMeta } from '../audit/audit.service.js';
import { mfaErrors } from '../mfa/mfa.errors.js';
import { normalizePassword } from './passwords.js';
import { lockLoginState } from './user-lock.js';
import {
  accountLockedError,
  recordPasswordFailure,
  releasePasswordAttemptSurely,
  reservePasswordAttempt,
  type PasswordFailureFlow,
} from './password-lockout.js';

/**
 * Re-authentication ("sudo") with the current password before a sensitive action (change password,
 * remove MFA, regenerate recovery codes). A wrong password counts towards the account's password
 * lockout exactly like a failed login, so a stolen session cannot be used to guess the password;
 * while the password is locked the answer is 423 account_locked and nothing is checked.
 * The attempt is counted before the hash is checked (reservePasswordAttempt), so concurrent
 * guesses meet the lock like sequential ones; a correct password gives its attempt back (unlike a
 * login it does not reset the count).
 * Throws 403 reauthentication_failed on a wrong password; returns the user row otherwise. The
 * caller then performs the action in inReauthenticatedTransaction().
 * Every refusal for a lock is audited, like a locked login (security.md item 26): a stolen session
 * submitting passwords during a lock leaves a trace although nothing is checked.
 */
export async function reauthenticate(
  ctx: Pick<AppContext, 'db' | 'pool' | 'clock' | 'hasher'>,
  userId: string,
  password: string,
  meta: RequestMeta,
  flow: PasswordFailureFlow = 'reauthentication',
) {
  const user = await ctx.db.user.findUnique({
    where: { id: userId },
    select: {
      id: true,
      email: true,
      name: true,
      language: true,
      status: true,
      organizationId: true,
      passwordHash: true,
      passwordChangedAt: true,
      organization: { select: { name: true } },
    },
  });
  if (!user || user.status !== 'ACTIVE' || !user.passwordHash) throw commonErrors.unauthenticated();

  const sql = poolSql(ctx.pool);
  const { attempt } = await reservePasswordAttempt(sql, ctx, { userId: user.id }, 'reauthentication', { meta, flow });
  if (!attempt) {
    // Nothing counted, nothing checked: the password is locked (or the account changed meanwhile).
    const current = await ctx.db.user.findUnique({ where: { id: user.id }, select: { status: true, passwordLockedUntil: true } });
    const now = ctx.clock.now();
    if (current?.status === 'ACTIVE' && current.passwordLockedUntil && current.passwordLockedUntil > now) {
      return refuse(ctx, user, { reason: 'locked', until: current.passwordLockedUntil }, meta, flow);
    }
    throw commonErrors.unauthenticated();
  }
  if (attempt.status !== 'ACTIVE') {
    await releasePasswordAttemptSurely(sql, ctx, attempt);
    throw commonErrors.unauthenticated();
  }

  let valid: boolean;
  try {
    // The hash as of the reservation; inReauthenticatedTransaction compares its passwordChangedAt.
    ({ valid } = await ctx.hasher.verify(attempt.passwordHash, normalizePassword(password)));
  } catch (err) {
    await releasePasswordAttemptSurely(sql, ctx, attempt).catch(() => undefined);
    throw err;
  }
  if (!valid) {
    await recordPasswordFailure(sql, ctx, user, attempt, meta, flow);
    throw mfaErrors.reauthentication_failed('The password is not correct.');
  }
  // Not counted, even when the database drops the first try (the action's transaction follows).
  await releasePasswordAttemptSurely(sql, ctx, attempt);
  return { ...user, passwordHash: attempt.passwordHash, passwordChangedAt: attempt.passwordChangedAt, flow };
}

type ReauthenticatedUser = { id: string; organizationId: string | null; passwordChangedAt: Date | null; flow: PasswordFailureFlow };

/** Why a password that was correct when checked no longer counts by the time the action runs. */
type LateRefusal = { reason: 'locked'; until: Date } | { reason: 'password_changed' };

/** The refusal's answer, after its audit row (committed on its own, as the action is not): 423 for a lock, 403 otherwise. */
async function refuse(
  ctx: Pick<AppContext, 'pool' | 'clock'>,
  user: { id: string; organizationId: string | null },
  refusal: LateRefusal,
  meta: RequestMeta,
  flow: PasswordFailureFlow,
): Promise<never> {
  const until = refusal.reason === 'locked' ? refusal.until : null;
  await recordAudits(poolSql(ctx.pool), ctx.clock, [
    {
      type: 'login.password_failed',
      actorUserId: user.id,
      subjectUserId: user.id,
      organizationId: user.organizationId,
      meta,
      details: { reason: refusal.reason, flow, ...(until ? { until: until.toISOString() } : {}) },
    },
  ]);
  throw until ? accountLockedError(until, ctx.clock.now()) : mfaErrors.reauthentication_failed('The password is not correct.');
}

/**
 * The sensitive action's transaction, for the user returned by reauthenticate(): it first locks the
 * user row and decides again on it as committed now. Concurrent wrong guesses may have locked the
 * password (or a reset replaced it) while this password was being hashed; a lock in force then
 * wins over this (correct) password, exactly as at login. Either way the action is rolled back and
 * the refusal audited outside it.
 */
export async function inReauthenticatedTransaction<T>(
  ctx: Pick<AppContext, 'db' | 'pool' | 'clock'>,
  user: ReauthenticatedUser,
  meta: RequestMeta,
  action: (tx: Tx) => Promise<T>,
): Promise<T> {
  try {
    return await ctx.db.$transaction(async (tx) => {
      const refusal = await lateRefusal(tx, ctx, user);
      if (refusal) throw new RefusedLate(refusal);
      return action(tx);
    });
  } catch (err) {
    if (err instanceof RefusedLate) return refuse(ctx, user, err.refusal, meta, user.flow);
    throw err;
  }
}

class RefusedLate extends Error {
  constructor(readonly refusal: LateRefusal) {
    super(refusal.reason);
  }
}

/** Locks the user row; unauthenticated when the account is no longer active; otherwise what now refuses the password, or null. */
async function lateRefusal(tx: Tx, ctx: Pick<AppContext, 'clock'>, user: { id: string; passwordChangedAt: Date | null }): Promise<LateRefusal | null> {
  const current = await lockLoginState(tx, user.id);
  if (!current || current.status !== 'ACTIVE') throw commonErrors.unauthenticated();
  if (current.passwordChangedAt?.getTime() !== user.passwordChangedAt?.getTime()) return { reason: 'password_changed' };
  const until = current.passwordLockedUntil;
  return until && until > ctx.clock.now() ? { reason: 'locked', until } : null;
}
