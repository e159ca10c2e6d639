import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { commonErrors } from '../../errors.js';

const Status = z.object({ status: z.enum(['ok']) });

export const healthRoutes: FastifyPluginAsyncZod = async (app) => {
  // From the start of a graceful shutdown on, this instance is not ready: a balancer polling over
  // a kept-alive connection stops sending it new requests while it finishes those in flight.
  let draining = false;
  app.addHook('preClose', (done) => {
    draining = true;
    done();
  });

  app.get(
    '/healthz',
    {
      config: { access: 'public' },
      schema: { operationId: 'getHealth', tags: ['operations'], summary: 'The process is alive', response: { 200: Status } },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      config: { access: 'public' },
      schema: {
        operationId: 'getReadiness',
        tags: ['operations'],
        summary: 'The database is reachable and the instance is not shutting down (503 otherwise)',
        response: { 200: Status },
      },
    },
    async (request) => {
      if (draining) throw commonErrors.service_unavailable('The service is shutting down.', {}, { 'retry-after': '5' });
      try {
        await app.ctx.pool.query('SELECT 1');
      } catch (err) {
        request.log.warn({ err }, 'readiness check: database not reachable');
        throw commonErrors.service_unavailable('The database is not reachable.', {}, { 'retry-after': '5' });
      }
      return { status: 'ok' as const };
    },
  );
};
