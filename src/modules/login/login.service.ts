import type { AppContext } from '../../context.js';
import { recordAudit, type RequestMeta } from '../audit/audit.service.js';
import { accountErrors } from '../accounts/accounts.errors.js';
import { accountBlockedError } from '../accounts/blocked.js';
import { normalizePassword } from '../accounts/passwords.js';
import {
  accountLockedError,
  CLEARED_PASSWORD_LOCKOUT,
  isPasswordCheckSuspended,
  isPasswordLocked,
  mimicPasswordFailure,
  registerPasswordFailure,
} from '../accounts/password-lockout.js';
import { lockLoginState } from '../accounts/user-lock.js';
import { issueLoginChallenge, type LoginChallenge } from './challenge.js';

type Ctx = Pick<AppContext, 'db' | 'clock' | 'config' | 'hasher'>;

/**
 * The password step of the login (security.md items 5 and 6). Never a session: the answer is a
 * login challenge for the code step (`mfa`) or for enrolling the mandatory MFA (`mfa_enrollment`).
 *
 * Unknown e-mail, wrong password and not-yet-activated account answer the same invalid_credentials
 * and do the same work: one argon2 verification (a dummy hash when there is nothing to verify) and
 * the same database round trips (see mimicPasswordFailure). Blocked and locked are only told to whoever typed the correct password.
 */
export async function passwordLogin(ctx: Ctx, input: { email: string; password: string }, meta: RequestMeta): Promise<LoginChallenge> {
  const password = normalizePassword(input.password);
  const user = await ctx.db.user.findUnique({
    where: { email: input.email },
    select: {
      id: true,
      organizationId: true,
      status: true,
      passwordHash: true,
      passwordChangedAt: true,
      failedPasswordCount: true,
      passwordLockedUntil: true,
    },
  });

  const rejectUnverified = async (reason: string): Promise<never> => {
    await ctx.hasher.verifyDummy(password);
    await ctx.db.$transaction(async (tx) => {
      await mimicPasswordFailure(tx);
      await recordAudit(tx, ctx.clock, {
        type: 'login.password_failed',
        subjectUserId: user?.id ?? null,
        organizationId: user?.organizationId ?? null,
        meta,
        details: { reason, flow: 'login' },
      });
    });
    throw accountErrors.invalid_credentials();
  };

  if (!user) return rejectUnverified('unknown_email');
  if (user.status === 'INVITED' || !user.passwordHash) return rejectUnverified('not_activated');
  if (isPasswordCheckSuspended(user, ctx.clock.now())) return rejectUnverified('locked_unchecked');

  const { valid, needsRehash } = await ctx.hasher.verify(user.passwordHash, password);
  if (!valid) {
    await ctx.db.$transaction((tx) => registerPasswordFailure(tx, ctx, user, meta, 'login'));
    throw accountErrors.invalid_credentials();
  }

  // The password is correct: from here on the user may learn the account's state.
  const blocked = async (): Promise<never> => {
    const error = await accountBlockedError(ctx.db, ctx.config, user);
    await ctx.db.$transaction((tx) =>
      recordAudit(tx, ctx.clock, { type: 'login.blocked_attempt', subjectUserId: user.id, organizationId: user.organizationId, meta }),
    );
    throw error;
  };
  const locked = async (until: Date): Promise<never> => {
    await ctx.db.$transaction((tx) =>
      recordAudit(tx, ctx.clock, {
        type: 'login.password_failed',
        subjectUserId: user.id,
        organizationId: user.organizationId,
        meta,
        details: { reason: 'locked', flow: 'login', until: until.toISOString() },
      }),
    );
    throw accountLockedError(until, ctx.clock.now());
  };
  if (user.status === 'BLOCKED') return blocked();
  if (isPasswordLocked(user, ctx.clock.now()) && user.passwordLockedUntil) return locked(user.passwordLockedUntil);

  // Parameters raised since this hash was made: store a stronger one (once; argon2 runs outside the transaction).
  const rehash = needsRehash ? await ctx.hasher.hash(password) : undefined;

  const outcome = await ctx.db.$transaction(async (tx) => {
    // The row read above is as old as the argon2 run. Decide again on the row as committed now,
    // under its lock: a lock set meanwhile by concurrent wrong guesses, a block, or a password
    // reset must not be overridden (and the lock must not be cleared) by this success.
    const current = await lockLoginState(tx, user.id);
    const sameTime = (a: Date | null, b: Date | null) => (a?.getTime() ?? null) === (b?.getTime() ?? null);
    if (!current || !sameTime(current.passwordChangedAt, user.passwordChangedAt) || current.status === 'INVITED') {
      return { kind: 'changed' as const };
    }
    if (current.status === 'BLOCKED') return { kind: 'blocked' as const };
    const until = current.passwordLockedUntil;
    if (until && until > ctx.clock.now()) return { kind: 'locked' as const, until };
    await tx.user.update({ where: { id: user.id }, data: CLEARED_PASSWORD_LOCKOUT });
    if (rehash) {
      // Only if nobody changed the password meanwhile.
      await tx.user.updateMany({ where: { id: user.id, passwordHash: user.passwordHash }, data: { passwordHash: rehash } });
    }
    const factor = await tx.totpFactor.findFirst({ where: { userId: user.id, status: 'ACTIVE' }, select: { id: true } });
    const challenge = await issueLoginChallenge(tx, ctx, user.id, factor ? 'mfa' : 'mfa_enrollment');
    await recordAudit(tx, ctx.clock, {
      type: 'login.password_succeeded',
      actorUserId: user.id,
      subjectUserId: user.id,
      organizationId: user.organizationId,
      meta,
      details: { next: challenge.next, ...(rehash ? { rehashed: true } : {}) },
    });
    return { kind: 'ok' as const, challenge };
  });
  switch (outcome.kind) {
    case 'ok':
      return outcome.challenge;
    case 'blocked':
      return blocked();
    case 'locked':
      return locked(outcome.until);
    case 'changed':
      // The password was changed (reset) while this one was being checked: it is no longer valid.
      throw accountErrors.invalid_credentials();
  }
}
