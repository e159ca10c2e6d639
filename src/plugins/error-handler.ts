import fp from 'fastify-plugin';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from 'fastify-type-provider-zod';
import { AppError, commonErrors } from '../errors.js';
import { isDatabaseUnavailable, isStalePreparedStatement } from '../db/errors.js';
import { PROBLEM_CONTENT_TYPE, problemDocument } from '../http/problem.js';
import { validationErrors, type ValidationIssue } from '../http/validation-errors.js';
import { routerErrorHeaders } from './security-headers.js';
import { challengeFor } from '../http/auth-challenge.js';
import type { RouteAccess } from './route-access.js';

/** The one place where errors become RFC 9457 problem+json. 5xx never carry internals. */

function send(reply: FastifyReply, request: FastifyRequest, error: AppError) {
  for (const [name, value] of Object.entries(error.headers)) reply.header(name, value);
  // A 401 thrown deeper down (a re-check in a service) names the route's scheme like the hook's do.
  if (error.status === 401 && !reply.hasHeader('www-authenticate')) {
    const challenge = challengeFor((request.routeOptions.config as { access?: RouteAccess } | undefined)?.access);
    if (challenge) reply.header('www-authenticate', challenge);
  }
  return reply
    .status(error.status)
    .type(PROBLEM_CONTENT_TYPE)
    .send(problemDocument(error, request.id));
}

/** What a 415 tells to send: JSON, and where the route also parses a form (introspection, RFC 7662) that too. */
const mediaTypes = (request?: FastifyRequest) =>
  request?.server.hasContentTypeParser('application/x-www-form-urlencoded')
    ? 'Send JSON (Content-Type: application/json) or a form (Content-Type: application/x-www-form-urlencoded).'
    : 'Send JSON with Content-Type: application/json.';

export function toAppError(err: FastifyError | Error, request?: FastifyRequest): AppError {
  if (err instanceof AppError) return err;
  const fe = err as FastifyError & { validationContext?: string };
  if (hasZodFastifySchemaValidationErrors(fe) || fe.validation) {
    const errors = validationErrors(fe.validationContext, (fe.validation ?? []) as ValidationIssue[]);
    return commonErrors.validation_failed('One or more fields are invalid.', { errors });
  }
  if (isResponseSerializationError(err)) return commonErrors.internal_error();
  if ((err as { code?: string }).code === 'service_overloaded') {
    return commonErrors.service_unavailable('The service is busy. Try again shortly.', {}, { 'retry-after': '2' });
  }
  if (isDatabaseUnavailable(err)) {
    return commonErrors.service_unavailable('The database is not reachable. Try again shortly.', {}, { 'retry-after': '5' });
  }
  if (isStalePreparedStatement(err)) {
    // A migration changed a column under a statement prepared on a held connection (closed now).
    return commonErrors.service_unavailable('The database changed. Try again.', {}, { 'retry-after': '1' });
  }
  switch (fe.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return commonErrors.payload_too_large('The request body exceeds 16 KiB.');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return commonErrors.unsupported_media_type(mediaTypes(request));
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return commonErrors.malformed_json();
  }
  if (err instanceof SyntaxError && fe.statusCode === 400) return commonErrors.malformed_json();
  if (fe.statusCode === 429) return commonErrors.rate_limited('Too many requests. Try again later.');
  if (fe.statusCode === 404) return commonErrors.not_found();
  if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) {
    return commonErrors.validation_failed(fe.message);
  }
  return commonErrors.internal_error();
}

/**
 * Errors the router raises before any route runs (Fastify's `frameworkErrors`): a path parameter
 * longer than the router accepts, or one that is not valid percent-encoding. Without this Fastify
 * answers them itself, as plain JSON with status 414/400 that no route declares.
 */
export function frameworkErrors(err: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  const appError =
    err.code === 'FST_ERR_MAX_PARAM_LENGTH'
      ? commonErrors.validation_failed('A path parameter is too long.', { errors: [{ path: 'params', message: 'too long', code: 'too_big' }] })
      : err.code === 'FST_ERR_BAD_URL'
        ? commonErrors.validation_failed('The URL is not valid.', { errors: [{ path: 'params', message: 'not valid percent-encoding', code: 'invalid_format' }] })
        : commonErrors.internal_error();
  if (appError.status >= 500) request.log.error({ err }, 'request failed');
  else request.log.info({ code: appError.code, reason: err.code }, 'request rejected');
  // No route, so no hook adds the request id, the security headers or CORS.
  reply.header('x-request-id', request.id).headers(routerErrorHeaders(request));
  return send(reply, request, appError);
}

const REFUSALS = new Set([403, 404]);

export const errorHandler = fp(
  async (app) => {
    app.setErrorHandler((err: FastifyError, request, reply) => {
      const appError = toAppError(err, request);
      if (appError.status === 503) {
        // An outage, an overload or a shutdown, not a bug: a warning with the cause, no stack (a
        // database outage answers every request so; /readyz and the metrics are the alarm).
        const cause = err instanceof AppError ? {} : { reason: err.code ?? err.name, cause: err.message };
        request.log.warn({ code: appError.code, ...cause }, 'service unavailable');
      } else if (appError.status >= 500) {
        request.log.error({ err }, 'request failed');
      } else if (!(err instanceof AppError)) {
        request.log.info({ code: appError.code, reason: err.code ?? err.name }, 'request rejected');
      } else if (request.actor && REFUSALS.has(appError.status)) {
        // Failed authorisation, with who tried (ASVS 5.0 16.3.2): the policy answers 404 for what
        // lies outside the caller's reach, so 404s of signed-in callers are logged as well. Who
        // tried (userId, sessionId, organizationId) the request's logger adds (logWho, logger.ts).
        request.log.warn({ code: appError.code }, 'access refused');
      }
      return send(reply, request, appError);
    });
    app.setNotFoundHandler((request, reply) =>
      send(reply, request, commonErrors.not_found(`No route ${request.method} ${request.url.split('?')[0]}.`)),
    );
  },
  { name: 'error-handler' },
);
