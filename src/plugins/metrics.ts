import fp from 'fastify-plugin';
import type { FastifyInstance } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { z } from 'zod';
import { commonErrors } from '../errors.js';
import { problemResponses } from '../http/problem.js';
import { onAuditEvent } from '../modules/audit/audit.service.js';
import { safeEqual, sha256Hex } from '../lib/tokens.js';

/**
 * Prometheus metrics, one Registry per app (tests build many apps in one process).
 *
 *  - `webshop_auth_http_request_duration_seconds{method,route,status_code}`: route is the
 *    template (`/v1/users/:id`), never the raw URL; unmatched requests are `route="unmatched"`.
 *  - `webshop_auth_audit_events_total{type}`: every audit event written (login/MFA outcomes,
 *    lockouts, resets, revocations ...), counted when the audit writer records it.
 *  - hash queue, database pool and mail outbox gauges, read when Prometheus scrapes.
 *  - the process defaults of prom-client (`webshop_auth_process_*`, `webshop_auth_nodejs_*`).
 * Other plugins add their own series to `app.metrics.registry` (rate limiting, load shedding).
 */
export const METRIC_PREFIX = 'webshop_auth_';

/** How long a scrape waits for the outbox query before it reports the last known value. */
const OUTBOX_QUERY_TIMEOUT_MS = 1000;

export type AppMetrics = {
  registry: Registry;
  prefix: string;
};

declare module 'fastify' {
  interface FastifyInstance {
    metrics: AppMetrics;
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

type OutboxRow = { backlog: string; retrying: string; oldest_seconds: string | null; failed: string };

function registerCollectors(app: FastifyInstance, registry: Registry): void {
  const ctx = app.ctx;
  collectDefaultMetrics({ register: registry, prefix: METRIC_PREFIX });

  new Gauge({
    name: `${METRIC_PREFIX}hash_queue_running`,
    help: 'Password hashing operations (argon2) running now',
    registers: [registry],
    collect() {
      this.set(ctx.hasher.stats().running);
    },
  });
  new Gauge({
    name: `${METRIC_PREFIX}hash_queue_waiting`,
    help: 'Password hashing operations waiting for a slot (the queue sheds with 503 when full)',
    registers: [registry],
    collect() {
      this.set(ctx.hasher.stats().queued);
    },
  });
  new Gauge({
    name: `${METRIC_PREFIX}hash_queue_capacity`,
    help: 'Configured hashing slots (HASH_MAX_CONCURRENT) and queue length (HASH_MAX_QUEUED)',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      this.set({ kind: 'concurrent' }, ctx.config.hashQueue.maxConcurrent);
      this.set({ kind: 'queued' }, ctx.config.hashQueue.maxQueued);
    },
  });

  new Gauge({
    name: `${METRIC_PREFIX}signing_key_loaded`,
    help: 'Whether this instance holds a key it can sign tokens with (0: logins and refreshes answer 503; its log names the encryption key it lacks)',
    registers: [registry],
    collect() {
      this.set(ctx.signer.loaded ? 1 : 0);
    },
  });

  new Gauge({
    name: `${METRIC_PREFIX}db_pool_connections`,
    help: 'PostgreSQL pool connections by state (total, idle, waiting = requests waiting for a connection)',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      const { totalCount, idleCount, waitingCount } = ctx.pool;
      this.set({ state: 'total' }, totalCount);
      this.set({ state: 'idle' }, idleCount);
      this.set({ state: 'in_use' }, totalCount - idleCount);
      this.set({ state: 'waiting' }, waitingCount);
    },
  });
  new Gauge({
    name: `${METRIC_PREFIX}db_pool_max`,
    help: 'Configured maximum pool size',
    registers: [registry],
    collect() {
      this.set(ctx.pool.options.max ?? 10);
    },
  });

  // One cheap query per scrape (partial index scan on unsent rows), bounded by a timeout, shared
  // by the four outbox gauges (the registry collects them concurrently). When the database does
  // not answer, the gauges keep their last value and `mail_outbox_scrape_ok` turns 0.
  const outbox = { backlog: 0, retrying: 0, oldestSeconds: 0, failed: 0, ok: 0 };
  let inflight: Promise<void> | undefined;
  const readOutbox = (): Promise<void> =>
    (inflight ??= (async () => {
      try {
        const result = await withTimeout(
          ctx.pool.query<OutboxRow>(
            `SELECT count(*) FILTER (WHERE failed_at IS NULL) AS backlog,
                    count(*) FILTER (WHERE failed_at IS NULL AND attempts > 0) AS retrying,
                    -- Late since it was due: a mail never tried counts from its due time (a block or unblock
                    -- mail may wait on purpose for its address's budget, status-mail.ts), one tried from when it was written.
                    coalesce(extract(epoch FROM now() - min(CASE WHEN attempts = 0 THEN next_attempt_at ELSE created_at END)
                      FILTER (WHERE failed_at IS NULL AND (attempts > 0 OR next_attempt_at <= now()))), 0) AS oldest_seconds,
                    count(*) FILTER (WHERE failed_at IS NOT NULL) AS failed
               FROM mail_outbox WHERE sent_at IS NULL`,
          ),
          OUTBOX_QUERY_TIMEOUT_MS,
        );
        const row = result.rows[0];
        outbox.backlog = Number(row?.backlog ?? 0);
        outbox.retrying = Number(row?.retrying ?? 0);
        outbox.oldestSeconds = Math.max(0, Number(row?.oldest_seconds ?? 0));
        outbox.failed = Number(row?.failed ?? 0);
        outbox.ok = 1;
      } catch {
        outbox.ok = 0;
      }
    })().finally(() => {
      inflight = undefined;
    }));
  const outboxGauge = (name: string, help: string, read: () => number) =>
    new Gauge({
      name: `${METRIC_PREFIX}${name}`,
      help,
      registers: [registry],
      async collect() {
        await readOutbox();
        this.set(read());
      },
    });
  outboxGauge('mail_outbox_backlog', 'Mails in the outbox not yet sent (and not given up)', () => outbox.backlog);
  outboxGauge('mail_outbox_retrying', 'Unsent mails whose delivery failed at least once (SMTP trouble)', () => outbox.retrying);
  outboxGauge('mail_outbox_oldest_unsent_seconds', 'How late the oldest unsent mail is: seconds since it was due (0 when none)', () => outbox.oldestSeconds);
  outboxGauge(
    'mail_outbox_failed',
    'Mails whose delivery was given up (recipient refused, or undeliverable for MAIL_GIVE_UP_SECONDS); kept in the outbox with last_error',
    () => outbox.failed,
  );
  outboxGauge(
    'mail_outbox_scrape_ok',
    '1 when the outbox gauges were read from the database in this scrape, 0 when the query failed or timed out',
    () => outbox.ok,
  );

  const auditEvents = new Counter({
    name: `${METRIC_PREFIX}audit_events_total`,
    help: 'Audit events written, by type (login.password_failed, login.locked, login.mfa_succeeded, ...)',
    labelNames: ['type'],
    registers: [registry],
  });
  const unsubscribe = onAuditEvent((type) => auditEvents.inc({ type }));
  app.addHook('onClose', async () => unsubscribe());

  const duration = new Histogram({
    name: `${METRIC_PREFIX}http_request_duration_seconds`,
    help: 'HTTP request duration by route template, method and status code',
    labelNames: ['method', 'route', 'status_code'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  // Callback-style hooks here and in the other per-request plugins: no promise per request.
  app.addHook('onResponse', (request, reply, done) => {
    // The route template keeps the label set bounded; unknown URLs all count as "unmatched".
    const route = request.routeOptions.url ?? 'unmatched';
    duration.observe({ method: request.method, route, status_code: String(reply.statusCode) }, reply.elapsedTime / 1000);
    done();
  });
}

/** Registry, collectors and the request-duration hook. Register before any route. */
export const metrics = fp(
  async (app) => {
    const registry = new Registry();
    app.decorate('metrics', { registry, prefix: METRIC_PREFIX } satisfies AppMetrics);
    registerCollectors(app, registry);
  },
  { name: 'metrics' },
);

/** `GET /metrics`. Public unless METRICS_TOKEN is set; then `Authorization: Bearer <token>`. */
export const metricsRoutes: FastifyPluginAsyncZod = async (app) => {
  const token = app.ctx.config.metricsToken;
  const expected = token ? sha256Hex(token) : undefined;

  app.get(
    '/metrics',
    {
      config: { access: 'public' },
      schema: {
        operationId: 'getMetrics',
        tags: ['operations'],
        summary: 'Prometheus metrics (bearer METRICS_TOKEN required when it is configured)',
        description:
          'Prometheus text exposition format. When the service is configured with `METRICS_TOKEN`, send it as ' +
          '`Authorization: Bearer <METRICS_TOKEN>` (without it: 401 unauthenticated, with `WWW-Authenticate: Bearer realm="metrics"`); ' +
          'otherwise the endpoint is public (keep it off the public network).',
        security: [{}, { metricsToken: [] }],
        response: {
          200: z.string().describe('Prometheus text format 0.0.4'),
          ...problemResponses(401),
        },
        produces: ['text/plain'],
      },
    },
    async (request, reply) => {
      if (expected) {
        const header = request.headers.authorization ?? '';
        const match = /^Bearer\s+(\S+)$/i.exec(header);
        if (!match || !safeEqual(sha256Hex(match[1]!), expected)) {
          throw commonErrors.unauthenticated('A valid metrics token is required.', {}, { 'www-authenticate': 'Bearer realm="metrics"' });
        }
      }
      const body = await app.metrics.registry.metrics();
      return reply.type(app.metrics.registry.contentType).send(body);
    },
  );
};
