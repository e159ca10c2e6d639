import { z } from 'zod';
import { FIELD_ERROR_REASONS, FIELD_ERROR_REASONS_DESCRIBED, reasonOf } from '../lib/field-reasons.js';

/**
 * The `errors` of a 400 validation_failed: one per offending field, with a stable `code` (and the
 * limit or the allowed values where there is one) so a frontend can say what is wrong in the
 * user's language; `message` is English, for developers.
 */
export const FIELD_ERROR_CODES = [
  'required',
  'invalid_type',
  'too_small',
  'too_big',
  'invalid_format',
  'invalid_value',
  'unrecognized_keys',
  'only_one_of',
  'invalid',
] as const;

export const FieldErrorSchema = z
  .object({
    path: z.string().describe('The field, dotted from the part of the request (`body.password`, `querystring.limit`, `body` for the body as a whole)'),
    message: z.string().describe('In English, for developers'),
    code: z
      .enum(FIELD_ERROR_CODES)
      .describe(
        'What is wrong, to translate: required (missing); invalid_type; too_small / too_big (with minimum / maximum: a length for text and lists, a value for numbers); ' +
          'invalid_format (with format: email, uuid, datetime, regex, …); invalid_value (with values: the allowed ones); unrecognized_keys (fields the request may not have, in keys); ' +
          'only_one_of (this field excludes another one sent with it, the message names them: send one); invalid (anything else)',
      ),
    minimum: z.number().optional(),
    maximum: z.number().optional(),
    format: z.string().optional(),
    values: z.array(z.string()).optional(),
    keys: z.array(z.string()).optional().describe('unrecognized_keys: the first 10 of them'),
    reason: z
      .enum(FIELD_ERROR_REASONS)
      .optional()
      .describe(
        'invalid / invalid_format of a rule the code alone does not name (a name breaks one of six), to translate: ' +
          FIELD_ERROR_REASONS.map((r) => `${r} (${FIELD_ERROR_REASONS_DESCRIBED[r]})`).join('; '),
      ),
  })
  .meta({ id: 'FieldError' });

export type FieldError = z.infer<typeof FieldErrorSchema>;

/** At most this many fields in an answer, and unknown keys named per field: the answer stays small whatever was sent. */
const MAX_ERRORS = 20;
const MAX_KEYS_NAMED = 10;

/**
 * A field one alternative of a union takes and this one does not: declared absent, so that sent
 * with this alternative's fields it is answered as only_one_of with `message`, not as an unknown key.
 */
export const notWith = (message: string) => z.never({ error: message }).optional();

/** Unknown keys, the first few named (a URL can carry thousands). */
export function unrecognized(keys: readonly string[]): Pick<FieldError, 'message' | 'keys'> {
  const named = keys.slice(0, MAX_KEYS_NAMED);
  const more = keys.length > named.length ? ` and ${keys.length - named.length} more` : '';
  return { message: `Unrecognized key${keys.length > 1 ? 's' : ''}: ${named.map((k) => JSON.stringify(k)).join(', ')}${more}`, keys: named };
}

type ZodIssueLike = {
  path?: PropertyKey[];
  message?: string;
  code?: string;
  keys?: string[];
  minimum?: number | bigint;
  maximum?: number | bigint;
  format?: string;
  values?: unknown[];
  expected?: string;
  pattern?: string;
  params?: unknown;
  errors?: ZodIssueLike[][];
};

/** A validation error as fastify-type-provider-zod reports it: the zod issue's code as `keyword`, the rest of it in `params`. */
export type ValidationIssue = { keyword?: string; instancePath?: string; message?: string; params?: Omit<ZodIssueLike, 'path' | 'code' | 'message'> };

export function validationErrors(context: string | undefined, issues: ValidationIssue[]): FieldError[] {
  return issues.slice(0, MAX_ERRORS).flatMap((i) => {
    const path = i.instancePath?.replace(/^\//, '').replaceAll('/', '.') ?? '';
    const at = (...parts: string[]) => [context, path, ...parts].filter(Boolean).join('.') || '(root)';
    // A union (e.g. `code` or `recoveryCode`) fails as one "Invalid input" at its root: name the
    // fields of the alternative(s) that came closest (fewest issues) instead. Each alternative
    // declares the others' fields absent (notWith), so a field sent with another it excludes is
    // named as such, never as unknown.
    const alternatives = i.params?.errors;
    if (Array.isArray(alternatives) && alternatives.length > 0) {
      const fewest = Math.min(...alternatives.map((a) => a.length));
      const closest = alternatives.filter((a) => a.length === fewest).flat();
      const errors = closest.map((n) => fieldError(at(...(n.path ?? []).map(String)), n));
      const unique = new Map(errors.map((e) => [`${e.path}\n${e.message}`, e]));
      if (unique.size > 0) return [...unique.values()];
    }
    // No body at all (none sent, or an empty one): say so rather than "expected object, received null".
    if (context === 'body' && !path && /received (null|undefined)$/.test(i.message ?? '')) return [{ path: 'body', message: 'required', code: 'required' as const }];
    return [fieldError(at(), { ...i.params, code: i.keyword, message: i.message })];
  });
}

function fieldError(path: string, issue: ZodIssueLike): FieldError {
  const message = issue.message ?? 'invalid';
  const known = (FIELD_ERROR_CODES as readonly string[]).includes(issue.code ?? '') ? (issue.code as FieldError['code']) : 'invalid';
  const code = known === 'invalid_type' && issue.expected === 'never' ? 'only_one_of' : known === 'invalid_type' && /received undefined$/.test(message) ? 'required' : known;
  const error: FieldError = { path, message, code };
  if (code === 'too_small' && issue.minimum !== undefined) error.minimum = Number(issue.minimum);
  if (code === 'too_big' && issue.maximum !== undefined) error.maximum = Number(issue.maximum);
  if (code === 'invalid_format' && issue.format) error.format = issue.format;
  if (code === 'invalid_value' && Array.isArray(issue.values)) error.values = issue.values.map(String);
  if (code === 'unrecognized_keys' && issue.keys) Object.assign(error, unrecognized(issue.keys));
  const reason = reasonOf(issue);
  if (reason) error.reason = reason;
  return error;
}
