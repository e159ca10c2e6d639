import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Config } from './config.js';
import type { AppContext } from './context.js';
import type { Database } from './db/client.js';
import { systemClock, type Clock } from './lib/clock.js';
import type { Keyring } from './lib/secret-box.js';
import { createPasswordHasher, type PasswordHasher } from './lib/password-hasher.js';
import { loggerOptions } from './logger.js';
import { errorHandler } from './plugins/error-handler.js';
import { openapi } from './plugins/openapi.js';
import { routeAccess } from './plugins/route-access.js';
import { standardResponses } from './plugins/standard-responses.js';
import { healthRoutes } from './modules/health/health.routes.js';

export const BODY_LIMIT_BYTES = 16 * 1024;

export type AppDeps = {
  config: Config;
  database: Database;
  keyring: Keyring;
  clock?: Clock;
  hasher?: PasswordHasher;
  /** Tests pass a pino instance writing to a buffer; otherwise built from config. */
  logger?: FastifyServerOptions['loggerInstance'];
};

/** Builds the app from explicit dependencies. The one place that lists every module. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config } = deps;
  const app = Fastify({
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: loggerOptions(config) }),
    bodyLimit: BODY_LIMIT_BYTES,
    trustProxy: config.trustProxy,
    genReqId: () => randomUUID(),
    routerOptions: { ignoreTrailingSlash: true },
  }).withTypeProvider<ZodTypeProvider>();

  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  const ctx: AppContext = {
    config,
    db: deps.database.db,
    pool: deps.database.pool,
    clock: deps.clock ?? systemClock,
    keyring: deps.keyring,
    hasher:
      deps.hasher ??
      createPasswordHasher({ ...config.argon2, maxConcurrent: config.hashQueue.maxConcurrent, maxQueued: config.hashQueue.maxQueued }),
  };
  app.decorate('ctx', ctx);
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });

  // Ecosystem and infrastructure first, routes last (the onRoute hooks must see every route).
  await app.register(errorHandler);
  await app.register(routeAccess);
  await app.register(standardResponses);
  await app.register(openapi);

  await app.register(healthRoutes);

  return app;
}
