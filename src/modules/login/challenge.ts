import { z } from 'zod';
import type { AppContext } from '../../context.js';
import type { Tx } from '../../db/client.js';
import { issueFlowToken } from '../flows/flow-tokens.js';

/**
 * The login challenge sits between the password step (or activation) and the second factor.
 * It is a LOGIN_CHALLENGE flow token: single purpose, ≤ 5 min, ≤ 5 code attempts, and accepted
 * by the MFA login endpoints only.
 */
export const MAX_CHALLENGE_ATTEMPTS = 5;

export type ChallengeNext = 'mfa' | 'mfa_enrollment';
export type ChallengeData = { next: ChallengeNext; amr: ['pwd'] };

/** What a challenge row stores after a verified password. */
export const challengeData = (next: ChallengeNext): ChallengeData => ({ next, amr: ['pwd'] });

export const LoginChallengeSchema = z
  .object({
    next: z.enum(['mfa', 'mfa_enrollment']).describe('What the frontend shows next: the code prompt, or the QR-code enrolment'),
    challengeToken: z.string().describe('Opaque; send it to /v1/auth/login/mfa or /v1/auth/login/mfa-enrollment[/verify]'),
    expiresIn: z.number().int().describe('Seconds until the challenge expires'),
  })
  .meta({ id: 'LoginChallenge' });

export type LoginChallenge = z.infer<typeof LoginChallengeSchema>;

export async function issueLoginChallenge(
  tx: Tx,
  ctx: Pick<AppContext, 'clock' | 'config'>,
  userId: string,
  next: ChallengeNext,
): Promise<LoginChallenge> {
  const ttl = ctx.config.loginChallengeTtlSeconds;
  const { token } = await issueFlowToken(tx, ctx.clock, { userId, purpose: 'LOGIN_CHALLENGE', ttlSeconds: ttl, data: challengeData(next) });
  return { next, challengeToken: token, expiresIn: ttl };
}

/** After a verified password (login or activation): the code prompt if MFA is active, else enrolment. */
export async function issueChallengeAfterPassword(
  tx: Tx,
  ctx: Pick<AppContext, 'clock' | 'config'>,
  userId: string,
): Promise<LoginChallenge> {
  const factor = await tx.totpFactor.findFirst({ where: { userId, status: 'ACTIVE' }, select: { id: true } });
  return issueLoginChallenge(tx, ctx, userId, factor ? 'mfa' : 'mfa_enrollment');
}
