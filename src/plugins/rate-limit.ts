import { createRequire } from 'node:module';
import fp from 'fastify-plugin';
import type { FastifyRequest } from 'fastify';
import rateLimit, { type RateLimitOptions } from '@fastify/rate-limit';
import { Redis } from 'ioredis';
import { Counter, Gauge } from 'prom-client';
import { rateLimitedForMs } from '../errors.js';
import { addActorLimits } from './actor-limits.js';
import { authenticateServiceClient } from './authenticate.js';

/**
 * Per-IP rate limits (security.md item 7).
 *
 * Routes opt in with `config: { rateLimit: { max, timeWindow } }` (the plugin runs with
 * `global: false`); on top of that every route except the operations endpoints shares a per-IP
 * ceiling of RATE_LIMIT_GLOBAL_PER_MINUTE. Over the limit the answer is problem+json 429
 * `rate_limited` with `Retry-After`.
 *
 * Counters live in Redis when REDIS_URL is set, so all instances share them, and in memory
 * otherwise. **Redis down**: each instance falls back to its own in-memory counters for as long
 * as Redis is unreachable (checked per request, no waiting: commands are not queued while
 * disconnected and time out after REDIS_COMMAND_TIMEOUT_MS; a Redis that hangs on an open
 * connection is left alone for REDIS_RETRY_AFTER_FAILURE_MS after each failure) and returns to
 * Redis by itself when it is back. Limits therefore never switch off. An instance counting in
 * memory goes on from the count Redis last told it (a client pinned to one instance gets no second
 * budget), and what it counted in memory still counts once Redis answers again; so with N instances
 * an attacker gets at most N times the budget for that time (and per-account lockout, which lives
 * in PostgreSQL, still holds). A command that times out because this instance's event loop was busy
 * is such a moment too, and costs no budget either. Transitions are logged once each and exported
 * as `webshop_auth_rate_limit_store_degraded`.
 */

const require = createRequire(import.meta.url);

type StoreResult = { current: number; ttl: number };
type StoreCallback = (err: Error | null, result?: StoreResult) => void;
type RouteParams = { continueExceeding: boolean; exponentialBackoff: boolean; routeInfo: { method?: string; url?: string } };
type Store = {
  incr(key: string, cb: StoreCallback, timeWindow: number, max: number): void;
  read?(key: string, cb: StoreCallback, timeWindow: number, max: number): void;
  child(params: RouteParams): Store;
};
type StoreCtor<A extends unknown[]> = new (...args: A) => Store;
// The package's Redis store (same Lua script and windows as upstream); it ships no typings for it.
const RedisStore = require('@fastify/rate-limit/store/RedisStore.js') as StoreCtor<[boolean, boolean, Redis, string?]>;

/** Redis commands that take longer than this count as "Redis down" for that request. */
export const REDIS_COMMAND_TIMEOUT_MS = 250;
/**
 * After a failed command on a connection that still looks ready (a Redis that hangs without
 * closing it: CLIENT PAUSE in a failover, a long script, packets dropped), counters stay in memory
 * this long; then one request alone tries Redis again. So a stall costs one request in this
 * interval the timeout, not every request of it (twice, on a route with its own limit).
 */
export const REDIS_RETRY_AFTER_FAILURE_MS = 5000;
/** How many distinct keys each limit's in-memory tallies remember (least recently used forgotten first). */
const LOCAL_CACHE_SIZE = 10_000;
/**
 * Never limited: probes and scrapers must always get through, and so must the verifiers that fetch
 * the JWKS (a static answer, cacheable): a CSO 3.0 behind one NAT address that met the ceiling could
 * no longer verify tokens signed by a new key.
 */
export const UNLIMITED_ROUTES: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/metrics', '/.well-known/jwks.json']);

export type RateLimitBackend = {
  readonly kind: 'redis' | 'memory';
  /** True while Redis is configured but unreachable (counters are per instance then). */
  readonly degraded: boolean;
  /** ioredis connection status ('ready' when connected); undefined without REDIS_URL. */
  readonly redisStatus: string | undefined;
};

declare module 'fastify' {
  interface FastifyInstance {
    rateLimitBackend: RateLimitBackend;
  }
}

type Health = {
  redis: Redis | undefined;
  degraded: boolean;
  /** performance.now() until which a ready-looking connection is not used (after a failure). */
  skipUntil: number;
  /** A request is trying Redis again after a failure: the others count in memory meanwhile. */
  probing: boolean;
  /**
   * Redis refused the database REDIS_URL names: never used (ioredis reports the refused SELECT and
   * then "ready" on database 0, where the counters would mix with whatever else lives there).
   */
  refused: boolean;
  down(reason: string): void;
  up(): void;
};

/**
 * One client's count in one window as this instance knows it: what Redis last answered (every
 * instance's requests) and what this instance counted in memory since the window began (requests
 * Redis never saw: it was away, or did not answer in time).
 */
type Tally = { redis: number; local: number; resetAt: number };

/** The tallies of one limit, the least recently used forgotten first beyond LOCAL_CACHE_SIZE keys. */
class Tallies {
  private readonly byKey = new Map<string, Tally>();

  /** The key's tally in the window running at `now` (a fresh one ending `windowMs` later after the last ended). */
  get(key: string, now: number, windowMs: number): Tally {
    let tally = this.byKey.get(key);
    this.byKey.delete(key);
    if (!tally || tally.resetAt <= now) tally = { redis: 0, local: 0, resetAt: now + windowMs };
    this.byKey.set(key, tally);
    if (this.byKey.size > LOCAL_CACHE_SIZE) this.byKey.delete(this.byKey.keys().next().value!);
    return tally;
  }
}

/**
 * A store that uses Redis while it is connected and counts in memory otherwise, going on from the
 * count Redis last answered: a client cannot get a fresh budget by waiting for Redis to fail (or by
 * keeping this instance busy until a command times out), and what was counted in memory is added
 * to Redis's answers for the rest of the window.
 */
function fallbackStore(health: Health, redisStore: Store | undefined, tallies = new Tallies()): Store {
  const inMemory = (key: string, cb: StoreCallback, timeWindow: number): void => {
    const now = Date.now();
    const tally = tallies.get(key, now, timeWindow);
    tally.local += 1;
    cb(null, { current: tally.redis + tally.local, ttl: tally.resetAt - now });
  };
  return {
    incr(key, cb, timeWindow, max) {
      const redis = health.redis;
      if (!redis || !redisStore || health.refused) return inMemory(key, cb, timeWindow);
      // Not connected (yet, or any more): count locally at once. Outages are reported by the
      // connection events; the first connect at start-up is not one.
      if (redis.status !== 'ready') return inMemory(key, cb, timeWindow);
      if (health.probing || performance.now() < health.skipUntil) return inMemory(key, cb, timeWindow);
      const probe = health.skipUntil > 0;
      if (probe) health.probing = true;
      redisStore.incr(
        key,
        (err, result) => {
          if (probe) health.probing = false;
          if (err || !result) {
            health.skipUntil = performance.now() + REDIS_RETRY_AFTER_FAILURE_MS;
            health.down(err?.message ?? 'no result');
            return inMemory(key, cb, timeWindow);
          }
          health.skipUntil = 0;
          health.up();
          const now = Date.now();
          const tally = tallies.get(key, now, result.ttl);
          // Redis's window is the one that counts: this instance's ends with it.
          tally.redis = result.current;
          tally.resetAt = now + result.ttl;
          cb(null, { current: tally.redis + tally.local, ttl: result.ttl });
        },
        timeWindow,
        max,
      );
    },
    child(params) {
      // Upstream names Redis keys <prefix><METHOD><url>-<ip>; undefined route info (limiters
      // made with createRateLimit) gets a readable name instead of "undefinedundefined".
      const named: RouteParams = {
        ...params,
        routeInfo: { method: params.routeInfo.method ?? 'ALL', url: params.routeInfo.url ?? '*' },
      };
      return fallbackStore(health, redisStore?.child(named));
    },
  };
}

export const rateLimiting = fp(
  async (app) => {
    const { config } = app.ctx;
    const redis = config.redisUrl
      ? new Redis(config.redisUrl, {
          lazyConnect: true,
          enableOfflineQueue: false,
          maxRetriesPerRequest: 1,
          commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
          connectTimeout: 2000,
          // The INFO ready check is a command too: at start-up (event loop busy loading modules) it
          // can exceed commandTimeout and report a false outage. A Redis still loading data
          // answers commands with errors, which the store treats as "down" anyway.
          enableReadyCheck: false,
          // Keep trying forever, at most every 2 s: the fallback covers the gap.
          retryStrategy: (times) => Math.min(times * 100, 2000),
        })
      : undefined;

    const degradedGauge = new Gauge({
      name: `${app.metrics.prefix}rate_limit_store_degraded`,
      help: '1 while REDIS_URL is set but Redis is unreachable and rate limits count per instance in memory',
      registers: [app.metrics.registry],
    });
    const limited = new Counter({
      name: `${app.metrics.prefix}rate_limited_total`,
      help: 'Requests answered 429 by a rate limit, by route template',
      labelNames: ['route'],
      registers: [app.metrics.registry],
    });

    const health: Health = {
      redis,
      degraded: false,
      skipUntil: 0,
      probing: false,
      refused: false,
      down(reason) {
        if (this.degraded) return;
        this.degraded = true;
        degradedGauge.set(1);
        app.log.warn({ reason }, 'rate limits: Redis unreachable, counting in memory per instance until it is back');
      },
      up() {
        if (!this.degraded || this.refused) return;
        this.degraded = false;
        degradedGauge.set(0);
        app.log.info('rate limits: Redis reachable again, counters are shared');
      },
    };

    if (redis) {
      // Errors surface through the store (fallback) and the transitions above; ioredis keeps
      // reconnecting in the background. Without this listener an error event would crash the process.
      let closing = false;
      redis.on('error', (err: Error & { command?: { name?: string } }) => {
        if (health.refused) return;
        health.down(err.message);
        if (err.command?.name !== 'select') return;
        // The connection did not switch to REDIS_URL's database: what it runs goes to database 0.
        // ERR (no such database; SELECT refused in cluster mode) and NOPERM are the configuration's:
        // given up. Anything else (a Redis still LOADING its data) is for now: connect afresh.
        if (/^(?:ERR|NOPERM)\b/.test(err.message)) {
          health.refused = true;
          app.log.error(
            { reason: err.message },
            'rate limits: Redis refused the database REDIS_URL names (its path: /<number>, below the server\'s `databases`); ' +
              'counting in memory per instance until REDIS_URL is corrected',
          );
          redis.disconnect();
        } else {
          redis.disconnect(true);
        }
      });
      redis.on('close', () => {
        if (!closing) health.down('connection closed');
      });
      redis.on('ready', () => {
        health.skipUntil = 0;
        health.up();
      });
      redis.connect().catch((err: unknown) => health.down(err instanceof Error ? err.message : String(err)));
      app.addHook('onClose', async () => {
        closing = true;
        redis.disconnect();
      });
    }

    const prefix = `${config.redisKeyPrefix}rl:`;
    const Store = function (this: unknown, params: RouteParams) {
      const redisStore = redis ? new RedisStore(params.continueExceeding, params.exponentialBackoff, redis, prefix) : undefined;
      return fallbackStore(health, redisStore);
    } as unknown as NonNullable<RateLimitOptions['store']>;

    app.decorate('rateLimitBackend', {
      kind: redis ? ('redis' as const) : ('memory' as const),
      get degraded() {
        return health.degraded;
      },
      get redisStatus() {
        return redis?.status;
      },
    });

    await app.register(rateLimit, {
      global: false,
      hook: 'onRequest',
      store: Store,
      // Per IP (request.ip: the client behind the TRUST_PROXY proxies, without a port: http/forwarded-for.ts);
      // IPv6 clients are grouped by /64 upstream.
      errorResponseBuilder: (_request, context) => rateLimitedForMs('Too many requests.', context.ttl),
      onExceeded: (request: FastifyRequest) => limited.inc({ route: request.routeOptions.url ?? 'unmatched' }),
    });

    // The per-IP ceiling over every route (one counter shared by all routes).
    if (config.rateLimitGlobalPerMinute > 0) {
      const ceiling = app.createRateLimit({ max: config.rateLimitGlobalPerMinute, timeWindow: 60_000 });
      app.addHook('onRequest', async (request) => {
        const route = request.routeOptions.url;
        if (route && UNLIMITED_ROUTES.has(route)) return;
        // A service client that authenticates (introspection) is one of ours, not a browser: its
        // calls, one per token checked, do not count against its address. The check is the one the
        // authenticate hook would make next; it keeps the result. Failed attempts do count.
        if ((request.routeOptions.config as { access?: unknown } | undefined)?.access === 'service_client') {
          const client = authenticateServiceClient(app.ctx, request.headers.authorization);
          if (client) {
            request.serviceClient = client;
            return;
          }
        }
        const result = await ceiling(request);
        if (!result.isAllowed && result.isExceeded) {
          limited.inc({ route: 'global' });
          throw rateLimitedForMs('Too many requests.', result.ttl);
        }
      });
    }
    addActorLimits(app, { mails: config.adminMailsPerHour, changes: config.adminChangesPerHour }, (_request, budget) =>
      limited.inc({ route: `actor-${budget}` }),
    );
  },
  { name: 'rate-limiting', dependencies: ['metrics'] },
);
