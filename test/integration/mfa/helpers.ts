import type { FastifyInstance } from 'fastify';
import type { Test } from 'tap';
import { addSeconds } from '../../../src/lib/clock.js';
import { randomToken, sha256Hex } from '../../../src/lib/tokens.js';
import { issueLoginChallenge, type ChallengeNext } from '../../../src/modules/login/challenge.js';
import { createUser, currentTotp, signIn } from '../../helpers/factories.js';
import type { api } from '../../helpers/http.js';
import { outboxMails } from '../../helpers/outbox.js';

export type Request = ReturnType<typeof api>;

/**
 * The challenge the password step (or activation) hands out, issued directly: for tests about the
 * second step, not about passwords. Issuing one voids the user's older challenges, as login does.
 */
export async function challengeFor(app: FastifyInstance, userId: string, next: ChallengeNext): Promise<string> {
  const challenge = await app.ctx.db.$transaction((tx) => issueLoginChallenge(tx, app.ctx, userId, next));
  return challenge.challengeToken;
}

/** The base32 secret inside an otpauth URI. */
export function secretOf(otpauthUri: string): string {
  const secret = new URL(otpauthUri).searchParams.get('secret');
  if (!secret) throw new Error(`no secret in ${otpauthUri}`);
  return secret;
}

/** Enrols through the login endpoints (start + verify); returns the secret and the verify response body. */
export async function enrolAtLogin(t: Test, app: FastifyInstance, request: Request, challengeToken: string) {
  const started = await request({ url: '/v1/auth/login/mfa-enrollment', body: { challengeToken } });
  t.equal(started.status, 200, 'enrolment started');
  const secret = secretOf(started.body.otpauthUri);
  const verified = await request({
    url: '/v1/auth/login/mfa-enrollment/verify',
    body: { challengeToken, code: currentTotp(app, secret) },
  });
  t.equal(verified.status, 200, 'enrolment verified');
  return { secret, enrollment: started.body, tokens: verified.body };
}

/** A signed-in user who has just removed their own MFA (DELETE /v1/me/mfa): the session can only enrol now. */
export async function signedInWithoutMfa(t: Test, app: FastifyInstance, request: Request) {
  const { user, password } = await createUser(app.ctx.db, app);
  const session = await signIn(app, user);
  t.equal((await request({ method: 'DELETE', url: '/v1/me/mfa', token: session.accessToken, body: { password } })).status, 204, 'MFA removed');
  return { user, password, session };
}

/** Audit rows of one type for a user, oldest first. */
export async function auditOf(app: FastifyInstance, userId: string, type: string) {
  return app.ctx.db.auditEvent.findMany({ where: { subjectUserId: userId, type }, orderBy: { createdAt: 'asc' } });
}

/** Outbox mails of one template to an address. */
export async function mailsOf(app: FastifyInstance, to: string, template: string) {
  return outboxMails(app, { where: { toAddress: to, template } });
}

/**
 * Live challenges written side by side. Login keeps only the newest one alive, and a unique index
 * makes that a rule of the database; this drops the index in the test's own database so that the
 * layers behind it (the factor's last used step, the recovery code's single use, the account's
 * code lock) are tested on their own.
 */
export async function parallelChallenges(app: FastifyInstance, userId: string, count: number): Promise<string[]> {
  await app.ctx.db.$executeRawUnsafe('DROP INDEX IF EXISTS flow_tokens_one_pending_login_challenge');
  const now = app.ctx.clock.now();
  const tokens = Array.from({ length: count }, () => randomToken(32));
  await app.ctx.db.flowToken.createMany({
    data: tokens.map((token) => ({
      userId,
      purpose: 'LOGIN_CHALLENGE' as const,
      tokenHash: sha256Hex(token),
      expiresAt: addSeconds(now, 300),
      data: { next: 'mfa', amr: ['pwd'] },
      createdAt: now,
    })),
  });
  return tokens;
}
