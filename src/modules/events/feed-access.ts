import type { FastifyRequest } from 'fastify';
import type { AppContext } from '../../context.js';
import { defineErrors } from '../../errors.js';

export const feedErrors = defineErrors({
  event_feed_not_allowed: {
    status: 403,
    title: 'This service client may not read the event feed or the users and organisations it names (EVENT_FEED_CLIENTS)',
  },
});

/**
 * The feed and the reads behind it span every organisation: only the service clients the operator
 * listed in EVENT_FEED_CLIENTS may use them; any other client (introspection only) gets 403.
 */
export function requireFeedClient(ctx: Pick<AppContext, 'config'>, request: FastifyRequest): void {
  if (!ctx.config.eventFeedClients.includes(request.serviceClient!.id)) throw feedErrors.event_feed_not_allowed();
}
