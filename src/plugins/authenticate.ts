import fp from 'fastify-plugin';
import type { FastifyRequest } from 'fastify';
import { commonErrors } from '../errors.js';
import { MFA_EXEMPT_PERMISSIONS, rolesGrant } from '../access/permissions.js';
import type { Actor } from '../access/actor.js';
import { safeEqual, sha256Hex } from '../lib/tokens.js';
import type { AppContext } from '../context.js';
import { verifyAccessToken } from '../modules/sessions/access-token.js';
import { sessionErrors } from '../modules/sessions/sessions.errors.js';
import { findLiveSession } from '../modules/sessions/session-lookup.js';
import type { RouteAccess } from './route-access.js';
import { BASIC_CHALLENGE, BEARER_CHALLENGE } from '../http/auth-challenge.js';
import { logWho } from '../logger.js';

/**
 * Turns credentials into `request.actor` / `request.serviceClient` for every route, by its declared
 * access (deny by default; route-access refuses routes that declare nothing):
 *
 *  - `{ permission }`: `Authorization: Bearer <access token>`. The token must verify (configured alg
 *    only, iss, one of our audiences, exp, `typ: at+jwt` + `token_use: access`), its session must be
 *    alive and its user active: one database query. Missing → 401 `unauthenticated`; anything else
 *    wrong → 401 `token_invalid`. Then the actor's roles must grant the permission → else 403
 *    `forbidden`; and a user without an active TOTP factor may only use MFA_EXEMPT_PERMISSIONS →
 *    else 403 `mfa_enrollment_required`.
 *  - `service_client`: HTTP Basic with a configured client id and secret (secret compared as SHA-256
 *    in constant time; an id listed twice has two valid secrets while one is rotated) → `request.serviceClient`; else 401 `invalid_client` with WWW-Authenticate.
 *  - `public`: nothing is checked here.
 *
 * Tokens never travel in URLs (security.md item 21): a request to a route that declares 401 and
 * carries a token-like query parameter (TOKEN_QUERY_PARAMETERS) is refused with 401 `token_in_query`
 * before anything else, whether or not the token is valid.
 */

export const TOKEN_QUERY_PARAMETERS = [
  'access_token',
  'accessToken',
  'refresh_token',
  'refreshToken',
  'id_token',
  'token',
  'challengeToken',
  'challenge_token',
];

/** An authenticated introspection client and the audiences whose tokens it may see (config.serviceClients). */
export type ServiceClient = { id: string; audiences: readonly string[] };

declare module 'fastify' {
  interface FastifyRequest {
    serviceClient: ServiceClient | null;
  }
}

// Compared against when the client id is unknown, so both paths do the same work.
const DUMMY_HASH = sha256Hex('no such client');

function routeDeclares401(request: FastifyRequest): boolean {
  const response = (request.routeOptions.schema as { response?: Record<string, unknown> } | undefined)?.response;
  return Boolean(response && (response['401'] ?? (response as Record<number, unknown>)[401]));
}

function hasTokenInQuery(request: FastifyRequest): boolean {
  const q = request.url.indexOf('?');
  if (q === -1) return false;
  const params = new URLSearchParams(request.url.slice(q + 1));
  return TOKEN_QUERY_PARAMETERS.some((name) => params.has(name));
}

/** The bearer token of the request, undefined when there is no Authorization: Bearer header. */
export function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (typeof header !== 'string') return undefined;
  const match = /^Bearer[ ]+([^ ]+)[ ]*$/i.exec(header);
  return match?.[1];
}

/** Resolves a bearer token to an actor (one query), or throws 401 token_invalid. */
export async function authenticateBearer(ctx: AppContext, token: string): Promise<Actor> {
  const invalid = () =>
    commonErrors.token_invalid(undefined, {}, { 'www-authenticate': `${BEARER_CHALLENGE}, error="invalid_token"` });
  const claims = await verifyAccessToken(ctx, token);
  if (!claims) throw invalid();
  const session = await findLiveSession(ctx.pool, claims.sid, claims.sub, ctx.clock.now());
  if (!session) throw invalid();
  return {
    userId: session.userId,
    sessionId: session.sessionId,
    organizationId: session.organizationId,
    roles: session.roles,
    amr: session.amr,
    mfaEnrolled: session.mfaEnrolled,
  };
}

/**
 * 401 for a service client that failed to authenticate: problem+json with the OAuth `error` member
 * too (RFC 6749 §5.2, which RFC 7662 §2.3 points to), so generic introspection clients recognise it.
 */
export function invalidClient() {
  return sessionErrors.invalid_client('Authenticate with HTTP Basic client credentials.', { error: 'invalid_client' }, { 'www-authenticate': BASIC_CHALLENGE });
}

/** RFC 6749 §2.3.1's form-urlencoding undone, or null when the text is not so encoded. */
function formDecoded(text: string): string | null {
  try {
    return decodeURIComponent(text.replaceAll('+', ' '));
  } catch {
    return null;
  }
}

/**
 * Checks HTTP Basic client credentials against config.serviceClients. Id and secret are taken as
 * sent (RFC 7617: curl -u, fetch, most HTTP clients) and, where that differs, form-urlencoded as
 * RFC 6749 §2.3.1 asks OAuth clients to send them (oauth4webapi, openid-client): a secret with "+",
 * "/" or "%" (any base64 one) works either way.
 */
export function authenticateServiceClient(ctx: Pick<AppContext, 'config'>, header: string | undefined): ServiceClient | null {
  if (typeof header !== 'string') return null;
  const match = /^Basic[ ]+([A-Za-z0-9+/=]+)[ ]*$/i.exec(header);
  if (!match) return null;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return null;
  const sent = { id: decoded.slice(0, colon), secret: decoded.slice(colon + 1) };
  const forms = [sent];
  const encoded = { id: formDecoded(sent.id), secret: formDecoded(sent.secret) };
  if (encoded.id !== null && encoded.secret !== null && (encoded.id !== sent.id || encoded.secret !== sent.secret)) {
    forms.push({ id: encoded.id, secret: encoded.secret });
  }
  // A client may be listed twice while its secret is rotated: either secret works. Every candidate
  // of every form is compared (no early exit), and an unknown id against a dummy: the work depends
  // on what was sent, never on which secret is configured.
  let found: ServiceClient | null = null;
  for (const { id, secret } of forms) {
    const presented = sha256Hex(secret);
    const candidates = ctx.config.serviceClients.filter((c) => c.id === id);
    let ok = false;
    for (const { secretSha256 } of candidates.length > 0 ? candidates : [{ secretSha256: DUMMY_HASH }]) {
      ok = safeEqual(presented, secretSha256) || ok;
    }
    if (candidates.length > 0 && ok && !found) found = { id, audiences: candidates[0]!.audiences };
  }
  return found;
}

export const authenticate = fp(
  async (app) => {
    app.decorateRequest('actor', null);
    app.decorateRequest('serviceClient', null);

    // Callback style: public and service-client routes are decided without a promise.
    app.addHook('onRequest', (request, _reply, done) => {
      const access = (request.routeOptions.config as { access?: RouteAccess } | undefined)?.access;
      if (!access || request.routeOptions.url === undefined) return done(); // 404s and the docs UI

      if (routeDeclares401(request) && hasTokenInQuery(request)) {
        return done(sessionErrors.token_in_query('Send tokens in the Authorization header or the request body, never in the URL.'));
      }
      if (access === 'public') return done();

      if (access === 'service_client') {
        // Already authenticated by the rate limiter's hook (plugins/rate-limit.ts), when it runs.
        const client = request.serviceClient ?? authenticateServiceClient(app.ctx, request.headers.authorization);
        if (!client) return done(invalidClient());
        request.serviceClient = client;
        logWho(request.log, { clientId: client.id });
        return done();
      }

      const token = bearerToken(request);
      if (!token) {
        return done(
          commonErrors.unauthenticated('Send an access token: Authorization: Bearer <token>.', {}, { 'www-authenticate': BEARER_CHALLENGE }),
        );
      }
      authenticateBearer(app.ctx, token).then((actor) => {
        request.actor = actor;
        logWho(request.log, { userId: actor.userId, sessionId: actor.sessionId, organizationId: actor.organizationId });
        if (!rolesGrant(actor.roles, access.permission)) return done(commonErrors.forbidden());
        if (!actor.mfaEnrolled && !MFA_EXEMPT_PERMISSIONS.includes(access.permission)) {
          return done(sessionErrors.mfa_enrollment_required('Set up two-step login (TOTP) before using this function.'));
        }
        done();
      }, done);
    });
  },
  { name: 'authenticate', dependencies: ['route-access'] },
);
