import fp from 'fastify-plugin';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyRequest } from 'fastify';
import cors from '@fastify/cors';
import helmet, { type HelmetOptions } from 'helmet';
import { commonErrors } from '../errors.js';

/**
 * Security headers (helmet) and CORS for the configured frontend origins (@fastify/cors).
 *
 * The API answers JSON only, so its Content-Security-Policy forbids everything
 * (`default-src 'none'; frame-ancestors 'none'`): nothing a response contains may load, run or be
 * framed. The API reference UI under /docs is an HTML page with its own scripts and styles (all
 * served from /docs/static, no inline scripts) and gets a policy that allows exactly that.
 * Register before the openapi plugin: the /docs routes are marked by an onRoute hook here.
 *
 * helmet decides the headers and their values; since they do not depend on the request, it runs
 * once per policy at startup (against a recording response) and one synchronous onRequest hook
 * sets the recorded set on every response, 404s and errors included. @fastify/helmet ran helmet's
 * whole middleware chain, CSP serialisation included, on every request (bench/README.md).
 */

const COMMON_OPTIONS: HelmetOptions = {
  // The browser-isolation headers are harmless for an API and useful for /docs.
  crossOriginResourcePolicy: { policy: 'same-origin' },
  referrerPolicy: { policy: 'no-referrer' },
  frameguard: { action: 'deny' },
  // HSTS: one year; browsers ignore it over plain http (local development).
  strictTransportSecurity: { maxAge: 31_536_000, includeSubDomains: true },
};

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

/** The headers helmet sets with these options (its middleware is synchronous and reads nothing of the request). */
function helmetHeaders(options: HelmetOptions): Readonly<Record<string, string>> {
  const headers: Record<string, string> = {};
  const recorder = {
    setHeader: (name: string, value: unknown) => {
      headers[name.toLowerCase()] = String(value);
    },
    removeHeader: (name: string) => {
      delete headers[name.toLowerCase()];
    },
  };
  let done = false;
  helmet(options)({} as IncomingMessage, recorder as unknown as ServerResponse, (err?: unknown) => {
    if (err) throw err;
    done = true;
  });
  if (!done) throw new Error('helmet did not finish synchronously');
  return Object.freeze(headers);
}

// Every API answer is personal or short-lived (profiles, session lists with IP addresses, user
// lists, tokens): no cache, shared or private, keeps it unless the route says otherwise (the JWKS
// sets its own max-age). The /docs assets stay cacheable.
export const API_SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  ...helmetHeaders({ ...COMMON_OPTIONS, contentSecurityPolicy: API_CSP }),
  'cache-control': 'no-store',
});
const DOCS_SECURITY_HEADERS = helmetHeaders({ ...COMMON_OPTIONS, contentSecurityPolicy: DOCS_CSP });

type SecurityHeadersConfig = { securityHeaders?: Readonly<Record<string, string>> };

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

/** CORS_ORIGINS: the frontends whose scripts may read our responses. */
const isAllowedOrigin = (origins: readonly string[], origin: string | undefined): origin is string =>
  origin !== undefined && origins.includes(origin);

/**
 * The headers this plugin's hooks and @fastify/cors set on an ordinary (non-preflight) answer, for
 * the answers the router gives before any hook runs (frameworkErrors in error-handler.ts).
 */
export function routerErrorHeaders(request: FastifyRequest): Record<string, string> {
  return unroutedAnswerHeaders(request.server.ctx.config.corsOrigins, request.headers.origin);
}

/**
 * The same for an answer without a request object: the HTTP parser's (http/client-error.ts), for
 * the Origin read from the bytes it received.
 */
export function unroutedAnswerHeaders(origins: readonly string[], origin: string | undefined): Record<string, string> {
  if (origins.length === 0) return API_SECURITY_HEADERS;
  return {
    ...API_SECURITY_HEADERS,
    vary: 'Origin',
    ...(isAllowedOrigin(origins, origin)
      ? { 'access-control-allow-origin': origin, 'access-control-expose-headers': CORS_EXPOSED_HEADERS.join(', ') }
      : {}),
  };
}

export const securityHeaders = fp(
  async (app) => {
    const { config } = app.ctx;

    app.addHook('onRoute', (route) => {
      if (isDocsRoute(route.url)) {
        route.config = { ...(route.config ?? {}), securityHeaders: DOCS_SECURITY_HEADERS } as typeof route.config;
      }
    });
    app.addHook('onRequest', (request, reply, done) => {
      reply.headers((request.routeOptions.config as SecurityHeadersConfig).securityHeaders ?? API_SECURITY_HEADERS);
      done();
    });

    // No origins configured → no CORS headers at all (same-origin or server-to-server only).
    if (config.corsOrigins.length > 0) {
      // An OPTIONS from an allowed origin without Access-Control-Request-Method is no valid
      // preflight; @fastify/cors (strictPreflight) would refuse it as 400 text/plain. Refused here
      // first, as problem+json like every other error.
      app.addHook('onRequest', (request, _reply, done) => {
        if (
          request.method === 'OPTIONS' &&
          isAllowedOrigin(config.corsOrigins, request.headers.origin) &&
          !request.headers['access-control-request-method']
        ) {
          return done(
            commonErrors.validation_failed('Not a valid CORS preflight request.', {
              errors: [{ path: 'headers.access-control-request-method', message: 'required', code: 'required' }],
            }),
          );
        }
        done();
      });
      await app.register(cors, {
        // A foreign origin gets no CORS headers at all, and its preflight is a plain 404.
        origin: (origin, callback) => callback(null, isAllowedOrigin(config.corsOrigins, origin) ? origin : false),
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
