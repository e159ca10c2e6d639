import fp from 'fastify-plugin';
import { commonErrors } from '../errors.js';
import { unrecognized, type FieldError } from '../http/validation-errors.js';

/**
 * Text that cannot be stored as it was checked is refused before validation:
 *  - PostgreSQL text cannot hold U+0000: a NUL in any string that reaches a query (an e-mail at
 *    login or "forgot password", a search term, a name) made the driver throw and the request
 *    answer 500 (security.md item 28: malformed input is a 400, never a 500);
 *  - a lone UTF-16 surrogate (JSON allows "\ud800") becomes U+FFFD once encoded as UTF-8 — by the
 *    driver, and by argon2 — so the policies would check one string and store or hash another
 *    (twelve distinct lone surrogates passed the password policy and hashed as twelve U+FFFD).
 * No field of this API has a use for either, so every request part the route declares a schema
 * for (body, query string, path parameters) is checked once: 400 validation_failed naming the
 * field. The check is the same for every account, so it tells nothing about which e-mails exist.
 *
 * Unknown input is refused too (security.md items 25 and 28): the schemas reject unknown fields
 * of the parts they declare, and here a body sent to an operation that takes none, or a query
 * parameter sent to one that declares no query string, is a 400 validation_failed instead of being
 * ignored (with GET and HEAD, a body the headers announce: carriesBody, refused unread). An empty
 * JSON object counts as no body (some HTTP clients always send one with POST).
 * Routes hidden from the document (/docs, the CORS preflight route) are not checked.
 */

const NUL = '\u0000';
/** Bodies are ≤ 16 KiB; deeper nesting than this is rejected by the schemas anyway. */
const MAX_DEPTH = 32;

/** With the u flag a surrogate pair is one code point: only a lone surrogate is \p{Cs}. */
const LONE_SURROGATE = /\p{Cs}/u;

const unstorable = (text: string): string | null =>
  text.includes(NUL)
    ? 'must not contain NUL (U+0000) characters'
    : LONE_SURROGATE.test(text)
      ? 'must be well-formed Unicode (no lone surrogates)'
      : null;

/** The first string (or key) in `value` that cannot be stored as checked: its path and why. */
export function findUnstorableText(value: unknown, path: string, depth = 0): FieldError | null {
  if (typeof value === 'string') {
    const message = unstorable(value);
    return message ? { path: path || '(root)', message, code: 'invalid_format' } : null;
  }
  if (value === null || typeof value !== 'object' || depth > MAX_DEPTH) return null;
  for (const [key, item] of Object.entries(value)) {
    const at = path ? `${path}.${key}` : key;
    const message = unstorable(key);
    if (message) return { path: at, message, code: 'invalid_format' };
    const hit = findUnstorableText(item, at, depth + 1);
    if (hit !== null) return hit;
  }
  return null;
}

type Schema = { body?: unknown; querystring?: unknown; params?: unknown; hide?: boolean };

function isEmptyBody(body: unknown): boolean {
  return body === undefined || (typeof body === 'object' && body !== null && !Array.isArray(body) && Object.keys(body).length === 0);
}

/**
 * Fastify reads no body for GET and HEAD, so one sent with them would be ignored without a word.
 * RFC 9110 §9.3.1: such content has no defined meaning and may be rejected for its potential in
 * request smuggling; here it counts as sent when the headers announce one, and is refused unread.
 */
const readsNoBody = (method: string) => method === 'GET' || method === 'HEAD';

function carriesBody(headers: Record<string, string | string[] | undefined>): boolean {
  const length = headers['content-length'];
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

type Received = { method: string; headers: Record<string, string | string[] | undefined>; body: unknown; query: unknown };

/** Input the operation does not declare: a body where it takes none, query parameters where it takes none. */
function undeclaredInput(schema: Schema, request: Received): FieldError[] {
  const errors: FieldError[] = [];
  const sentBody = readsNoBody(request.method) ? carriesBody(request.headers) : !isEmptyBody(request.body);
  if (!schema.body && sentBody) errors.push({ path: 'body', message: 'this operation takes no request body', code: 'invalid' });
  const unknown = schema.querystring ? [] : Object.keys(request.query as object);
  if (unknown.length > 0) errors.push({ path: 'querystring', code: 'unrecognized_keys', ...unrecognized(unknown) });
  return errors;
}

export const inputGuard = fp(
  async (app) => {
    app.addHook('preValidation', (request, reply, done) => {
      const schema = request.routeOptions.schema as Schema | undefined;
      if (!schema) return done();
      const parts = [
        ['body', schema.body, request.body],
        ['querystring', schema.querystring, request.query],
        ['params', schema.params, request.params],
      ] as const;
      for (const [name, declared, value] of parts) {
        if (!declared) continue;
        const hit = findUnstorableText(value, name);
        if (hit !== null) return done(commonErrors.validation_failed('One or more fields are invalid.', { errors: [hit] }));
      }
      const undeclared = schema.hide ? [] : undeclaredInput(schema, request);
      if (undeclared.length > 0) {
        // A GET's body is not read: the connection ends with this answer rather than reading it to the end.
        if (readsNoBody(request.method) && undeclared[0]!.path === 'body') reply.header('connection', 'close');
        return done(commonErrors.validation_failed('One or more fields are invalid.', { errors: undeclared }));
      }
      done();
    });
  },
  { name: 'input-guard' },
);
