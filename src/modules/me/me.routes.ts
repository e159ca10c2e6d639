import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { requireActor } from '../../access/actor.js';
import { problemResponses } from '../../http/problem.js';
import { requestMeta } from '../../http/request-meta.js';
import { AcceptTermsRequestSchema, AdministratorsSchema, MeSchema, PreferencesRequestSchema } from './me.schemas.js';
import { acceptTerms, getMe, listOwnAdministrators, updatePreferences } from './me.service.js';
import { RenameUserBody } from '../organization/organization.schemas.js';
import { PageQuery } from '../organization/pagination.js';
import { renameSelf } from '../organization/rename-user.js';
import { listSecurityEvents, SecurityEventPageSchema } from './security-events.js';

/** The signed-in user's own profile, terms, preferences, organisation administrators and security activity. */
export const meRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/v1/me',
    {
      config: { access: { permission: 'me:read' } },
      schema: {
        operationId: 'getMe',
        tags: ['me'],
        summary: 'My profile, organisation, roles, MFA status, terms, preferences and required actions',
        response: { 200: MeSchema },
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store');
      return getMe(app.ctx, requireActor(request));
    },
  );

  app.patch(
    '/v1/me',
    {
      config: { access: { permission: 'me:update' } },
      schema: {
        operationId: 'updateMe',
        tags: ['me'],
        summary: 'Correct my name (as shown to administrators and in mails)',
        description: 'The e-mail address is not changed here. Answers the updated profile.',
        body: RenameUserBody,
        response: { 200: MeSchema },
      },
    },
    async (request, reply) => {
      const actor = requireActor(request);
      await renameSelf(app.ctx, actor, request.body.name, requestMeta(request));
      reply.header('cache-control', 'no-store');
      return getMe(app.ctx, actor);
    },
  );

  app.post(
    '/v1/me/terms',
    {
      config: { access: { permission: 'me:update' }, rateLimit: { max: 30, timeWindow: '1 minute' } },
      schema: {
        operationId: 'acceptTerms',
        tags: ['me'],
        summary: 'Accept the general terms and conditions by typing my e-mail address',
        description:
          '`version` must be the current version (422 terms_version_mismatch, with currentVersion) and `email` ' +
          'must be the account e-mail, case-insensitive (422 terms_email_mismatch). Answers the updated profile. ' +
          'The `terms` claim of access tokens changes with the next refresh (introspection answers it at once). Accepting the version already accepted ' +
          'changes nothing (the time of the first acceptance stays).',
        body: AcceptTermsRequestSchema,
        response: { 200: MeSchema, ...problemResponses(422) },
      },
    },
    async (request, reply) => {
      const actor = requireActor(request);
      await acceptTerms(app.ctx, actor, request.body, requestMeta(request));
      reply.header('cache-control', 'no-store');
      return getMe(app.ctx, actor);
    },
  );

  app.patch(
    '/v1/me/preferences',
    {
      config: { access: { permission: 'me:update' }, rateLimit: { max: 30, timeWindow: '1 minute' } },
      schema: {
        operationId: 'updatePreferences',
        tags: ['me'],
        summary: 'Set my preferences (newsletter opt-in, off by default; the language of my mails)',
        description:
          'Send the preferences to change; the others stay. Saving the newsletter answer once (even unchanged) clears the `set_preferences` ' +
          'required action; the language alone does not. Answers the updated profile.',
        body: PreferencesRequestSchema,
        response: { 200: MeSchema },
      },
    },
    async (request, reply) => {
      const actor = requireActor(request);
      await updatePreferences(app.ctx, actor, request.body, requestMeta(request));
      reply.header('cache-control', 'no-store');
      return getMe(app.ctx, actor);
    },
  );

  app.get(
    '/v1/me/organization/administrators',
    {
      config: { access: { permission: 'organization:administrators:read' } },
      schema: {
        operationId: 'listMyOrganizationAdministrators',
        tags: ['me'],
        summary: "Names and e-mail addresses of my organisation's administrators (whom to contact)",
        response: { 200: AdministratorsSchema },
      },
    },
    async (request) => ({ administrators: await listOwnAdministrators(app.ctx, requireActor(request)) }),
  );

  app.get(
    '/v1/me/security-events',
    {
      config: { access: { permission: 'me:security-events' } },
      schema: {
        operationId: 'listMySecurityEvents',
        tags: ['me'],
        summary: 'My security activity, newest first: sign-ins and failed attempts, locks, changes of password, authenticator, address and status, and who made them',
        description:
          'For an account page where users spot what they did not do. The IP address and browser are shown for what you did and for attempts ' +
          "made without signing in (e.g. wrong passwords); not for an administrator's or support's changes. Kept as long as the audit log (AUDIT_RETENTION_DAYS).",
        querystring: z.strictObject(PageQuery),
        response: { 200: SecurityEventPageSchema },
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store');
      return listSecurityEvents(app.ctx, requireActor(request), request.query);
    },
  );
};
