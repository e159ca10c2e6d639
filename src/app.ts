import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { Counter } from 'prom-client';
import { validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { serializerCompiler } from './http/response-serializer.js';
import type { Config } from './config.js';
import type { AppContext } from './context.js';
import type { Database } from './db/client.js';
import { systemClock, type Clock } from './lib/clock.js';
import type { Keyring } from './lib/secret-box.js';
import { createPasswordHasher, type PasswordHasher } from './lib/password-hasher.js';
import { loggerOptions, requestChildLogger } from './logger.js';
import { commonErrors } from './errors.js';
import { answerClientError } from './http/client-error.js';
import { dropForwardedPorts } from './http/forwarded-for.js';
import { registerDrain, SHUTDOWN, type Drain } from './http/shutdown.js';
import { errorHandler, frameworkErrors } from './plugins/error-handler.js';
import { inputGuard } from './plugins/input-guard.js';
import { openapi } from './plugins/openapi.js';
import { routeAccess } from './plugins/route-access.js';
import { standardResponses } from './plugins/standard-responses.js';
import { metrics, metricsRoutes } from './plugins/metrics.js';
import { securityHeaders } from './plugins/security-headers.js';
import { connectionLimit } from './plugins/connection-limit.js';
import { loadShedding } from './plugins/load-shedding.js';
import { rateLimiting } from './plugins/rate-limit.js';
import { healthRoutes } from './modules/health/health.routes.js';
import { authenticate } from './plugins/authenticate.js';
import { createSigningKeyManager } from './modules/sessions/signing-keys.js';
import { sessionRoutes } from './modules/sessions/sessions.routes.js';
import { meRoutes } from './modules/me/me.routes.js';
import { mfaRoutes } from './modules/mfa/mfa.routes.js';
import { createMailTransport, type MailTransport } from './modules/mail/mail.transport.js';
import { startMailWorker } from './modules/mail/mail.worker.js';
import { startWebhookWorker } from './modules/events/webhook-delivery.js';
import { startRetentionSweeper } from './modules/retention/retention.sweeper.js';
import { startInstanceHeartbeat } from './modules/instances/instance-registry.js';
import { activationRoutes } from './modules/activation/activation.routes.js';
import { loginRoutes } from './modules/login/login.routes.js';
import { passwordRoutes } from './modules/password/password.routes.js';
import { organizationRoutes } from './modules/organization/organization.routes.js';
import { supportRoutes } from './modules/support/support.routes.js';
import { mfaResetConfirmRoutes } from './modules/support/mfa-reset.routes.js';
import { emailChangeRoutes } from './modules/email-change/email-change.routes.js';
import { auditRoutes } from './modules/audit/audit.routes.js';
import { eventRoutes } from './modules/events/events.routes.js';
import { directoryRoutes } from './modules/events/directory.routes.js';

export const BODY_LIMIT_BYTES = 16 * 1024;
/** The whole request (headers and body of at most 16 KiB) within 10 s, its headers within 5 s. */
export const REQUEST_TIMEOUT_MS = 10_000;
export const HEADERS_TIMEOUT_MS = 5_000;
export type AppDeps = {
  config: Config;
  database: Database;
  keyring: Keyring;
  clock?: Clock;
  hasher?: PasswordHasher;
  /** Where mail goes; default from config (SMTP_URL, else the log). Tests point it at an SMTP sink. */
  mailTransport?: MailTransport;
  /** Tests pass a pino instance writing to a buffer; otherwise built from config. */
  logger?: FastifyServerOptions['loggerInstance'];
  /** How often the signing keys are checked for changes (default KEY_CHANGE_CHECK_INTERVAL_MS; see createSigningKeyManager). */
  keyChangeCheckIntervalMs?: number;
};

/** Builds the app from explicit dependencies. The one place that lists every module. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config } = deps;
  const app = Fastify({
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: loggerOptions(config) }),
    childLoggerFactory: requestChildLogger,
    bodyLimit: BODY_LIMIT_BYTES,
    // A request must arrive whole in time: a client that sends its headers and then stalls or
    // trickles its body is answered 408 and disconnected, instead of holding the connection (and
    // a shutdown's drain) open for ever. Fastify's default is no limit; Node checks every second.
    requestTimeout: REQUEST_TIMEOUT_MS,
    http: { headersTimeout: HEADERS_TIMEOUT_MS, connectionsCheckingInterval: 1000 },
    trustProxy: config.trustProxy,
    genReqId: () => randomUUID(),
    routerOptions: { ignoreTrailingSlash: true },
    frameworkErrors,
    clientErrorHandler: answerClientError,
    // While draining (close-with-grace on SIGTERM), requests already on an open keep-alive
    // connection are served as usual, each answer with `Connection: close`; Fastify's default
    // wrote a bare 503 that is no problem+json. /readyz says 503 from the start of the drain.
    return503OnClosing: false,
  }).withTypeProvider<ZodTypeProvider>();
  // JSON only: Fastify's built-in text/plain parser would hand the raw string to the validators
  // (400) where the contract says 415 for any other content type.
  app.removeContentTypeParser('text/plain');
  // An empty body with Content-Type: application/json is no body (fetch wrappers send the header on
  // every request): operations without a body answer as without one, the others say the body is
  // required. Anything else goes to Fastify's own parser (prototype-poisoning checks included).
  // JSON is UTF-8 (RFC 8259 §8.1): bytes that are not are refused (400 malformed_json) rather than
  // turned into U+FFFD, which would store "Ren\uFFFD" for a Latin-1 "René" and let different bytes
  // in a password collapse into the same stored character.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, raw, done) => {
    let body: string;
    try {
      body = utf8.decode(raw as Buffer);
    } catch {
      done(commonErrors.malformed_json('The request body is not valid UTF-8.'), undefined);
      return;
    }
    if (body === '') {
      done(null, undefined);
      return;
    }
    parseJson(request, body, done);
  });

  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  const clock = deps.clock ?? systemClock;
  const signer = createSigningKeyManager({ db: deps.database.db, keyring: deps.keyring, clock, config }, app.log, {
    ...(deps.keyChangeCheckIntervalMs === undefined ? {} : { changeCheckIntervalMs: deps.keyChangeCheckIntervalMs }),
  });
  const ctx: AppContext = {
    config,
    db: deps.database.db,
    pool: deps.database.pool,
    clock,
    keyring: deps.keyring,
    signer,
    hasher:
      deps.hasher ??
      createPasswordHasher({ ...config.argon2, maxConcurrent: config.hashQueue.maxConcurrent, maxQueued: config.hashQueue.maxQueued }),
    mailTransport: deps.mailTransport ?? createMailTransport(config, app.log),
  };
  app.decorate('ctx', ctx);
  // Signing keys live in memory: loaded (or created) before the app serves, refreshed in the
  // background. A failed first load is retried instead of stopping the app (503 until loaded).
  app.addHook('onReady', async () => {
    try {
      await signer.reload();
    } catch (err) {
      app.log.error({ err }, 'could not load the JWT signing keys; retrying in the background');
    }
    signer.start();
  });
  app.addHook('onClose', async () => signer.stop());
  const drain = registerDrain(app);
  registerMailWorker(app, ctx, drain, !deps.mailTransport);
  app.addHook('onSend', (request, reply, payload, done) => {
    reply.header('x-request-id', request.id);
    done(null, payload);
  });

  // Ecosystem and infrastructure first, routes last (the onRoute hooks must see every route).
  if (config.trustProxy) dropForwardedPorts(app);
  await app.register(errorHandler);
  await app.register(inputGuard);
  await app.register(routeAccess);
  // Operations: metrics first (the others add series to its registry), all before any route.
  // Their onRequest hooks (CORS preflight, load shedding, the per-IP ceiling) run before
  // authentication, so a flood is turned away before it costs a token check or a query.
  await app.register(metrics);
  await app.register(connectionLimit);
  await app.register(securityHeaders);
  await app.register(loadShedding);
  if (config.rateLimitEnabled) await app.register(rateLimiting);
  await app.register(authenticate);
  await app.register(standardResponses);
  await app.register(openapi);

  await app.register(healthRoutes);
  await app.register(activationRoutes);
  await app.register(loginRoutes);
  await app.register(passwordRoutes);
  await app.register(sessionRoutes);
  await app.register(meRoutes);
  await app.register(metricsRoutes);
  await app.register(mfaRoutes);
  await app.register(organizationRoutes);
  await app.register(supportRoutes);
  await app.register(mfaResetConfirmRoutes);
  await app.register(emailChangeRoutes);
  await app.register(eventRoutes);
  await app.register(directoryRoutes);
  await app.register(auditRoutes);
  registerRetentionSweeper(app, ctx);
  registerWebhookWorker(app, ctx);
  registerInstanceHeartbeat(app, ctx);

  return app;
}

/** This instance's row in service_instances: which encryption keys it holds (instance-registry.ts). */
function registerInstanceHeartbeat(app: FastifyInstance, ctx: AppContext): void {
  let heartbeat: ReturnType<typeof startInstanceHeartbeat> | undefined;
  app.addHook('onReady', async () => {
    const localRateLimits = ctx.config.rateLimitEnabled && ctx.config.redisUrl === undefined;
    heartbeat = startInstanceHeartbeat(ctx.pool, ctx.keyring, app.log, { localRateLimits });
  });
  app.addHook('onClose', async () => heartbeat?.stop());
}

/** Deletes what ended RETENTION_DAYS ago, every RETENTION_SWEEP_INTERVAL_SECONDS (0: never; see retention.ts). */
function registerRetentionSweeper(app: FastifyInstance, ctx: AppContext): void {
  if (ctx.config.retentionSweepIntervalSeconds === 0) return;
  const purged = new Counter({
    name: `${app.metrics.prefix}retention_purged_total`,
    help: 'Rows deleted by the retention sweep, by table (refresh tokens and ended sessions, expired links and challenges, sent or given-up mail, mail_budget rows an hour old, audit events past AUDIT_RETENTION_DAYS; mail_outbox_plain_bodies: plain-text bodies of finished mails emptied)',
    labelNames: ['table'],
    registers: [app.metrics.registry],
  });
  let sweeper: ReturnType<typeof startRetentionSweeper> | undefined;
  app.addHook('onReady', async () => {
    sweeper = startRetentionSweeper(ctx, app.log, (table, deleted) => purged.inc({ table }, deleted));
  });
  app.addHook('onClose', async () => sweeper?.stop());
}

/** Pushes the event feed to EVENT_WEBHOOKS when EVENT_WEBHOOK_WORKER_ENABLED (see webhook-delivery.ts). */
function registerWebhookWorker(app: FastifyInstance, ctx: AppContext): void {
  const webhooks = ctx.config.eventWebhooks;
  if (webhooks.length === 0 || !ctx.config.eventWebhookWorkerEnabled) return;
  const deliveries = new Counter({
    name: `${app.metrics.prefix}event_webhook_deliveries_total`,
    help: 'Events pushed to EVENT_WEBHOOKS, by webhook and outcome (delivered; failed: an attempt the receiver refused or missed, retried; error: a delivery pass that failed on our side, e.g. the database)',
    labelNames: ['webhook', 'outcome'],
    registers: [app.metrics.registry],
  });
  let worker: ReturnType<typeof startWebhookWorker> | undefined;
  app.addHook('onReady', async () => {
    worker = startWebhookWorker(ctx, webhooks, app.log, { onDelivered: (webhook, outcome, count) => deliveries.inc({ webhook, outcome }, count) });
  });
  app.addHook('onClose', async () => worker?.stop());
}

/** The outbox delivery worker runs in every instance when MAIL_WORKER_ENABLED (see mail.worker.ts). */
function registerMailWorker(app: FastifyInstance, ctx: AppContext, drain: Drain, ownsTransport: boolean): void {
  let worker: ReturnType<typeof startMailWorker> | undefined;
  let stopped: Promise<void> | undefined;
  // From the start of the drain no mail is claimed; one still in an SMTP server's hands at
  // MAIL_LIMIT_MS is handed back to the outbox (http/shutdown.ts).
  const stop = () => (stopped ??= worker?.stop({ abandonAfterMs: drain.remaining(SHUTDOWN.MAIL_LIMIT_MS) }));
  if (ctx.config.mailWorkerEnabled) {
    app.addHook('onReady', async () => {
      worker = startMailWorker(ctx, ctx.mailTransport, app.log);
      drain.onBegin(stop);
    });
  }
  app.addHook('onClose', async () => {
    await stop();
    if (ownsTransport) await ctx.mailTransport.close();
  });
}
