import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { noStore } from '../../http/no-store.js';
import { problemResponses } from '../../http/problem.js';
import { MAX_PAGE_SIZE } from '../organization/pagination.js';
import { FEED_EVENT_TYPES, FeedPageSchema, readFeed } from './event-feed.js';
import { requireFeedClient } from './feed-access.js';

export const eventRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/v1/events',
    {
      config: { access: 'service_client' },
      schema: {
        operationId: 'readEventFeed',
        tags: ['tokens'],
        summary: 'The event feed for service clients: users and organisations that changed, in order, ids only',
        description:
          'HTTP Basic authentication with a service client listed in EVENT_FEED_CLIENTS (it spans every organisation; others get 403 event_feed_not_allowed). ' +
          'Poll with the `nextCursor` of the last answer: each event comes once, none skipped, in transaction order (not strictly commit order: ' +
          "for a user's or an organisation's current state, read GET /v1/service/users/{id} or /v1/service/organizations/{id}); a change appears once every transaction that started before it has ended (normally at once). " +
          'Start without a cursor: from the oldest event kept (AUDIT_RETENTION_DAYS; events from ' +
          `this version on). Types (a later version may add more: skip a type you do not know): ${FEED_EVENT_TYPES.join(', ')}. On user.erased, delete what you hold on that user. ` +
          'A cursor ahead of the feed (its database was restored to an earlier point) is refused with 409 feed_cursor_ahead: read what you hold again, then start without a cursor (events you have come again with the same ids).',
        querystring: z.strictObject({
          cursor: z.string().min(1).max(512).optional().describe('The `nextCursor` of the previous answer'),
          limit: z.coerce.number().int().min(1).max(MAX_PAGE_SIZE).default(MAX_PAGE_SIZE).describe('Events per answer (1..100)'),
        }),
        response: { 200: FeedPageSchema, ...problemResponses(409) },
      },
    },
    async (request, reply) => {
      requireFeedClient(app.ctx, request);
      noStore(reply);
      return readFeed(app.ctx.pool, request.query);
    },
  );
};
