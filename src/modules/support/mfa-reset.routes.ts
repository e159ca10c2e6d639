import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { problemResponses } from '../../http/problem.js';
import { accountBlockedResponse } from '../accounts/accounts.schemas.js';
import { requestMeta } from '../../http/request-meta.js';
import { confirmMfaReset } from './mfa-reset.service.js';
import { ConfirmMfaResetBody, MfaResetConfirmedSchema } from './support.schemas.js';

const CONFIRM_RATE_LIMIT = { max: 10, timeWindow: 60_000 };

/** The user's side of the support-verified MFA reset: the link from the e-mail lands here. */
export const mfaResetConfirmRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post(
    '/v1/mfa-reset/confirm',
    {
      config: { access: 'public', rateLimit: CONFIRM_RATE_LIMIT },
      schema: {
        operationId: 'confirmMfaReset',
        tags: ['mfa'],
        summary: 'Confirm a support-started MFA reset with the token from the e-mail (single use, 24 h)',
        description:
          'Removes the authenticator and recovery codes, ends every session and sends a mail saying a new authenticator can be set up at the next login. ' +
          'Invalid token: 400 link_invalid; used, replaced or expired: 410 link_used (`linkState` says which) / link_expired; ' +
          'the account was blocked meanwhile (which voids the link): 403 account_blocked with whom to contact.',
        body: ConfirmMfaResetBody,
        response: { 200: MfaResetConfirmedSchema, ...problemResponses(401, 410), ...accountBlockedResponse },
      },
    },
    async (request, reply) => {
      await confirmMfaReset(app.ctx, request.body.token, requestMeta(request));
      reply.header('cache-control', 'no-store');
      return { status: 'mfa_reset' as const, next: 'login' as const };
    },
  );
};
