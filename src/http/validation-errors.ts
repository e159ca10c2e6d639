import { z } from 'zod';

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
    path: z.string().describe('The field, dotted from the part of the request (`body.password`, `query.limit`, `body` for the body as a whole)'),
    message: z.string().describe('In English, for developers'),
    code: z
      .enum(FIELD_ERROR_CODES)
      .describe(
        'What is wrong, to translate: required (missing); invalid_type; too_small / too_big (with minimum / maximum: a length for text and lists, a value for numbers); ' +
          'invalid_format (with format: email, uuid, datetime, regex, …); invalid_value (with values: the allowed ones); unrecognized_keys (fields the request may not have, in keys); ' +
          'only_one_of (fields that exclude each other, in keys: send one); invalid (anything else)',
      ),
    minimum: z.number().optional(),
    maximum: z.number().optional(),
    format: z.string().optional(),
    values: z.array(z.string()).optional(),
    keys: z.array(z.string()).optional(),
  })
  .meta({ id: 'FieldError' });

export type FieldError = z.infer<typeof FieldErrorSchema>;

type ZodIssueLike = {
  path?: PropertyKey[];
  message?: string;
  code?: string;
  keys?: string[];
  minimum?: number | bigint;
  maximum?: number | bigint;
  format?: string;
  values?: unknown[];
  errors?: ZodIssueLike[][];
};

/** A validation error as fastify-type-provider-zod reports it: the zod issue's code as `keyword`, the rest of it in `params`. */
export type ValidationIssue = { keyword?: string; instancePath?: string; message?: string; params?: Omit<ZodIssueLike, 'path' | 'code' | 'message'> };

export function validationErrors(context: string | undefined, issues: ValidationIssue[]): FieldError[] {
  return issues.flatMap((i) => {
    const path = i.instancePath?.replace(/^\//, '').replaceAll('/', '.') ?? '';
    const at = (...parts: string[]) => [context, path, ...parts].filter(Boolean).join('.') || '(root)';
    // A union (e.g. `code` or `recoveryCode`) fails as one "Invalid input" at its root: name the
    // fields of the alternative(s) that came closest (fewest issues) instead, and keys of different
    // alternatives sent together as such (unionKeyErrors).
    const alternatives = i.params?.errors;
    if (Array.isArray(alternatives) && alternatives.length > 0) {
      const fewest = Math.min(...alternatives.map((a) => a.length));
      const keyErrors = unionKeyErrors(alternatives, at());
      const closest = alternatives
        .filter((a) => a.length === fewest)
        .flat()
        .filter((n) => keyErrors.length === 0 || n.code !== 'unrecognized_keys');
      const unique = new Map(closest.map((n) => [`${at(...(n.path ?? []).map(String))}\n${n.message}`, fieldError(at(...(n.path ?? []).map(String)), n)]));
      if (keyErrors.length + unique.size > 0) return [...keyErrors, ...unique.values()];
    }
    // No body at all (none sent, or an empty one): say so rather than "expected object, received null".
    if (context === 'body' && !path && /received (null|undefined)$/.test(i.message ?? '')) return [{ path: 'body', message: 'required', code: 'required' as const }];
    return [fieldError(at(), { ...i.params, code: i.keyword, message: i.message })];
  });
}

function fieldError(path: string, issue: ZodIssueLike): FieldError {
  const message = issue.message ?? 'invalid';
  const known = (FIELD_ERROR_CODES as readonly string[]).includes(issue.code ?? '') ? (issue.code as FieldError['code']) : 'invalid';
  const code = known === 'invalid_type' && /received undefined$/.test(message) ? 'required' : known;
  const error: FieldError = { path, message, code };
  if (code === 'too_small' && issue.minimum !== undefined) error.minimum = Number(issue.minimum);
  if (code === 'too_big' && issue.maximum !== undefined) error.maximum = Number(issue.maximum);
  if (code === 'invalid_format' && issue.format) error.format = issue.format;
  if (code === 'invalid_value' && Array.isArray(issue.values)) error.values = issue.values.map(String);
  if (code === 'unrecognized_keys' && issue.keys) error.keys = issue.keys;
  return error;
}

/**
 * A union of strict objects (either `code` or `recoveryCode`) that every alternative refused for
 * keys it does not know: a key none knows is unrecognized; keys of different alternatives sent
 * together are named as such (each alternative alone would call the other's key unknown).
 */
function unionKeyErrors(alternatives: ZodIssueLike[][], path: string): FieldError[] {
  const extra = alternatives.map((a) => new Set(a.filter((n) => n.code === 'unrecognized_keys' && (n.path ?? []).length === 0).flatMap((n) => n.keys ?? [])));
  if (extra.length === 0 || extra.some((keys) => keys.size === 0)) return [];
  const all = [...new Set(extra.flatMap((keys) => [...keys]))].sort();
  const unknown = all.filter((k) => extra.every((keys) => keys.has(k)));
  const exclusive = all.filter((k) => !unknown.includes(k));
  const quoted = (keys: string[]) => keys.map((k) => JSON.stringify(k)).join(', ');
  return [
    ...(unknown.length > 0 ? [{ path, message: `Unrecognized key${unknown.length > 1 ? 's' : ''}: ${quoted(unknown)}`, code: 'unrecognized_keys' as const, keys: unknown }] : []),
    ...(exclusive.length > 0 ? [{ path, message: `Send only one of ${quoted(exclusive)}`, code: 'only_one_of' as const, keys: exclusive }] : []),
  ];
}
