import fp from 'fastify-plugin';
import type { Permission } from '../access/permissions.js';

/**
 * Every route declares who may call it:
 *  - `public`: anyone (login, activation, password reset, JWKS, health, ...);
 *  - `service_client`: another internal app with HTTP Basic client credentials (introspection);
 *  - `{ permission }`: a signed-in user whose roles grant that permission.
 * The app refuses to start when a route declares nothing (deny by default).
 */
export type RouteAccess = 'public' | 'service_client' | { permission: Permission };

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: RouteAccess;
  }
}

/** Routes registered by the docs UI plugin cannot carry config; they are static documentation. */
const DOCS_PREFIX = '/docs';

export class UndeclaredRouteAccessError extends Error {
  override name = 'UndeclaredRouteAccessError';
}

export const routeAccess = fp(
  async (app) => {
    app.addHook('onRoute', (route) => {
      if (route.url === DOCS_PREFIX || route.url.startsWith(`${DOCS_PREFIX}/`)) return;
      // @fastify/cors's catch-all preflight route: answered in its onRequest hook with CORS
      // headers and no body (404 when the origin is not allowed); it serves nothing else.
      if (route.method === 'OPTIONS' && route.url === '*') return;
      const access = (route.config as { access?: RouteAccess } | undefined)?.access;
      if (!access) {
        throw new UndeclaredRouteAccessError(
          `route ${String(route.method)} ${route.url} declares no access (config.access = 'public' | 'service_client' | { permission })`,
        );
      }
    });
  },
  { name: 'route-access' },
);
