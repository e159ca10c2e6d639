import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { requireActor } from '../../access/actor.js';
import { NoContent } from '../../http/no-content.js';
import { noStore } from '../../http/no-store.js';
import { conflictWithRetryAfter, problemResponses } from '../../http/problem.js';
import { requestMeta } from '../../http/request-meta.js';
import { accountBlockedResponse, accountLockedResponse, mfaLockedResponse } from '../accounts/accounts.schemas.js';
import { TokenResponseSchema } from '../sessions/sessions.schemas.js';
import { completeMfaLogin, startLoginEnrollment, verifyLoginEnrollment } from './login-mfa.service.js';
import { regenerateRecoveryCodes, removeOwnMfa, startSelfEnrollment, verifySelfEnrollment } from './me-mfa.service.js';
import {
  ChallengeTokenSchema,
  LoginMfaBodySchema,
  PasswordReauthSchema,
  RecoveryCodesResponseSchema,
  RecoveryCodesSchema,
  TotpCodeSchema,
  LoginTotpEnrollmentSchema,
  TotpEnrollmentSchema,
} from './mfa.schemas.js';

const EnrollmentTokenResponseSchema = TokenResponseSchema.extend({ recoveryCodes: RecoveryCodesSchema }).meta({
  id: 'EnrollmentTokenResponse',
  description: 'The session tokens plus the recovery codes, which are shown only in this response',
});

// Per IP. Generous: whole reseller offices sit behind one address; the per-account lock
// (10 wrong codes) and the per-challenge cap (5) are what stop guessing.
const CODE_RATE_LIMIT = { max: 60, timeWindow: 60_000 };
const ENROLLMENT_RATE_LIMIT = { max: 20, timeWindow: 60_000 };
const REAUTH_RATE_LIMIT = { max: 10, timeWindow: 60_000 };

const CHALLENGE_ERRORS =
  ' Challenge errors: 401 challenge_invalid (unknown token or not a login challenge); 410 challenge_expired, ' +
  'challenge_used (consumed or replaced by a newer login), challenge_exhausted (5 wrong codes); ' +
  '409 challenge_step_mismatch (`next` says which step the challenge is for), 409 challenge_in_use (another ' +
  'request with this challenge is still running: a double submit). 403 account_blocked; ' +
  '423 mfa_locked with Retry-After after 10 consecutive wrong codes on the account, and `contact`: whom to ask to reset ' +
  'the two-step login when the authenticator is lost.';

const CODE_ERRORS =
  ' Wrong code: 400 mfa_code_invalid (with `hint: "clock_drift"` and `offsetSeconds` when the code ' +
  'belongs to a time 1-5 minutes off the server clock), 400 mfa_code_reused (that code or a newer one was already ' +
  'accepted: wait for the next code); `attemptsRemaining` says how many more codes this challenge accepts, or how ' +
  'many more wrong codes lock code entry on the account (423 mfa_locked) when that comes first.';

/** MFA: the second login step, enrolment at first login, and the signed-in user's own MFA. */
export const mfaRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post(
    '/v1/auth/login/mfa',
    {
      config: { access: 'public', rateLimit: CODE_RATE_LIMIT },
      schema: {
        operationId: 'completeLoginWithMfa',
        tags: ['login'],
        summary: 'Second login step: the current TOTP code or a recovery code → session tokens',
        description:
          'For challenges with `next: "mfa"`. Send either `code` (6 digits) or `recoveryCode` (single use; ' +
          'the user is notified by e-mail). amr of the session: ["pwd","otp"] or ["pwd","rec"].' +
          CODE_ERRORS +
          ' Unknown or used recovery code: 400 recovery_code_invalid.' +
          CHALLENGE_ERRORS,
        body: LoginMfaBodySchema,
        response: { 200: TokenResponseSchema, ...problemResponses(401, 409, 410), ...mfaLockedResponse, ...accountBlockedResponse },
      },
    },
    async (request, reply) => {
      const tokens = await completeMfaLogin(app.ctx, request.body, requestMeta(request));
      noStore(reply);
      return tokens;
    },
  );

  app.post(
    '/v1/auth/login/mfa-enrollment',
    {
      config: { access: 'public', rateLimit: ENROLLMENT_RATE_LIMIT },
      schema: {
        operationId: 'startLoginMfaEnrollment',
        tags: ['login'],
        summary: 'First login: a new TOTP secret with its otpauth URI and QR code',
        description:
          'For challenges with `next: "mfa_enrollment"`. The factor stays pending until confirmed with ' +
          '/v1/auth/login/mfa-enrollment/verify; calling this again replaces the pending secret. The secret ' +
          'is never shown again after enrolment. 409 mfa_already_enrolled; 409 mfa_enrollment_in_progress (with ' +
          'Retry-After) while a signed-in session of the account is setting up an authenticator (after removing ' +
          'its MFA; until that session ends or for up to 15 minutes): finish it there.' +
          CHALLENGE_ERRORS,
        body: z.strictObject({ challengeToken: ChallengeTokenSchema }),
        response: {
          200: LoginTotpEnrollmentSchema,
          ...problemResponses(401, 409, 410),
          ...mfaLockedResponse,
          ...conflictWithRetryAfter(),
          ...accountBlockedResponse,
        },
      },
    },
    async (request, reply) => {
      const enrollment = await startLoginEnrollment(app.ctx, request.body.challengeToken);
      noStore(reply);
      return enrollment;
    },
  );

  app.post(
    '/v1/auth/login/mfa-enrollment/verify',
    {
      config: { access: 'public', rateLimit: CODE_RATE_LIMIT },
      schema: {
        operationId: 'verifyLoginMfaEnrollment',
        tags: ['login'],
        summary: 'First login: confirm the new TOTP factor with one code → session tokens + recovery codes',
        description:
          'Activates the pending factor (the confirming code cannot be used again) and signs in with amr ' +
          '["pwd","otp"]. The 10 recovery codes are in this response only. 409 mfa_enrollment_not_started; 409 ' +
          'mfa_already_enrolled (a signed-in session of the account confirmed its own set-up meanwhile: sign in with it); ' +
          '409 mfa_enrollment_in_progress (with Retry-After; no attempt counted): a signed-in session of the account ' +
          'started its own set-up, which replaced this QR code: finish it there, or start again later.' +
          CODE_ERRORS +
          CHALLENGE_ERRORS,
        body: z.strictObject({ challengeToken: ChallengeTokenSchema, code: TotpCodeSchema }),
        response: {
          200: EnrollmentTokenResponseSchema,
          ...problemResponses(401, 409, 410),
          ...mfaLockedResponse,
          ...conflictWithRetryAfter(),
          ...accountBlockedResponse,
        },
      },
    },
    async (request, reply) => {
      const result = await verifyLoginEnrollment(app.ctx, request.body, requestMeta(request));
      noStore(reply);
      return result;
    },
  );

  app.delete(
    '/v1/me/mfa',
    {
      config: { access: { permission: 'me:mfa' }, rateLimit: REAUTH_RATE_LIMIT },
      schema: {
        operationId: 'removeMyMfa',
        tags: ['me'],
        summary: 'Remove my MFA (e.g. new phone): re-enter the password; then enrol again',
        description:
          'Deletes the TOTP factor and the recovery codes, ends all other sessions and sends a notification ' +
          'e-mail. Until a new factor is confirmed (POST /v1/me/mfa/totp, /v1/me/mfa/totp/verify) this session ' +
          'can only enrol (403 mfa_enrollment_required elsewhere). 403 reauthentication_failed (wrong password; counts ' +
          'towards the password lockout), 423 account_locked, 409 mfa_not_enrolled.',
        body: z.strictObject({ password: PasswordReauthSchema }),
        response: { 204: NoContent, ...problemResponses(409), ...accountLockedResponse },
      },
    },
    async (request, reply) => {
      await removeOwnMfa(app.ctx, requireActor(request), request.body.password, requestMeta(request));
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/v1/me/mfa/totp',
    {
      config: { access: { permission: 'me:mfa' }, rateLimit: ENROLLMENT_RATE_LIMIT },
      schema: {
        operationId: 'startMyTotpEnrollment',
        tags: ['me'],
        summary: 'Set up a new TOTP factor (after removing the old one): secret, otpauth URI and QR code',
        description:
          'The factor stays pending until confirmed with POST /v1/me/mfa/totp/verify; calling this again ' +
          'replaces the pending secret. 409 mfa_already_enrolled: remove the current factor first (DELETE /v1/me/mfa).',
        response: { 200: TotpEnrollmentSchema, ...problemResponses(409) },
      },
    },
    async (request, reply) => {
      const enrollment = await startSelfEnrollment(app.ctx, requireActor(request));
      noStore(reply);
      return enrollment;
    },
  );

  app.post(
    '/v1/me/mfa/totp/verify',
    {
      config: { access: { permission: 'me:mfa' }, rateLimit: CODE_RATE_LIMIT },
      schema: {
        operationId: 'verifyMyTotpEnrollment',
        tags: ['me'],
        summary: 'Confirm the new TOTP factor with one code → new recovery codes (shown once)',
        description:
          'Activates the pending factor and replaces the recovery codes. 400 mfa_code_invalid (with the ' +
          'clock_drift hint when applicable), 409 mfa_enrollment_not_started, 409 mfa_already_enrolled. ' +
          "Then call POST /v1/auth/refresh: until the next refresh the session's access token is valid for this service only " +
          '(audience JWT_ISSUER), not for the shop or CSO 3.0.',
        body: z.strictObject({ code: TotpCodeSchema }),
        response: { 200: RecoveryCodesResponseSchema, ...problemResponses(409) },
      },
    },
    async (request, reply) => {
      const result = await verifySelfEnrollment(app.ctx, requireActor(request), request.body.code, requestMeta(request));
      noStore(reply);
      return result;
    },
  );

  app.post(
    '/v1/me/mfa/recovery-codes',
    {
      config: { access: { permission: 'me:mfa' }, rateLimit: REAUTH_RATE_LIMIT },
      schema: {
        operationId: 'regenerateMyRecoveryCodes',
        tags: ['me'],
        summary: 'Replace my recovery codes with 10 new ones (re-enter the password); the old ones stop working',
        description:
          '403 reauthentication_failed (wrong password; counts towards the password lockout), 423 account_locked, ' +
          '409 mfa_not_enrolled. The new codes are shown only in this response.',
        body: z.strictObject({ password: PasswordReauthSchema }),
        response: { 200: RecoveryCodesResponseSchema, ...problemResponses(409), ...accountLockedResponse },
      },
    },
    async (request, reply) => {
      const result = await regenerateRecoveryCodes(app.ctx, requireActor(request), request.body.password, requestMeta(request));
      noStore(reply);
      return result;
    },
  );
};
