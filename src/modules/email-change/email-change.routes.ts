import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { requireActor } from '../../access/actor.js';
import { ContactSchema, problemResponses } from '../../http/problem.js';
import { requestMeta } from '../../http/request-meta.js';
import { accountLockedResponse, FlowTokenInputSchema } from '../accounts/accounts.schemas.js';
import { ACCOUNT_RATE_LIMITS } from '../accounts/rate-limits.js';
import { PasswordReauthSchema } from '../mfa/mfa.schemas.js';
import { EmailSchema } from '../organization/organization.schemas.js';
import {
  confirmEmailChange,
  EMAIL_CHANGE_TTL_SECONDS,
  EMAIL_CHANGES_PER_HOUR,
  EMAIL_UNDO_TTL_SECONDS,
  pendingEmailChange,
  requestEmailChange,
  undoEmailChange,
} from './email-change.service.js';

const EmailChangeRequestedSchema = z
  .object({
    status: z.enum(['verification_sent']),
    email: z.string().describe('The new address, where the confirmation link was sent'),
    expiresAt: z.iso.datetime().describe('Until when the link works'),
  })
  .meta({ id: 'EmailChangeRequested' });

const PendingEmailChangeSchema = z
  .object({
    pending: z
      .object({ email: z.string().describe('Where the confirmation link went'), expiresAt: z.iso.datetime() })
      .nullable()
      .describe('null when no change waits for its confirmation'),
  })
  .meta({ id: 'PendingEmailChange' });

const EmailChangedSchema = z
  .object({
    status: z.enum(['email_changed']),
    email: z.string().describe('The account\'s address from now on: sign in with it'),
  })
  .meta({ id: 'EmailChanged' });

const EmailRestoredSchema = z
  .object({
    status: z.enum(['email_restored']),
    email: z.string().describe('The account\'s address again: sign in with it after choosing a new password (link in the confirmation mail)'),
    blocked: z
      .object({ contact: ContactSchema })
      .nullable()
      .describe(
        'Set when the account is blocked (often support\'s or an administrator\'s first step on a takeover): the address is back and the account ' +
          'secured, but signing in waits until the block is lifted: ask `contact`. Then choose a new password ("forgot password" if the link expired).',
      ),
  })
  .meta({ id: 'EmailRestored' });

/** A user's own change of e-mail address: asked for signed in, confirmed from the link sent to the new address. */
export const emailChangeRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post(
    '/v1/me/email',
    {
      config: { access: { permission: 'me:update' }, rateLimit: ACCOUNT_RATE_LIMITS.emailChange },
      schema: {
        operationId: 'requestMyEmailChange',
        tags: ['me'],
        summary: 'Change my e-mail address: a confirmation link goes to the new address (the current password is required)',
        description:
          `Sends a single-use link (${EMAIL_CHANGE_TTL_SECONDS / 3600} h) to the new address; the account keeps its current address until the link is opened ` +
          '(POST /v1/email-change/confirm). A newer request replaces an older one. The answer is the same whether or not another account uses the new address ' +
          '(that is told to whoever confirms). `GET /v1/me/email` shows the pending change. ' +
          'Errors: 409 email_unchanged (the current address, in any letter case), 403 reauthentication_failed (wrong password; counts towards the ' +
          `password lockout), 423 account_locked, 429 rate_limited with Retry-After after ${EMAIL_CHANGES_PER_HOUR} requests of the account within an hour, ` +
          `or ${ACCOUNT_RATE_LIMITS.emailChange.max} requests from one IP address within ${ACCOUNT_RATE_LIMITS.emailChange.timeWindow} (refused ones included).`,
        body: z.strictObject({ email: EmailSchema, password: PasswordReauthSchema }),
        response: { 202: EmailChangeRequestedSchema, ...problemResponses(409, 429), ...accountLockedResponse },
      },
    },
    async (request, reply) => {
      const { email, expiresAt } = await requestEmailChange(app.ctx, requireActor(request), request.body, requestMeta(request));
      return reply.status(202).send({ status: 'verification_sent' as const, email, expiresAt: expiresAt.toISOString() });
    },
  );

  app.get(
    '/v1/me/email',
    {
      config: { access: { permission: 'me:read' } },
      schema: {
        operationId: 'getMyPendingEmailChange',
        tags: ['me'],
        summary: 'The e-mail change I asked for that waits for its confirmation, if any',
        description: 'Asking again (POST /v1/me/email) replaces it; a password change or reset cancels it. The current address is in `GET /v1/me`.',
        response: { 200: PendingEmailChangeSchema },
      },
    },
    async (request, reply) => {
      const pending = await pendingEmailChange(app.ctx, requireActor(request).userId);
      reply.header('cache-control', 'no-store');
      return { pending: pending ? { email: pending.email, expiresAt: pending.expiresAt.toISOString() } : null };
    },
  );

  app.post(
    '/v1/email-change/confirm',
    {
      config: { access: 'public', rateLimit: ACCOUNT_RATE_LIMITS.emailChangeConfirm },
      schema: {
        operationId: 'confirmEmailChange',
        tags: ['me'],
        summary: 'Confirm a new e-mail address with the token from the e-mail (single use, 24 h)',
        description:
          'The account\'s address changes; links sent to the old address (password reset, MFA reset) stop working and the old address is told. ' +
          'Sessions and tokens stay valid (they carry no address): a signed-in frontend reloads `GET /v1/me`; the next sign-in uses the new address. ' +
          'Errors: 400 link_invalid (no such link); 410 link_expired; 410 link_used with `linkState` `used` (the address was changed with this link: ' +
          'sign in with it) or `replaced` (this change was cancelled: a newer request, a password change or reset, or another change of the account; ' +
          'sign in and ask again); 409 email_taken (another account uses the address, or left it less than 7 days ago and may still take it back: ' +
          'nothing changes, and the link still works should the address become free); 401 token_in_query (the token belongs in the body).',
        body: z.strictObject({ token: FlowTokenInputSchema }),
        response: { 200: EmailChangedSchema, ...problemResponses(401, 409, 410) },
      },
    },
    async (request, reply) => {
      const { email } = await confirmEmailChange(app.ctx, request.body.token, requestMeta(request));
      reply.header('cache-control', 'no-store');
      return { status: 'email_changed' as const, email };
    },
  );

  app.post(
    '/v1/email-change/undo',
    {
      config: { access: 'public', rateLimit: ACCOUNT_RATE_LIMITS.emailChangeConfirm },
      schema: {
        operationId: 'undoEmailChange',
        tags: ['me'],
        summary: `Undo a move to another e-mail address with the token from the notice to the address left (single use, ${EMAIL_UNDO_TTL_SECONDS / 86400} days)`,
        description:
          'For the owner of an account that someone else moved (they had its session and password). The address comes back (verified), every session of ' +
          'the account ends, the links that went to the other address (password reset, MFA reset, a pending change) and the undo links of later moves stop ' +
          'working, the password is replaced by one nobody knows and the recovery codes are deleted, and a link to choose a new password (30 min) goes to ' +
          'the restored address; the address left is told. The authenticator stays as it is. A later move, a password reset or a block do not end this link; on a blocked account it works and the block stays (`blocked.contact`: whom to ask to lift it). ' +
          'Errors: 400 link_invalid (no such link); 410 link_expired; 410 link_used with `linkState` `used` or `replaced` (an earlier move was undone ' +
          'since); 409 email_taken (another account uses the ' +
          'address now: nothing changes, and the link still works should the address become free); 401 token_in_query (the token belongs in the body).',
        body: z.strictObject({ token: FlowTokenInputSchema }),
        response: { 200: EmailRestoredSchema, ...problemResponses(401, 409, 410) },
      },
    },
    async (request, reply) => {
      const { email, blocked } = await undoEmailChange(app.ctx, request.body.token, requestMeta(request));
      reply.header('cache-control', 'no-store');
      return { status: 'email_restored' as const, email, blocked: blocked && { contact: blocked } };
    },
  );
};
