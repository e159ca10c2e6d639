import type { Tx } from '../../db/client.js';
import type { FlowToken } from '../../generated/prisma/client.js';
import type { AppError } from '../../errors.js';
import type { Clock } from '../../lib/clock.js';
import { sha256Hex } from '../../lib/tokens.js';
import { lockUserRow } from '../accounts/user-lock.js';
import { MAX_CHALLENGE_ATTEMPTS, type ChallengeData, type ChallengeNext } from '../login/challenge.js';
import { mfaErrors } from './mfa.errors.js';

/**
 * The login challenge as the MFA endpoints see it. A challenge is a LOGIN_CHALLENGE flow token;
 * every state change on it is a conditional update, so concurrent requests with one challenge
 * serialise on its row and at most MAX_CHALLENGE_ATTEMPTS codes are ever evaluated for it.
 */

const MIN_TOKEN_LENGTH = 20;
const MAX_TOKEN_LENGTH = 200;

/** Why a challenge can no longer be used, or null while it is live. */
export function deadReason(flow: Pick<FlowToken, 'state' | 'attempts' | 'expiresAt'>, now: Date): AppError | null {
  if (flow.state === 'CONSUMED') return mfaErrors.challenge_used();
  if (flow.attempts >= MAX_CHALLENGE_ATTEMPTS) {
    return mfaErrors.challenge_exhausted(`${MAX_CHALLENGE_ATTEMPTS} wrong codes were entered for this login. Log in again.`);
  }
  if (flow.state !== 'PENDING') return mfaErrors.challenge_used();
  if (flow.expiresAt <= now) return mfaErrors.challenge_expired();
  return null;
}

/** The step the challenge was issued for, or null when its data says none. */
export function nextOf(flow: Pick<FlowToken, 'data'>): ChallengeNext | null {
  const next = (flow.data as Partial<ChallengeData> | null)?.next;
  return next === 'mfa' || next === 'mfa_enrollment' ? next : null;
}

/** The login's authentication methods once `factor` is verified: the challenge's ones plus it. */
export function amrAfter(flow: Pick<FlowToken, 'data'>, factor: 'otp' | 'rec'): string[] {
  const passed = (flow.data as Partial<ChallengeData> | null)?.amr;
  const before = Array.isArray(passed) && passed.every((m) => typeof m === 'string') ? passed : ['pwd'];
  return [...new Set([...before, factor])];
}

/** Postgres 55P03 lock_not_available, as Prisma's pg adapter reports it. */
function isLockNotAvailable(err: unknown): boolean {
  const cause = (err as { meta?: { driverAdapterError?: { cause?: { code?: unknown; originalCode?: unknown } } } } | null)?.meta
    ?.driverAdapterError?.cause;
  return cause?.code === '55P03' || cause?.originalCode === '55P03';
}

/**
 * Finds the live challenge for `token`, locked for this transaction, and checks it is for the
 * `expected` step.
 *
 * Lock order user → flow (src/modules/accounts/user-lock.ts): the user's row is locked first, so
 * all code attempts of one account run one after the other, each seeing the code lock and failure
 * count its predecessors committed (concurrent attempts on several live challenges can no longer
 * all slip past the account lock), and the 10th wrong code can void the user's other challenges
 * without deadlocking against attempts that hold them. The challenge row itself is then taken
 * with NOWAIT: whoever else holds it (not following the order) makes this 409 challenge_in_use at
 * once instead of a queue.
 */
export async function loadChallenge(tx: Tx, clock: Clock, token: string, expected: ChallengeNext): Promise<FlowToken> {
  if (typeof token !== 'string' || token.length < MIN_TOKEN_LENGTH || token.length > MAX_TOKEN_LENGTH) {
    throw mfaErrors.challenge_invalid();
  }
  const tokenHash = sha256Hex(token);
  const owner = await tx.flowToken.findUnique({ where: { tokenHash }, select: { userId: true, purpose: true } });
  // Any other kind of token (activation link, reset link, ...) is simply not a challenge.
  if (!owner || owner.purpose !== 'LOGIN_CHALLENGE') throw mfaErrors.challenge_invalid();
  await lockUserRow(tx, owner.userId);
  try {
    await tx.$queryRaw`SELECT id FROM flow_tokens WHERE token_hash = ${tokenHash} FOR UPDATE NOWAIT`;
  } catch (err) {
    if (isLockNotAvailable(err)) {
      throw mfaErrors.challenge_in_use('This login step is already being processed; wait for its answer.');
    }
    throw err;
  }
  const flow = await tx.flowToken.findUnique({ where: { tokenHash } });
  if (!flow || flow.purpose !== 'LOGIN_CHALLENGE') throw mfaErrors.challenge_invalid();
  const dead = deadReason(flow, clock.now());
  if (dead) throw dead;
  const next = nextOf(flow);
  if (next === null) throw mfaErrors.challenge_invalid();
  if (next !== expected) {
    throw mfaErrors.challenge_step_mismatch(
      next === 'mfa'
        ? 'MFA is already set up: send the code to /v1/auth/login/mfa.'
        : 'MFA is not set up yet: enrol with /v1/auth/login/mfa-enrollment.',
      { next },
    );
  }
  return flow;
}

/**
 * Takes one code attempt from the challenge before the code is evaluated (conditional increment),
 * so racing requests can never evaluate more than MAX_CHALLENGE_ATTEMPTS codes. Returns how many
 * attempts are left after this one.
 */
export async function reserveAttempt(tx: Tx, clock: Clock, flow: FlowToken): Promise<number> {
  const now = clock.now();
  const { count } = await tx.flowToken.updateMany({
    where: { id: flow.id, state: 'PENDING', expiresAt: { gt: now }, attempts: { lt: MAX_CHALLENGE_ATTEMPTS } },
    data: { attempts: { increment: 1 } },
  });
  // We hold the row lock (loadChallenge) until commit, so this read sees the settled state.
  const current = await tx.flowToken.findUniqueOrThrow({ where: { id: flow.id } });
  if (count !== 1) throw deadReason(current, now) ?? mfaErrors.challenge_used();
  return Math.max(0, MAX_CHALLENGE_ATTEMPTS - current.attempts);
}

/** After a failed code: when no attempt is left the challenge is dead (the user logs in again). */
export async function retireIfSpent(tx: Tx, flow: FlowToken, attemptsRemaining: number): Promise<void> {
  if (attemptsRemaining > 0) return;
  await tx.flowToken.updateMany({ where: { id: flow.id, state: 'PENDING' }, data: { state: 'VOIDED' } });
}

/** Marks the challenge used; call in the transaction that issues the session (a lost race rolls it back). */
export async function consumeChallenge(tx: Tx, clock: Clock, flow: FlowToken): Promise<void> {
  const now = clock.now();
  const { count } = await tx.flowToken.updateMany({
    where: { id: flow.id, state: 'PENDING', expiresAt: { gt: now } },
    data: { state: 'CONSUMED', consumedAt: now },
  });
  if (count !== 1) throw mfaErrors.challenge_used();
}
