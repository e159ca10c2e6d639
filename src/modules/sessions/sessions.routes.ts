import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { requireActor } from '../../access/actor.js';
import { commonErrors } from '../../errors.js';
import { NoContent } from '../../http/no-content.js';
import { noStore } from '../../http/no-store.js';
import { problemResponses } from '../../http/problem.js';
import { requestMeta } from '../../http/request-meta.js';
import { JWKS_MAX_AGE_SECONDS } from './signing-keys.js';
import { invalidClient } from '../../plugins/authenticate.js';
import { refreshAtOnce } from './refresh-at-once.js';
import { endOtherSessions, endSession, introspect, listSessions, refreshSession, revokeByRefreshToken } from './sessions.service.js';
import {
  IntrospectionRequestSchema,
  IntrospectionResponseSchema,
  JwksSchema,
  OtherSessionsEndedSchema,
  RefreshRequestSchema,
  SessionIdParamsSchema,
  SessionListSchema,
  TokenResponseSchema,
} from './sessions.schemas.js';

/** Token endpoints: refresh, logout, own sessions, JWKS and introspection. */
export const sessionRoutes: FastifyPluginAsyncZod = async (app) => {
  app.post(
    '/v1/auth/refresh',
    {
      // Per IP; generous because whole offices share one address behind NAT (each user refreshes
      // about every ACCESS_TOKEN_TTL_SECONDS). Guessing a 256-bit token is hopeless anyway.
      config: { access: 'public', rateLimit: { max: 300, timeWindow: '1 minute' } },
      schema: {
        operationId: 'refreshTokens',
        tags: ['tokens'],
        summary: 'Exchange a refresh token for a new token pair (the old refresh token dies)',
        description:
          'Rotation with reuse detection: a refresh token works once. Presenting an already rotated token ' +
          'ends the whole session (401 refresh_token_reused) - except within a short grace period after its ' +
          'rotation (REFRESH_REUSE_GRACE_SECONDS, default 10 s), where a concurrent refresh gets 409 ' +
          'refresh_conflict and the session stays alive. Expired (idle or absolute), or refreshed ' +
          'REFRESH_MAX_PER_SESSION times (default 5,000; the session ends, audited) → 401 refresh_token_expired; ' +
          'unknown, ended session or blocked account → 401 refresh_token_invalid. For clients: refresh from one ' +
          'place (tabs share the stored pair and one refresh); on 409 refresh_conflict do not retry with that token ' +
          '— take the pair the other request stored. After a network error retry once, at once: 200 (the first ' +
          'request never arrived) or 409 (it did, and its pair is lost: sign in again).',
        body: RefreshRequestSchema,
        response: { 200: TokenResponseSchema, ...problemResponses(401, 409) },
      },
    },
    async (request, reply) => {
      const meta = requestMeta(request);
      // The usual refresh in one statement; anything else (and any race it lost) the general path answers.
      const tokens =
        (await refreshAtOnce(app.ctx, request.body.refreshToken, meta)) ?? (await refreshSession(app.ctx, request.body.refreshToken, meta));
      noStore(reply);
      return tokens;
    },
  );

  app.post(
    '/v1/auth/logout',
    {
      config: { access: { permission: 'auth:logout' } },
      schema: {
        operationId: 'logout',
        tags: ['tokens'],
        summary: 'End the current session (its refresh token and access tokens stop working at once)',
        description:
          'Authenticated by the session\'s access token. When that has expired, log out with the refresh token instead ' +
          '(POST /v1/auth/revoke): a client that only forgets its tokens leaves the session alive until its refresh token expires.',
        response: { 204: NoContent },
      },
    },
    async (request, reply) => {
      const actor = requireActor(request);
      await endSession(app.ctx, {
        userId: actor.userId,
        sessionId: actor.sessionId,
        organizationId: actor.organizationId,
        reason: 'logout',
        meta: requestMeta(request),
      });
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/v1/auth/revoke',
    {
      // Per IP, as refresh: a 256-bit token cannot be guessed, and whole offices share one address.
      config: { access: 'public', rateLimit: { max: 300, timeWindow: '1 minute' } },
      schema: {
        operationId: 'revokeRefreshToken',
        tags: ['tokens'],
        summary: 'Log out with the refresh token (for when the access token has expired)',
        description:
          'Ends the session the refresh token belongs to, as logout does: its refresh token and access tokens stop working at ' +
          'once. Any refresh token of the session works, an already rotated one too (a logout racing a refresh in another ' +
          'tab still ends the session). In the manner of RFC 7009 the answer is 204 whatever the token: unknown, expired, or ' +
          'of a session that has already ended.',
        body: RefreshRequestSchema,
        response: { 204: NoContent, ...problemResponses(401) },
      },
    },
    async (request, reply) => {
      await revokeByRefreshToken(app.ctx, request.body.refreshToken, requestMeta(request));
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/v1/me/sessions',
    {
      config: { access: { permission: 'me:sessions' } },
      schema: {
        operationId: 'listMySessions',
        tags: ['me'],
        summary: 'My signed-in sessions (devices), newest first',
        response: { 200: SessionListSchema },
      },
    },
    async (request) => {
      const actor = requireActor(request);
      return { sessions: await listSessions(app.ctx, actor.userId, actor.sessionId) };
    },
  );

  app.delete(
    '/v1/me/sessions',
    {
      config: { access: { permission: 'me:sessions' } },
      schema: {
        operationId: 'deleteMyOtherSessions',
        tags: ['me'],
        summary: 'Sign out all my other devices (every session but the one making this request)',
        description:
          'Their refresh tokens stop working at once, and this service refuses their access tokens; services that verify access ' +
          'tokens offline (JWKS) accept one until it expires (ACCESS_TOKEN_TTL_SECONDS). `ended` counts the sessions ended (0 when there were none).',
        response: { 200: OtherSessionsEndedSchema },
      },
    },
    async (request) => {
      const actor = requireActor(request);
      const ended = await endOtherSessions(app.ctx, {
        userId: actor.userId,
        currentSessionId: actor.sessionId,
        organizationId: actor.organizationId,
        meta: requestMeta(request),
      });
      return { ended };
    },
  );

  app.delete(
    '/v1/me/sessions/:id',
    {
      config: { access: { permission: 'me:sessions' } },
      schema: {
        operationId: 'deleteMySession',
        tags: ['me'],
        summary: 'End one of my sessions (sign out that device)',
        description: '404 when the session is not one of mine or has already ended.',
        params: SessionIdParamsSchema,
        response: { 204: NoContent, ...problemResponses(404) },
      },
    },
    async (request, reply) => {
      const actor = requireActor(request);
      const ended = await endSession(app.ctx, {
        userId: actor.userId,
        sessionId: request.params.id,
        organizationId: actor.organizationId,
        reason: 'user_revoked',
        meta: requestMeta(request),
      });
      if (!ended) throw commonErrors.not_found('No such session.');
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/.well-known/jwks.json',
    {
      config: { access: 'public' },
      schema: {
        operationId: 'getJwks',
        tags: ['tokens'],
        summary: 'Public keys that verify access tokens (RFC 7517)',
        description:
          'Every key that may still verify a live access token: the current signing key and, after a rotation, ' +
          'the previous keys until their last tokens have expired. Select the key by the token header `kid`.',
        response: { 200: JwksSchema },
      },
    },
    async (_request, reply) => {
      reply.header('cache-control', `public, max-age=${JWKS_MAX_AGE_SECONDS}`);
      return { keys: app.ctx.signer.publicJwks() };
    },
  );

  await app.register(introspectionRoute);
};

/**
 * RFC 7662 clients send application/x-www-form-urlencoded; JSON works too. Its own plugin, so the
 * form parser serves introspection alone: every other route answers 415 to a form body.
 */
const introspectionRoute: FastifyPluginAsyncZod = async (app) => {
  // RFC 6749 §3.1 (which RFC 7662 builds on): a parameter must not be sent more than once. Taking
  // one of two `token` values would answer for a token the caller may not have meant.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) => {
    const params = new Map<string, string>();
    for (const [name, value] of new URLSearchParams(body as string)) {
      if (params.has(name)) {
        return done(commonErrors.validation_failed('One or more fields are invalid.', { errors: [{ path: `body.${name}`, message: 'sent more than once', code: 'invalid' }] }), undefined);
      }
      params.set(name, value);
    }
    done(null, Object.fromEntries(params));
  });

  app.post(
    '/v1/tokens/introspect',
    {
      config: { access: 'service_client' },
      schema: {
        operationId: 'introspectToken',
        tags: ['tokens'],
        summary: 'Token introspection for service clients (RFC 7662)',
        description:
          'HTTP Basic authentication with a configured service client. Body as JSON or ' +
          'application/x-www-form-urlencoded: `token` (an access token). Answers `active: true` with the ' +
          "token's claims (roles, org and terms as they are now) only when the token is valid (and not expired, to the second) AND carries one of the " +
          "client's audiences (SERVICE_CLIENTS) AND its session is alive AND the user is active with " +
          'two-step login set up; otherwise exactly ' +
          '`{"active": false}`.',
        consumes: ['application/json', 'application/x-www-form-urlencoded'],
        body: IntrospectionRequestSchema,
        response: { 200: IntrospectionResponseSchema },
      },
    },
    async (request, reply) => {
      const { token, client_id: clientId } = request.body;
      if (clientId !== undefined && clientId !== request.serviceClient!.id) throw invalidClient();
      noStore(reply);
      return introspect(app.ctx, token, request.serviceClient!);
    },
  );
};
