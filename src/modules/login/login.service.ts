import type { AppContext } from '../../context.js';
import { recordAudit, recordAudits, type AuditInput, type RequestMeta } from '../audit/audit.service.js';
import { accountErrors } from '../accounts/accounts.errors.js';
import { accountBlockedError } from '../accounts/blocked.js';
import { normalizePassword } from '../accounts/passwords.js';
import {
  accountLockedError,
  recordPasswordFailure,
  releasePasswordAttempt,
  releasePasswordAttemptSurely,
  reservePasswordAttempt,
} from '../accounts/password-lockout.js';
import { lockLoginState } from '../accounts/user-lock.js';
import { mfaLockedError } from '../mfa/account-guard.js';
import { issueChallengeAfterPassword, type LoginChallenge } from './challenge.js';
import { poolSql, prismaSql } from '../../db/sql.js';
import { lockOutcome, succeedAtOnce, successAllowedSql, successDetails, successResetSql } from './login-success.js';
import { SqlParams } from '../../db/sql-params.js';

type Ctx = Pick<AppContext, 'db' | 'pool' | 'clock' | 'config' | 'hasher'>;

const sameTime = (a: Date | null, b: Date | null) => (a?.getTime() ?? null) === (b?.getTime() ?? null);

/**
 * The password step of the login (security.md items 5 and 6). Never a session: the answer is a
 * login challenge for the code step (`mfa`) or for enrolling the mandatory MFA (`mfa_enrollment`).
 *
 * Every attempt is counted against the account before its password is checked
 * (reservePasswordAttempt, accounts/password-lockout.ts), so a burst of concurrent guesses meets
 * the lock and the "no longer checked during a lock" rule exactly like a sequence does.
 *
 * Unknown e-mail, wrong password and not-yet-activated account answer the same invalid_credentials
 * and do the same work: the same statement that finds the account and counts the attempt (against
 * no row when there is nothing to count), one argon2 verification (a dummy hash when there is
 * nothing to verify) and one audit statement. Blocked and locked are only told to whoever typed the correct password.
 */
export async function passwordLogin(ctx: Ctx, input: { email: string; password: string }, meta: RequestMeta): Promise<LoginChallenge> {
  const password = normalizePassword(input.password);
  const sql = poolSql(ctx.pool);
  // Null when nothing is counted: no such account, not activated, or locked with so many failures
  // that the password is no longer checked.
  const { account: user, attempt } = await reservePasswordAttempt(sql, ctx, { email: input.email }, 'login', { meta, flow: 'login' });
  const countable = user !== null && user.status !== 'INVITED' && user.hasPassword;

  const rejectUnverified = async (reason: string): Promise<never> => {
    await ctx.hasher.verifyDummy(password);
    await recordAudits(sql, ctx.clock, [
      {
        type: 'login.password_failed',
        subjectUserId: user?.id ?? null,
        organizationId: user?.organizationId ?? null,
        meta,
        details: { reason, flow: 'login' },
      },
    ]);
    throw accountErrors.invalid_credentials();
  };

  if (!user) return rejectUnverified('unknown_email');
  if (!countable) return rejectUnverified('not_activated');
  if (!attempt) return rejectUnverified('locked_unchecked');

  // An attempt that could not be checked (hash queue full) or settled (the database failed while
  // a correct password was being accepted or told its block or lock) is given back. Not around the
  // deliberate refusals below: those give it back themselves, in the transaction that audits them.
  const releasingOnError = async <T>(work: () => Promise<T>): Promise<T> => {
    try {
      return await work();
    } catch (err) {
      await releasePasswordAttemptSurely(sql, ctx, attempt).catch(() => undefined);
      throw err;
    }
  };

  // The hash as of the reservation: a password set since the account was looked up is the one checked.
  const { valid, needsRehash } = await releasingOnError(() => ctx.hasher.verify(attempt.passwordHash, password));
  if (!valid) {
    // Already counted (and a lock it reached already set): audit only.
    await recordPasswordFailure(sql, ctx, user, attempt, meta, 'login');
    throw accountErrors.invalid_credentials();
  }

  // The password is correct: from here on the user may learn the account's state. A correct
  // password that does not sign in is not a failure: its reserved attempt is given back, in the
  // transaction that audits the refusal.
  const giveBack = (audit: Omit<AuditInput, 'subjectUserId' | 'organizationId' | 'meta'>) =>
    releasingOnError(() =>
      ctx.db.$transaction(async (tx) => {
        await releasePasswordAttempt(prismaSql(tx), ctx, attempt);
        await recordAudit(tx, ctx.clock, { ...audit, subjectUserId: user.id, organizationId: user.organizationId, meta });
      }),
    );
  const blocked = async (): Promise<never> => {
    const error = await releasingOnError(() => accountBlockedError(ctx.db, ctx.config, user));
    await giveBack({ type: 'login.blocked_attempt', details: { step: 'password' } });
    throw error;
  };
  const locked = async (until: Date): Promise<never> => {
    await giveBack({ type: 'login.password_failed', details: { reason: 'locked', flow: 'login', until: until.toISOString() } });
    throw accountLockedError(until, ctx.clock.now());
  };
  // Code entry locked (10 wrong codes in a row): told now, with whom to ask, rather than with a
  // challenge whose every code (and recovery code) the code step would refuse. The code step still
  // decides for a lock set after this.
  const codeLocked = async (until: Date): Promise<never> => {
    await giveBack({
      type: 'login.mfa_failed',
      actorUserId: user.id,
      details: { reason: 'locked', step: 'password', refused: true, flow: 'login', until: until.toISOString() },
    });
    throw await mfaLockedError(ctx.db, ctx.config, user, until, ctx.clock.now());
  };
  // A lock this attempt set itself (it was the 10th in a row, and correct) is no obstacle: success resets.
  const lockedByOthers = attempt.lockedUntil !== null && attempt.newLock === null;
  if (attempt.status === 'BLOCKED') return blocked();
  if (lockedByOthers && attempt.lockedUntil) return locked(attempt.lockedUntil);
  if (attempt.mfaLockedUntil && attempt.mfaLockedUntil > ctx.clock.now()) return codeLocked(attempt.mfaLockedUntil);

  // Parameters raised since this hash was made: store a stronger one (once; argon2 runs outside the transaction).
  const rehash = needsRehash ? await releasingOnError(() => ctx.hasher.hash(password)) : undefined;

  const challenge = await releasingOnError(() => succeedAtOnce(ctx, user, attempt, rehash, meta));
  if (challenge) return challenge;

  // The general path: the same decision, taken on the locked row, for whatever made the one statement refuse.
  const outcome = await releasingOnError(() => ctx.db.$transaction(async (tx) => {
    // The user row first (lock order, accounts/user-lock.ts), deciding on it as committed now: a
    // lock set meanwhile by concurrent wrong guesses, a block, or a password reset must not be
    // overridden (and the lock must not be cleared) by this success. In the usual case this one
    // conditional update is the whole decision and resets the count.
    const now = ctx.clock.now();
    /** The success's reset (successResetSql): only if its condition holds, or unconditionally. The row after it, if any. */
    const reset = async (onlyIfAllowed: boolean) => {
      const p = new SqlParams();
      const allowed = onlyIfAllowed ? ` AND ${successAllowedSql(p, attempt, now)}` : '';
      const [row] = await prismaSql(tx)<{ password_locked_until: Date | null }>(
        `UPDATE users SET ${successResetSql(p, attempt, now)} WHERE id = ${p.add(user.id, 'uuid')}${allowed} RETURNING password_locked_until`,
        p.values,
      );
      return row;
    };
    let cleared = await reset(true);
    if (!cleared) {
      const current = await lockLoginState(tx, user.id);
      if (!current || !sameTime(current.passwordChangedAt, attempt.passwordChangedAt) || current.status === 'INVITED') {
        return { kind: 'changed' as const };
      }
      if (current.status === 'BLOCKED') return { kind: 'blocked' as const };
      const until = current.passwordLockedUntil;
      if (until && until > ctx.clock.now()) return { kind: 'locked' as const, until };
      // The row changed between the update and the lock (e.g. a lock ran out): it holds now.
      cleared = await reset(false);
    }
    if (rehash) {
      // Only if nobody changed the password meanwhile.
      await tx.user.updateMany({ where: { id: user.id, passwordHash: attempt.passwordHash }, data: { passwordHash: rehash } });
    }
    const challenge = await issueChallengeAfterPassword(tx, ctx, user.id);
    await recordAudit(tx, ctx.clock, {
      type: 'login.password_succeeded',
      actorUserId: user.id,
      subjectUserId: user.id,
      organizationId: user.organizationId,
      meta,
      details: { next: challenge.next, ...successDetails(rehash), ...lockOutcome(attempt, cleared?.password_locked_until) },
    });
    return { kind: 'ok' as const, challenge };
  }));
  switch (outcome.kind) {
    case 'ok':
      return outcome.challenge;
    case 'blocked':
      return blocked();
    case 'locked':
      return locked(outcome.until);
    case 'changed':
      // The password was changed (reset) while this one was being checked: it is no longer valid.
      // (The change reset the count, this attempt with it; the attempt is still audited.)
      await recordAudits(sql, ctx.clock, [
        {
          type: 'login.password_failed',
          subjectUserId: user.id,
          organizationId: user.organizationId,
          meta,
          details: { reason: 'password_changed', flow: 'login' },
        },
      ]);
      throw accountErrors.invalid_credentials();
  }
}
