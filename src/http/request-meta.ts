import type { FastifyRequest } from 'fastify';
import type { RequestMeta } from '../modules/audit/audit.service.js';

export function requestMeta(request: FastifyRequest): RequestMeta {
  const ua = request.headers['user-agent'];
  return { ip: request.ip ?? null, userAgent: typeof ua === 'string' ? ua.slice(0, 512) : null };
}
