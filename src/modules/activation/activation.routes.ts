import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { LanguageSchema } from '../../lib/languages.js';
import { problemResponses } from '../../http/problem.js';
import { noStore } from '../../http/no-store.js';
import { requestMeta } from '../../http/request-meta.js';
import { accountBlockedResponse, FlowTokenInputSchema, NewPasswordSchema, PasswordPageSchema } from '../accounts/accounts.schemas.js';
import { ACCOUNT_RATE_LIMITS } from '../accounts/rate-limits.js';
import { LoginChallengeSchema } from '../login/challenge.js';
import { activateAccount, inspectActivation } from './activation.service.js';

const ActivationInfoSchema = z
  .object({
    email: z.string().describe('The account the link belongs to'),
    name: z.string(),
    organizationName: z.string().nullable().describe('The reseller organisation (null for shop staff)'),
    language: LanguageSchema.describe("The language of the invitation mail, the user's until they choose another: show the page in it (the link's `lang` says the same)"),
    ...PasswordPageSchema.shape,
  })
  .meta({ id: 'ActivationInfo' });

const linkErrors =
  '400 `link_invalid` (unknown token or not an activation link), 410 `link_expired` (after 7 days), ' +
  '410 `link_used` with `linkState`: `used`, `replaced` (a newer link was sent: use the newest e-mail), `withdrawn` ' +
  '(its sender was blocked: ask for a new one) or `account_active` (sign in instead), ' +
  '403 `account_blocked` (with `contact`). An expired or replaced link of an account not yet ' +
  'activated also carries `contact` (`support`, `administrators`: whom to ask for a new invitation).';

export const activationRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post(
    '/v1/activation/inspect',
    {
      config: { access: 'public', rateLimit: ACCOUNT_RATE_LIMITS.activationInspect },
      schema: {
        operationId: 'inspectActivation',
        tags: ['activation'],
        summary: 'Whose account an activation link is for, which organisation, and until when it works',
        description: `Does not use up the link. Errors: ${linkErrors}`,
        body: z.strictObject({ token: FlowTokenInputSchema }),
        response: { 200: ActivationInfoSchema, ...problemResponses(401, 410), ...accountBlockedResponse },
      },
    },
    async (request, reply) => {
      noStore(reply);
      return inspectActivation(app.ctx, request.body.token);
    },
  );

  app.post(
    '/v1/activation',
    {
      config: { access: 'public', rateLimit: ACCOUNT_RATE_LIMITS.activation },
      schema: {
        operationId: 'activateAccount',
        tags: ['activation'],
        summary: 'Activate the account with the e-mailed link and a first password; continues with the MFA set-up',
        description:
          'Sets the password, marks the e-mail address verified and activates the account. Answers a login challenge ' +
          '(`next: "mfa_enrollment"`) for /v1/auth/login/mfa-enrollment, so the QR code can be shown right away. ' +
          `Errors: ${linkErrors} 422 \`password_too_short\`, \`password_too_long\`, \`password_common\`, ` +
          '`password_contains_context` (the link stays usable).',
        body: z.strictObject({ token: FlowTokenInputSchema, password: NewPasswordSchema }),
        response: { 200: LoginChallengeSchema, ...problemResponses(401, 410, 422), ...accountBlockedResponse },
      },
    },
    async (request, reply) => {
      const challenge = await activateAccount(app.ctx, request.body, requestMeta(request));
      noStore(reply);
      return challenge;
    },
  );
};
