import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { requireActor } from '../../access/actor.js';
import { problemResponses } from '../../http/problem.js';
import { noStore } from '../../http/no-store.js';
import { requestMeta } from '../../http/request-meta.js';
import {
  accountBlockedResponse,
  accountLockedResponse,
  FlowTokenInputSchema,
  LoginEmailSchema,
  NewPasswordSchema,
  PasswordInputSchema,
  PasswordPageSchema,
} from '../accounts/accounts.schemas.js';
import { ACCOUNT_RATE_LIMITS } from '../accounts/rate-limits.js';
import { requestPasswordReset } from './forgot-password.js';
import { LanguageSchema } from '../../lib/languages.js';
import { changePassword, inspectReset, resetPassword } from './password.service.js';

const AcceptedSchema = z
  .object({ status: z.literal('accepted'), message: z.string() })
  .meta({ id: 'PasswordForgotAccepted' });

const ACCEPTED = {
  status: 'accepted' as const,
  message: 'If an active account exists for this address, we have sent it a link to reset the password. The link expires after 30 minutes.',
};

const ResetLinkInfoSchema = z
  .object({
    email: z.string().describe('The account whose password the link sets'),
    language: LanguageSchema.describe("The user's language: show the page in it (the link's `lang` says the same)"),
    ...PasswordPageSchema.shape,
  })
  .meta({ id: 'ResetLinkInfo' });

const linkErrors =
  '400 `link_invalid` (unknown token or not a reset link), 410 `link_expired` (after 30 minutes), 410 `link_used` with `linkState`: `used`, ' +
  '`replaced` (a newer link, a password change or an e-mail change: use the newest e-mail or ask again) or `withdrawn` (its sender was blocked), ' +
  '403 `account_blocked` (with `contact`)';

const policyErrors = '422 `password_too_short`, `password_too_long`, `password_common`, `password_contains_context`';

export const passwordRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post(
    '/v1/password/forgot',
    {
      config: { access: 'public', rateLimit: ACCOUNT_RATE_LIMITS.passwordForgot },
      schema: {
        operationId: 'forgotPassword',
        tags: ['password'],
        summary: 'Send a password-reset link to this address, if it belongs to an active account',
        description:
          'Always answers 202 with the same body, whether or not the address is known (no account enumeration). ' +
          'The link (`APP_BASE_URL/reset-password?token=...`) works once, for 30 minutes; a newer one voids it. ' +
          'A temporary login lock does not prevent this.',
        body: z.strictObject({ email: LoginEmailSchema }),
        response: { 202: AcceptedSchema, ...problemResponses(401) },
      },
    },
    async (request, reply) => {
      await requestPasswordReset(app.ctx, request.body.email, requestMeta(request));
      noStore(reply);
      return reply.status(202).send(ACCEPTED);
    },
  );

  app.post(
    '/v1/password/reset/inspect',
    {
      config: { access: 'public', rateLimit: ACCOUNT_RATE_LIMITS.passwordResetInspect },
      schema: {
        operationId: 'inspectPasswordReset',
        tags: ['password'],
        summary: 'Whose account a reset link is for and until when it works: check it before asking for the new password',
        description: `Does not use up the link. Errors, as the reset would answer them: ${linkErrors}.`,
        body: z.strictObject({ token: FlowTokenInputSchema }),
        response: { 200: ResetLinkInfoSchema, ...problemResponses(401, 410), ...accountBlockedResponse },
      },
    },
    async (request, reply) => {
      noStore(reply);
      return inspectReset(app.ctx, request.body.token);
    },
  );

  app.post(
    '/v1/password/reset',
    {
      config: { access: 'public', rateLimit: ACCOUNT_RATE_LIMITS.passwordReset },
      schema: {
        operationId: 'resetPassword',
        tags: ['password'],
        summary: 'Set a new password with the e-mailed reset link',
        description:
          'Ends every session of the account, lifts a temporary login lock, leaves MFA as it is and does not sign in: ' +
          'the user then logs in with the new password and the one-time code. A notification mail follows.\n\n' +
          `Errors: 400 \`link_invalid\`, 410 \`link_expired\` / \`link_used\` (\`linkState\`: used, replaced by a newer link, or withdrawn), 403 \`account_blocked\`, ${policyErrors} (the link stays usable).`,
        body: z.strictObject({ token: FlowTokenInputSchema, password: NewPasswordSchema }),
        response: {
          204: z.null().describe('The password was changed'),
          ...problemResponses(401, 410, 422),
          ...accountBlockedResponse,
        },
      },
    },
    async (request, reply) => {
      await resetPassword(app.ctx, request.body, requestMeta(request));
      noStore(reply);
      return reply.status(204).send(null);
    },
  );

  app.put(
    '/v1/me/password',
    {
      config: { access: { permission: 'me:update' }, rateLimit: ACCOUNT_RATE_LIMITS.passwordChange },
      schema: {
        operationId: 'changeMyPassword',
        tags: ['me'],
        summary: 'Change the own password (the current one is required)',
        description:
          'Ends all other sessions of the user (this one stays) and sends a notification mail. Wrong current passwords ' +
          'count towards the temporary login lock.\n\n' +
          `Errors: 403 \`reauthentication_failed\` (current password wrong), 423 \`account_locked\`, ${policyErrors}.`,
        body: z.strictObject({ currentPassword: PasswordInputSchema, newPassword: NewPasswordSchema }),
        response: {
          204: z.null().describe('The password was changed'),
          ...problemResponses(422),
          ...accountLockedResponse,
        },
      },
    },
    async (request, reply) => {
      await changePassword(app.ctx, requireActor(request), request.body, requestMeta(request));
      return reply.status(204).send(null);
    },
  );
};
