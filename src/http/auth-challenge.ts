import type { RouteAccess } from '../plugins/route-access.js';

/** The WWW-Authenticate challenges of the service's two HTTP authentication schemes. */
export const BEARER_CHALLENGE = 'Bearer realm="webshop-auth"';
export const BASIC_CHALLENGE = 'Basic realm="webshop-auth", charset="UTF-8"';

/**
 * The challenge every 401 of a route carries (RFC 9110 §11.6.1), whichever code refused the
 * request: Bearer for signed-in users' routes, Basic for service clients' (introspection). None
 * for public routes, whose credentials (password, challenge, link or refresh token) travel in the body.
 */
export function challengeFor(access: RouteAccess | undefined): string | undefined {
  if (!access || access === 'public') return undefined;
  return access === 'service_client' ? BASIC_CHALLENGE : BEARER_CHALLENGE;
}
