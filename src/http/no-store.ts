import type { FastifyReply } from 'fastify';

/**
 * Marks a response as never cacheable (security.md item 21). Every route that returns tokens or
 * secrets calls it: `noStore(reply); return tokens;`.
 */
export function noStore(reply: FastifyReply): FastifyReply {
  return reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
}
