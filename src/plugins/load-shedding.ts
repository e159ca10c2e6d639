import fp from 'fastify-plugin';
import underPressure from '@fastify/under-pressure';
import { Counter, Gauge } from 'prom-client';
import { commonErrors } from '../errors.js';

/**
 * Load shedding: when the event loop lags (mean delay over the last second above
 * LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS) every new request is answered at once with problem+json 503
 * `service_unavailable` and `Retry-After`, instead of queueing without bound. `/healthz` (liveness)
 * and `/metrics` are never shed: an overloaded instance is alive, and operators need to see why.
 * `/readyz` is shed, which tells a load balancer to send traffic elsewhere for a moment.
 *
 * The other half of shedding is the bounded argon2 queue (src/lib/password-hasher.ts): when it
 * is full, hashing routes answer 503 the same way (mapped in the error handler).
 */

export const LOAD_SHED_RETRY_AFTER_SECONDS = 2;
const NEVER_SHED = new Set(['/healthz', '/metrics']);

export const loadShedding = fp(
  async (app) => {
    const { config } = app.ctx;
    const shed = new Counter({
      name: `${app.metrics.prefix}load_shed_total`,
      help: 'Requests answered 503 because the process was under pressure, by cause',
      labelNames: ['cause'],
      registers: [app.metrics.registry],
    });

    await app.register(underPressure, {
      maxEventLoopDelay: config.loadShedMaxEventLoopDelayMs,
      sampleInterval: 1000,
      pressureHandler: async (request, _reply, type) => {
        const route = request.routeOptions.url;
        if (route && NEVER_SHED.has(route)) return;
        shed.inc({ cause: type });
        throw commonErrors.service_unavailable(
          'The service is overloaded. Try again shortly.',
          {},
          { 'retry-after': String(LOAD_SHED_RETRY_AFTER_SECONDS) },
        );
      },
    });

    new Gauge({
      name: `${app.metrics.prefix}event_loop_delay_mean_seconds`,
      help: 'Mean event-loop delay over the last sample second, as the load shedder sees it',
      registers: [app.metrics.registry],
      collect() {
        this.set(app.memoryUsage().eventLoopDelay / 1000);
      },
    });
  },
  { name: 'load-shedding', dependencies: ['metrics'] },
);
