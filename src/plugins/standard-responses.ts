import fp from 'fastify-plugin';
import type { FastifySchema } from 'fastify';
import { problemResponses } from '../http/problem.js';
import { authorizationRefusals } from '../access/permissions.js';
import { errorCatalogue } from '../errors.js';
import { challengeFor } from '../http/auth-challenge.js';
import { UNLIMITED_ROUTES } from './rate-limit.js';
import type { RouteAccess } from './route-access.js';

/** The 401 of a protected route: its codes, and the WWW-Authenticate challenge every one of them carries. */
function unauthenticatedResponse(serviceClient: boolean, challenge: string) {
  return {
    description: serviceClient
      ? 'No valid client credentials (code: invalid_client, and the OAuth member error: "invalid_client", RFC 6749 §5.2), or token_in_query: a token was sent in the URL'
      : 'No valid access token (code: unauthenticated: none was sent, or the account is no longer active; token_invalid: ' +
        'not valid, expired, or its session ended; token_in_query: a token was sent in the URL)',
    headers: { 'WWW-Authenticate': { type: 'string', 'x-required': true, description: `The challenge: ${challenge}` } },
    content: problemResponses(401)[401]!.content,
  };
}

const AUTHENTICATION_CODES: readonly string[] = ['forbidden', 'mfa_enrollment_required'];

/**
 * The 403 codes a protected route can answer: those of the authenticate hook for its permission,
 * and those its summary or description names (reauthentication_failed, the policy's refusals).
 */
function forbiddenCodes(access: RouteAccess, text: string): string[] {
  const ofAuthentication: string[] = typeof access === 'object' ? authorizationRefusals(access.permission) : [];
  // The authentication codes only from the permission: a description may mention them in passing.
  const named = [...errorCatalogue()]
    .filter(([code, { status }]) => status === 403 && !AUTHENTICATION_CODES.includes(code) && new RegExp(`\\b${code}\\b`).test(text))
    .map(([code]) => code);
  return [...ofAuthentication, ...named];
}

const explained: Record<string, string> = { forbidden: "the caller's roles do not grant this operation" };

function forbiddenResponse(codes: string[]) {
  const title = (code: string) => errorCatalogue().get(code)!.title;
  const named = codes.map((code) => `${code}: ${explained[code] ?? title(code).charAt(0).toLowerCase() + title(code).slice(1)}`);
  return { description: `Not allowed (code: ${named.join('; ')})`, content: problemResponses(403)[403]!.content };
}

/** Fastify reads a request body for every method but GET and HEAD. */
const takesBody = (method: string | string[]) => [method].flat().some((m) => m !== 'GET' && m !== 'HEAD');

/**
 * Completes every route's schema so the OpenAPI document declares each status the route can
 * really answer: validation (400), body limits (413/415), authentication (401/403), rate limits
 * (429), and the 500/503 every route may give. Also sets the operation's security requirement.
 * Routes must carry an operationId (the frontend's generated client names its functions by it).
 */
export const standardResponses = fp(
  async (app) => {
    app.addHook('onRoute', (route) => {
      if (route.url === '/docs' || route.url.startsWith('/docs/')) return;
      const schema = (route.schema ??= {}) as FastifySchema & {
        operationId?: string;
        summary?: string;
        description?: string;
        security?: Record<string, string[]>[];
        hide?: boolean;
      };
      if (!schema.hide && !schema.operationId) {
        throw new Error(`route ${String(route.method)} ${route.url} has no schema.operationId`);
      }
      const access = (route.config as { access?: RouteAccess } | undefined)?.access;
      // 400 on every route: input-guard.ts refuses query parameters a route does not declare, and
      // Node's parser refuses what is not HTTP/1.1, as it answers 408 to a request that arrives too
      // slowly and 431 to one whose headers are too large (http/client-error.ts). 429 wherever a
      // limit applies: the route's own, or the per-IP ceiling (not on the operations probes).
      const limited = Boolean((route.config as { rateLimit?: unknown } | undefined)?.rateLimit) || !UNLIMITED_ROUTES.has(route.url);
      const statuses = [400, 408, 431, ...(limited ? [429] : []), 500, 503];
      // Fastify parses a body sent with any method but GET/HEAD, declared or not (malformed JSON is
      // a 400, too large a 413, another content type a 415; input-guard.ts refuses an undeclared one).
      if (schema.body || takesBody(route.method)) statuses.push(413, 415);
      if (access && access !== 'public') statuses.push(401);
      if (access === 'service_client') schema.security = [{ clientBasic: [] }];
      else if (access && access !== 'public') schema.security = [{ bearerAuth: [] }];
      const response = (schema.response ??= {}) as Record<string, unknown>;
      for (const [status, entry] of Object.entries(problemResponses(...statuses))) {
        response[status] ??= entry;
      }
      const challenge = challengeFor(access);
      if (challenge) response[401] = unauthenticatedResponse(access === 'service_client', challenge);
      // Only where a 403 can happen, naming its codes (a route whose permission every role holds
      // and an MFA-less session may use, e.g. GET /v1/me, has none).
      if (access && access !== 'public') {
        const codes = forbiddenCodes(access, `${schema.summary ?? ''} ${schema.description ?? ''}`);
        if (codes.length > 0) response[403] = forbiddenResponse(codes);
        else delete response[403];
      }
    });
  },
  { name: 'standard-responses' },
);
