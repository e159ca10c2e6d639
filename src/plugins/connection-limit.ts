import fp from 'fastify-plugin';
import { Counter } from 'prom-client';
import { defaultMaxConnections, leavesTooFewDescriptors, openFileLimit } from '../http/connection-limit.js';

/** Warns about refused connections at most once a minute (a flood would otherwise flood the log too). */
const WARN_INTERVAL_MS = 60_000;

/** The listener's connection limit (http/connection-limit.ts), its refusals counted and logged. */
export const connectionLimit = fp(
  async (app) => {
    const { config } = app.ctx;
    const files = openFileLimit();
    const max = config.maxConnections ?? defaultMaxConnections(files);
    app.server.maxConnections = max;
    if (leavesTooFewDescriptors(max, files)) {
      app.log.warn(
        { maxConnections: max, openFileLimit: files },
        'MAX_CONNECTIONS leaves fewer than a quarter of the open-file limit (at least 128) for the database, Redis and SMTP: connections can take the descriptors they need (raise the limit, e.g. ulimit -n, or lower MAX_CONNECTIONS)',
      );
    }
    const refused = new Counter({
      name: `${app.metrics.prefix}connections_refused_total`,
      help: 'Connections closed at once because the listener held MAX_CONNECTIONS already',
      registers: [app.metrics.registry],
    });
    let warnedAt = -Infinity;
    app.server.on('drop', () => {
      refused.inc();
      const now = Date.now();
      if (now - warnedAt < WARN_INTERVAL_MS) return;
      warnedAt = now;
      app.log.warn({ maxConnections: max }, 'connection limit reached: new connections are closed at once (MAX_CONNECTIONS)');
    });
    app.log.info({ maxConnections: max }, 'connection limit');
  },
  { name: 'connection-limit', dependencies: ['metrics'] },
);
