import { randomUUID } from 'node:crypto';
import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { defineErrors } from '../errors.js';
import { unroutedAnswerHeaders } from '../plugins/security-headers.js';
import { PROBLEM_CONTENT_TYPE, problemDocument } from './problem.js';

/**
 * Requests Node's HTTP parser refuses before Fastify sees them: no route, hook or reply exists, so
 * the answer is written to the socket here (Fastify's `clientErrorHandler`), as problem+json with
 * a stable code, the security headers and a request id, like every other error. Fastify's default
 * wrote `{"error", "message", "statusCode"}` as application/json with none of them.
 */
export const clientErrors = defineErrors({
  malformed_request: { status: 400, title: 'The request is not valid HTTP' },
  request_timeout: { status: 408, title: 'The request did not arrive in time' },
  headers_too_large: { status: 431, title: 'The request line and headers are too large' },
});

function errorFor(code: string | undefined) {
  switch (code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return clientErrors.request_timeout('The whole request must arrive within the request timeout.');
    case 'HPE_HEADER_OVERFLOW':
      return clientErrors.headers_too_large('The request line and headers exceed 16 KiB.');
    default:
      return clientErrors.malformed_request('The request could not be parsed as HTTP/1.1.');
  }
}

/**
 * Runs `then` once no answer is owed on the connection any more. Bytes that do not parse may
 * follow a good request on the same connection (pipelined, or a body sent without Content-Length,
 * which the parser takes for the next request): that request is being handled, its change may be
 * made, and its client has to get its answer before the 400 that ends the connection — not a 400
 * alone, which would tell it that nothing happened. Node keeps the answer being written in
 * `socket._httpMessage` (with its request) and assigns the next queued one when it finishes.
 */
function afterOwedAnswers(socket: Socket, then: () => void): void {
  const owed = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  // Only for a request that arrived whole: one whose body is still arriving (or stalled: 408) is
  // the one refused, and its handler would wait for ever.
  if (owed && !owed.writableFinished && owed.req.complete && !socket.destroyed) owed.once('close', () => afterOwedAnswers(socket, then));
  else then();
}

/** Node's parse error; `rawPacket` is the Buffer of bytes received (Fastify's type describes it as serialised). */
type ParseError = Error & { code?: string; rawPacket?: unknown };

/** Where the bytes the parser received name an Origin, that origin (so an allowed frontend can read the answer: CORS). */
function originIn(rawPacket: unknown): string | undefined {
  if (!Buffer.isBuffer(rawPacket)) return undefined;
  // One unbounded run and no optional spaces around it: linear however long the line (the bytes are
  // the sender's, and a 431 is a request with very long headers).
  return /\r\norigin:([^\r\n]*)\r\n/i.exec(rawPacket.toString('latin1', 0, Math.min(rawPacket.length, 65_536)))?.[1]?.trim();
}

export function answerClientError(this: FastifyInstance, err: ParseError, socket: Socket): void {
  // A reset connection has nobody left to answer.
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  afterOwedAnswers(socket, () => answer(this, err, socket));
}

function answer(app: FastifyInstance, err: ParseError, socket: Socket): void {
  if (socket.destroyed) return;
  const error = errorFor(err.code);
  const requestId = randomUUID();
  // The parse error for operators; the logger's err serializer drops the request's bytes
  // (err.rawPacket: an Authorization header, a password), logger.ts.
  app.log.info({ err, code: error.code, requestId }, 'request rejected by the HTTP parser');
  if (socket.writable) {
    const body = JSON.stringify(problemDocument(error, requestId));
    // With CORS for an allowed frontend, whose script would otherwise see only "Failed to fetch"
    // (a real browser's 431, browser review, session 30), when the Origin came before the overflow.
    const headers: Record<string, string | number> = {
      ...unroutedAnswerHeaders(app.ctx.config.corsOrigins, originIn(err.rawPacket)),
      'content-type': PROBLEM_CONTENT_TYPE,
      'content-length': Buffer.byteLength(body),
      'x-request-id': requestId,
      connection: 'close',
    };
    const head = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
    // Ended, not destroyed at once: behind an answer still in the socket's buffer, a destroy would
    // drop this one. A peer that reads nothing does not hold the connection beyond a second.
    socket.end(`HTTP/1.1 ${error.status} ${STATUS_CODES[error.status]}\r\n${head}\r\n${body}`, () => socket.destroy());
    setTimeout(() => socket.destroy(), 1000).unref();
    return;
  }
  socket.destroy(err);
}
