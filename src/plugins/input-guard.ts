import fp from 'fastify-plugin';
import { commonErrors } from '../errors.js';

/**
 * PostgreSQL text cannot hold U+0000: a NUL in any string that reaches a query (an e-mail at
 * login or "forgot password", a search term, a name) made the driver throw and the request
 * answer 500 (security.md item 28: malformed input is a 400, never a 500). No field of this API
 * has a use for it, so every request part the route declares a schema for (body, query string,
 * path parameters) is checked once, before validation: 400 validation_failed naming the field.
 * The check is the same for every account, so it tells nothing about which e-mails exist.
 *
 * Unknown input is refused too (security.md items 25 and 28): the schemas reject unknown fields
 * of the parts they declare, and here a body sent to an operation that takes none, or a query
 * parameter sent to one that declares no query string, is a 400 validation_failed instead of being
 * ignored. An empty JSON object counts as no body (some HTTP clients always send one with POST).
 * Routes hidden from the document (/docs, the CORS preflight route) are not checked.
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

type Schema = { body?: unknown; querystring?: unknown; params?: unknown; hide?: boolean };
type FieldError = { path: string; message: string };

function isEmptyBody(body: unknown): boolean {
  return body === undefined || (typeof body === 'object' && body !== null && !Array.isArray(body) && Object.keys(body).length === 0);
}

/** Input the operation does not declare: a body where it takes none, query parameters where it takes none. */
function undeclaredInput(schema: Schema, body: unknown, query: object): FieldError[] {
  const errors: FieldError[] = [];
  if (!schema.body && !isEmptyBody(body)) errors.push({ path: 'body', message: 'this operation takes no request body' });
  if (!schema.querystring) {
    for (const name of Object.keys(query)) errors.push({ path: `querystring.${name}`, message: 'unknown query parameter' });
  }
  return errors;
}

export const inputGuard = fp(
  async (app) => {
    app.addHook('preValidation', (request, _reply, done) => {
      const schema = request.routeOptions.schema as Schema | undefined;
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
      const undeclared = schema.hide ? [] : undeclaredInput(schema, request.body, request.query as object);
      if (undeclared.length > 0) return done(commonErrors.validation_failed('One or more fields are invalid.', { errors: undeclared }));
      done();
    });
  },
  { name: 'input-guard' },
);
