import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { problemResponses } from '../../http/problem.js';
import { noStore } from '../../http/no-store.js';
import { requestMeta } from '../../http/request-meta.js';
import { accountBlockedResponse, LoginEmailSchema, PasswordInputSchema, passwordStepLockedResponse } from '../accounts/accounts.schemas.js';
import { ACCOUNT_RATE_LIMITS } from '../accounts/rate-limits.js';
import { LoginChallengeSchema } from './challenge.js';
import { passwordLogin } from './login.service.js';

export const loginRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post(
    '/v1/auth/login',
    {
      config: { access: 'public', rateLimit: ACCOUNT_RATE_LIMITS.login },
      schema: {
        operationId: 'login',
        tags: ['login'],
        summary: 'Login, password step: e-mail + password → a challenge for the code (or for setting up MFA)',
        description:
          'Never returns a session: the answer says what comes next (`mfa`: ask for the one-time code; `mfa_enrollment`: ' +
          'show the QR code) with a challenge token for that step (≤ 5 min).\n\n' +
          'Errors: 401 `invalid_credentials` — unknown e-mail, wrong password and not-yet-activated account answer ' +
          'identically. Only after a correct password: 403 `account_blocked` (with `contact`), 423 `account_locked` ' +
          '(after 10 consecutive wrong passwords; `Retry-After`; "forgot password" still works), 423 `mfa_locked` (code entry ' +
          'locked after 10 wrong codes in a row; `Retry-After`, and `contact`: whom to ask to reset the two-step login). 429 per IP.',
        body: z.strictObject({ email: LoginEmailSchema, password: PasswordInputSchema }),
        response: {
          200: LoginChallengeSchema,
          ...problemResponses(401),
          ...accountBlockedResponse,
          ...passwordStepLockedResponse,
        },
      },
    },
    async (request, reply) => {
      const challenge = await passwordLogin(app.ctx, request.body, requestMeta(request));
      noStore(reply);
      return challenge;
    },
  );
};
