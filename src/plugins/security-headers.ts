import fp from 'fastify-plugin';
import helmet from '@fastify/helmet';
import cors from '@fastify/cors';

/**
 * Security headers (@fastify/helmet) and CORS for the configured frontend origins (@fastify/cors).
 *
 * The API answers JSON only, so its Content-Security-Policy forbids everything
 * (`default-src 'none'; frame-ancestors 'none'`): nothing a response contains may load, run or be
 * framed. The API reference UI under /docs is an HTML page with its own scripts and styles (all
 * served from /docs/static, no inline scripts) and gets a policy that allows exactly that.
 * Register before the openapi plugin: the /docs routes get their policy from an onRoute hook here.
 */

const API_CSP = {
  useDefaults: false,
  directives: {
    defaultSrc: ["'none'"],
    frameAncestors: ["'none'"],
    baseUri: ["'none'"],
    formAction: ["'none'"],
  },
};

const DOCS_CSP = {
  useDefaults: false,
  directives: {
    defaultSrc: ["'self'"],
    baseUri: ["'self'"],
    scriptSrc: ["'self'"],
    scriptSrcAttr: ["'none'"],
    // Swagger UI sets style attributes at run time.
    styleSrc: ["'self'", "'unsafe-inline'"],
    imgSrc: ["'self'", 'data:'],
    fontSrc: ["'self'", 'data:'],
    connectSrc: ["'self'"],
    objectSrc: ["'none'"],
    frameAncestors: ["'none'"],
    formAction: ["'self'"],
  },
};

/** Headers a browser script on an allowed origin may read from our responses. */
export const CORS_EXPOSED_HEADERS = [
  'Retry-After',
  'X-Request-Id',
  'X-RateLimit-Limit',
  'X-RateLimit-Remaining',
  'X-RateLimit-Reset',
  'WWW-Authenticate',
];

const isDocsRoute = (url: string): boolean => url === '/docs' || url.startsWith('/docs/');

export const securityHeaders = fp(
  async (app) => {
    const { config } = app.ctx;

    app.addHook('onRoute', (route) => {
      if (isDocsRoute(route.url)) {
        route.config = { ...(route.config ?? {}), helmet: { contentSecurityPolicy: DOCS_CSP } } as typeof route.config;
      }
    });

    await app.register(helmet, {
      global: true,
      contentSecurityPolicy: API_CSP,
      // The browser-isolation headers are harmless for an API and useful for /docs.
      crossOriginResourcePolicy: { policy: 'same-origin' },
      referrerPolicy: { policy: 'no-referrer' },
      frameguard: { action: 'deny' },
      // HSTS: one year; browsers ignore it over plain http (local development).
      strictTransportSecurity: { maxAge: 31_536_000, includeSubDomains: true },
    });

    // No origins configured → no CORS headers at all (same-origin or server-to-server only).
    if (config.corsOrigins.length > 0) {
      const allowed = new Set(config.corsOrigins);
      await app.register(cors, {
        // A foreign origin gets no CORS headers at all, and its preflight is a plain 404.
        origin: (origin, callback) => callback(null, origin !== undefined && allowed.has(origin) ? origin : false),
        credentials: false,
        methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
        allowedHeaders: ['Authorization', 'Content-Type', 'Accept', 'Accept-Language', 'X-Request-Id'],
        exposedHeaders: CORS_EXPOSED_HEADERS,
        maxAge: 600,
        strictPreflight: true,
      });
    }
  },
  { name: 'security-headers' },
);
