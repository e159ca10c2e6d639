import type { FastifyInstance } from 'fastify';

/** The committed form of the document: stable key order from the app, two-space JSON, newline. */
export function renderOpenApi(app: FastifyInstance): string {
  return `${JSON.stringify(app.swagger(), null, 2)}\n`;
}
