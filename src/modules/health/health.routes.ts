import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { commonErrors } from '../../errors.js';

const Status = z.object({ status: z.enum(['ok']) });

/**
 * Readiness: the database answers, the instance is not shutting down, and it has been able to sign
 * tokens since it started. An instance started with the wrong ENCRYPTION_KEYS (a key id missing,
 * or the wrong secret mounted under the right id) never becomes ready, so a rolling deploy stops
 * there while the old instances serve, instead of taking logins down everywhere. Losing the key
 * later (a signing-key rotation sealed under a key this instance lacks) keeps it ready: it still
 * verifies tokens, answers introspection and serves the JWKS, and since that usually happens to
 * every instance at once, failing readiness would turn a login outage into a total one. The
 * `signing_key_loaded` gauge and the log report it (docs/operations.md).
 *
 * The readiness probe is public and not rate limited (probes must always get through), so it
 * answers from one database round trip a second at most, shared by every request meanwhile: a
 * flood of /readyz cannot queue logins behind pool connections.
 */
export const READINESS_CHECK_REUSE_MS = 1000;

export const healthRoutes: FastifyPluginAsyncZod = async (app) => {
  // From the start of a graceful shutdown's drain on (http/shutdown.ts), this instance is not
  // ready: a balancer stops sending it new requests while it still listens and finishes those in flight.
  let lastCheck: { at: number; done: Promise<unknown> } | undefined;
  const databaseReachable = () => {
    const now = performance.now();
    if (!lastCheck || now - lastCheck.at >= READINESS_CHECK_REUSE_MS) lastCheck = { at: now, done: app.ctx.pool.query('SELECT 1') };
    return lastCheck.done;
  };
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
        summary: 'The database is reachable, the instance has signing keys and is not shutting down (503 otherwise)',
        response: { 200: Status },
      },
    },
    async (request) => {
      if (app.drain.since !== null) throw commonErrors.service_unavailable('The service is shutting down.', {}, { 'retry-after': '5' });
      if (!app.ctx.signer.everLoaded) {
        throw commonErrors.service_unavailable('No signing key could be loaded yet (see the log: ENCRYPTION_KEYS).', {}, { 'retry-after': '5' });
      }
      try {
        await databaseReachable();
      } catch (err) {
        request.log.warn({ err }, 'readiness check: database not reachable');
        throw commonErrors.service_unavailable('The database is not reachable.', {}, { 'retry-after': '5' });
      }
      return { status: 'ok' as const };
    },
  );
};
