import { isIP } from 'node:net';
import type { FastifyRequest } from 'fastify';
import type { RequestMeta } from '../modules/audit/audit.service.js';

/** Control characters (C0, DEL, C1) a client may put into its User-Agent; shown in session lists and audit views. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/**
 * Where a request came from, for audit rows and sessions: the client IP (request.ip; should a
 * trusted proxy have written something that is no IP, the socket address) and the User-Agent,
 * at most 512 characters, control characters shown as spaces.
 */
export function requestMeta(request: FastifyRequest): RequestMeta {
  const ua = request.headers['user-agent'];
  const ip = request.ip;
  return {
    ip: ip && isIP(ip) ? ip : (request.socket?.remoteAddress ?? null),
    userAgent: typeof ua === 'string' ? ua.slice(0, 512).replace(CONTROL, ' ') : null,
  };
}
