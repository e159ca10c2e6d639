import { isIP } from 'node:net';
import type { FastifyInstance } from 'fastify';

/** An X-Forwarded-For entry with the client's port: "203.0.113.7:40000" or "[2001:db8::1]:40000". */
const WITH_PORT = /^(?:\[([0-9A-Fa-f:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3})):\d{1,5}$/;

/** The header with each entry's port dropped; entries without one stay as they are. */
export function withoutPorts(header: string): string {
  return header
    .split(',')
    .map((entry) => {
      const trimmed = entry.trim();
      const match = WITH_PORT.exec(trimmed);
      const ip = match ? (match[1] ?? match[2]) : undefined;
      return ip && isIP(ip) ? ip : trimmed;
    })
    .join(', ');
}

/**
 * Some proxies write the client's port into X-Forwarded-For (Azure Application Gateway does by
 * default). Fastify's request.ip would then be "203.0.113.7:40000": every source port its own
 * rate-limit budget, IPv6 clients no longer counted per /64, a port in audit rows and sessions.
 * Where X-Forwarded-For is believed (TRUST_PROXY), the first onRequest hook drops the ports before
 * anything reads request.ip (which Fastify derives from the raw header on every read).
 */
export function dropForwardedPorts(app: FastifyInstance): void {
  app.addHook('onRequest', (request, _reply, done) => {
    const header = request.raw.headers['x-forwarded-for'];
    if (typeof header === 'string' && header.includes(':')) request.raw.headers['x-forwarded-for'] = withoutPorts(header);
    done();
  });
}
