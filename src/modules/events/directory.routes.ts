import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { policyErrors } from '../../access/policy.js';
import { describeErrors, problemResponses } from '../../http/problem.js';
import { noStore } from '../../http/no-store.js';
import { ManagedUserSchema } from '../organization/organization.schemas.js';
import { OrganizationSummarySchema } from '../support/support.schemas.js';
import { requireFeedClient } from './feed-access.js';

/**
 * What the event feed's ids stand for, for the service clients that read it (EVENT_FEED_CLIENTS):
 * a user's or an organisation's current state, so a local copy (CSO 3.0's) can be brought in step
 * after an event. Only what such a copy needs, each field one whose change the feed tells
 * (FEED_EVENT_TYPES): no sign-in locks, invitation links, suspension reasons or audit. Built field by
 * field from the columns selected here.
 */

export const DirectoryUserSchema = ManagedUserSchema.pick({
  id: true,
  organizationId: true,
  email: true,
  name: true,
  status: true,
  roles: true,
  language: true,
  createdAt: true,
})
  .extend({
    newsletterOptIn: z.boolean().describe('The user agreed to get the shop newsletter (off until they say so)'),
    mfaEnrolled: z.boolean().describe('An authenticator app is set up and confirmed'),
  })
  .meta({ id: 'DirectoryUser' });

export const DirectoryOrganizationSchema = OrganizationSummarySchema.pick({ id: true, customerNumber: true, name: true, language: true, createdAt: true })
  .extend({
    suspendedAt: z.iso
      .datetime()
      .nullable()
      .describe('Set while support has suspended the organisation: its users are blocked until it is reinstated'),
  })
  .meta({ id: 'DirectoryOrganization' });

const tags = ['tokens'];
const ACCESS =
  'HTTP Basic authentication with a service client listed in EVENT_FEED_CLIENTS (it spans every organisation; others get 403 event_feed_not_allowed). ';

export const directoryRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/v1/service/users/:id',
    {
      config: { access: 'service_client' },
      schema: {
        operationId: 'readDirectoryUser',
        tags,
        summary: "A user's current state, for the event feed's readers",
        description:
          ACCESS +
          'After an event of the feed (GET /v1/events), read the user it names. An erased user (user.erased: delete your copy) ' +
          `and an id that never existed answer alike. ${describeErrors(['user_not_found'])}`,
        params: z.strictObject({ id: z.uuid().describe('User id, as the feed names it') }),
        response: { 200: DirectoryUserSchema, ...problemResponses(404) },
      },
    },
    async (request, reply) => {
      requireFeedClient(app.ctx, request);
      noStore(reply);
      const row = await app.ctx.db.user.findUnique({
        where: { id: request.params.id },
        select: {
          id: true,
          organizationId: true,
          email: true,
          name: true,
          status: true,
          roles: true,
          language: true,
          newsletterOptIn: true,
          createdAt: true,
          totpFactors: { where: { status: 'ACTIVE' }, select: { id: true }, take: 1 },
        },
      });
      if (!row) throw policyErrors.user_not_found();
      return {
        id: row.id,
        organizationId: row.organizationId,
        email: row.email,
        name: row.name,
        status: row.status,
        roles: [...row.roles],
        language: row.language,
        newsletterOptIn: row.newsletterOptIn,
        mfaEnrolled: row.totpFactors.length > 0,
        createdAt: row.createdAt.toISOString(),
      };
    },
  );

  app.get(
    '/v1/service/organizations/:id',
    {
      config: { access: 'service_client' },
      schema: {
        operationId: 'readDirectoryOrganization',
        tags,
        summary: "An organisation's current state, for the event feed's readers",
        description: ACCESS + `After an organisation event of the feed (GET /v1/events), read the organisation it names. ${describeErrors(['organization_not_found'])}`,
        params: z.strictObject({ id: z.uuid().describe('Organisation id, as the feed names it') }),
        response: { 200: DirectoryOrganizationSchema, ...problemResponses(404) },
      },
    },
    async (request, reply) => {
      requireFeedClient(app.ctx, request);
      noStore(reply);
      const row = await app.ctx.db.organization.findUnique({
        where: { id: request.params.id },
        select: { id: true, customerNumber: true, name: true, language: true, suspendedAt: true, createdAt: true },
      });
      if (!row) throw policyErrors.organization_not_found();
      return {
        id: row.id,
        customerNumber: row.customerNumber,
        name: row.name,
        language: row.language,
        suspendedAt: row.suspendedAt?.toISOString() ?? null,
        createdAt: row.createdAt.toISOString(),
      };
    },
  );
};
