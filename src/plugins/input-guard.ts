import fp from 'fastify-plugin';
import { commonErrors } from '../errors.js';

/**
 * PostgreSQL text cannot hold U+0000: a NUL in any string that reaches a query (an e-mail at
 * login or "forgot password", a search term, a name) made the driver throw and the request
 * answer 500 (security.md item 28: malformed input is a 400, never a 500). No field of this API
 * has a use for it, so every request part the route declares a schema for (body, query string,
 * path parameters) is checked once, before validation: 400 validation_failed naming the field.
 * The check is the same for every account, so it tells nothing about which e-mails exist.
 */

const NUL = '\u0000';
/** Bodies are ≤ 16 KiB; deeper nesting than this is rejected by the schemas anyway. */
const MAX_DEPTH = 32;

export function findNul(value: unknown, path: string, depth = 0): string | null {
  if (typeof value === 'string') return value.includes(NUL) ? path || '(root)' : null;
  if (value === null || typeof value !== 'object' || depth > MAX_DEPTH) return null;
  for (const [key, item] of Object.entries(value)) {
    const at = path ? `${path}.${key}` : key;
    if (key.includes(NUL)) return at;
    const hit = findNul(item, at, depth + 1);
    if (hit !== null) return hit;
  }
  return null;
}

export const inputGuard = fp(
  async (app) => {
    app.addHook('preValidation', (request, _reply, done) => {
      const schema = request.routeOptions.schema as { body?: unknown; querystring?: unknown; params?: unknown } | undefined;
      if (!schema) return done();
      const parts = [
        ['body', schema.body, request.body],
        ['querystring', schema.querystring, request.query],
        ['params', schema.params, request.params],
      ] as const;
      for (const [name, declared, value] of parts) {
        if (!declared) continue;
        const hit = findNul(value, name);
        if (hit !== null) {
          return done(
            commonErrors.validation_failed('One or more fields are invalid.', {
              errors: [{ path: hit, message: 'must not contain NUL (U+0000) characters' }],
            }),
          );
        }
      }
      done();
    });
  },
  { name: 'input-guard' },
);
