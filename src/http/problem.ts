import { z } from 'zod';
import { errorCatalogue, type AppError } from '../errors.js';
import { FieldErrorSchema } from './validation-errors.js';
import { LANGUAGES } from '../lib/languages.js';

/** Whom a user can ask: account_blocked, mfa_locked, and link_expired / link_used of an invitation. */
export const ContactSchema = z.object({
  support: z
    .string()
    .describe("How to reach the shop support team, named as the user's language names it (SUPPORT_CONTACT, SUPPORT_CONTACT_DE), for the frontend's own translated sentence"),
  language: z
    .enum(LANGUAGES)
    .describe("The language `support` is written in: the account's, or the service's default (DEFAULT_LANGUAGE) when it has none. A page in another language puts it into a sentence of this language, or shows it on its own"),
  administrators: z
    .array(z.object({ name: z.string(), email: z.string() }))
    .describe("The organisation's active administrators who can help; empty when only support can (a block support imposed)"),
});

/** RFC 9457 problem details. Extra members (hint, retryAfter, errors, ...) are allowed per code. */
export const ProblemSchema = z
  .looseObject({
    type: z.string().describe('URI identifying the problem type'),
    title: z.string(),
    status: z.number().int(),
    code: z.string().describe('Stable machine-readable error code (snake_case)'),
    detail: z.string().optional(),
    requestId: z.string().optional(),
    errors: z.array(FieldErrorSchema).optional().describe('For validation_failed: the offending fields'),
    // Members some codes add, typed here so a generated client knows them (each code's doc says which):
    retryAfter: z.number().int().min(0).optional().describe('account_locked, mfa_locked, mfa_enrollment_in_progress, rate_limited: seconds until trying again helps (also Retry-After)'),
    attemptsRemaining: z.number().int().min(0).optional().describe('mfa_code_invalid, mfa_code_reused, recovery_code_invalid: codes this login challenge still accepts (fewer when the account code lock comes first)'),
    afterLastAttempt: z
      .enum(['sign_in_again', 'locked'])
      .optional()
      .describe(
        'With attemptsRemaining: what follows once those attempts are used up with wrong codes — sign_in_again (this login challenge is spent: the password again) or locked (code entry locks for the account: 423 mfa_locked with Retry-After)',
      ),
    linkState: z
      .enum(['used', 'replaced', 'withdrawn', 'account_active'])
      .optional()
      .describe('link_used: why the link no longer works: used; replaced (a newer link was sent, or a change to the account ended this one: use the newest e-mail); withdrawn (its sender was blocked, and no newer link was sent since: ask for a new one; once one is sent, replaced); account_active (activation: sign in instead)'),
    hint: z.enum(['clock_drift']).optional().describe('mfa_code_invalid: the code matched 2-10 time steps away from server time'),
    offsetSeconds: z
      .number()
      .int()
      .optional()
      .describe("mfa_code_invalid with hint clock_drift: the device clock's estimated offset from server time, in seconds: positive when the device clock is ahead (its code is from the future), negative when it is behind. A code from the future is spent: when its time comes it is answered mfa_code_reused; the user sets the device clock right and types the next code"),
    next: z.enum(['mfa', 'mfa_enrollment']).optional().describe('challenge_step_mismatch: the step this challenge is for'),
    currentVersion: z.string().optional().describe('terms_version_mismatch: the terms version to accept'),
    minLength: z.number().int().optional().describe('password_too_short: the minimum length'),
    maxLength: z.number().int().optional().describe('password_too_long: the maximum length'),
    contextWord: z
      .object({
        word: z.string().describe('As compared: NFKC, lower-case, letters and digits only ("anna" of anna.mueller@…)'),
        source: z.enum(['email', 'organization', 'shop']).describe("Part of the user's e-mail address, the organisation name or the shop name"),
      })
      .optional()
      .describe('password_contains_context: the word the password must not contain, so a translated message can name it'),
    error: z.enum(['invalid_client']).optional().describe('invalid_client: the OAuth error code as well (RFC 6749 §5.2), for generic introspection clients'),
    contact: ContactSchema.optional().describe('link_expired, link_used of an invitation not yet activated: whom to ask for a new one'),
  })
  .meta({ id: 'Problem' });

export type Problem = z.infer<typeof ProblemSchema>;

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** The RFC 9457 document of an error: what every error answer carries. */
export function problemDocument(error: AppError, requestId: string) {
  return {
    type: `urn:webshop-auth:problem:${error.code}`,
    title: error.title,
    status: error.status,
    code: error.code,
    detail: error.message,
    requestId,
    ...error.extras,
  };
}

const descriptions: Record<number, string> = {
  400: 'Invalid request (code: validation_failed, malformed_json, invalid_cursor for a paginated list, malformed_request: not valid HTTP/1.1, or one the operation names)',
  401: 'Not authenticated: the credentials, challenge or token are missing or not valid (the codes are in the description), or token_in_query: a token was sent in the URL',
  403: 'Not allowed (the codes are in the description)',
  408: 'The request did not arrive whole within 10 s, its headers within 5 s (code: request_timeout); the connection is closed',
  404: 'Not found, or not visible to the caller (code: not_found, or the operation\'s user_not_found / organization_not_found)',
  409: 'Conflict with the current state (the codes are in the description)',
  410: 'The link or challenge expired or was already used',
  413: 'Request body larger than 16 KiB (code: payload_too_large)',
  415: 'Content-Type is not one the operation accepts, application/json unless it lists others (code: unsupported_media_type)',
  422: 'The request is well-formed but breaks a rule',
  423: 'The account or factor is temporarily locked (see Retry-After)',
  431: 'Request line and headers larger than 16 KiB (code: headers_too_large); the connection is closed',
  429: 'Rate limit exceeded (code: rate_limited; see Retry-After)',
  500: 'Unexpected error, no internals disclosed (code: internal_error)',
  503: 'A dependency is unavailable, the service is overloaded or shutting down (code: service_unavailable; see Retry-After)',
};

type HeaderSchema = { type: string; description: string; minimum?: number; 'x-required'?: true };

const retryAfter = (always: boolean): Record<string, HeaderSchema> => ({
  'Retry-After': { type: 'integer', minimum: 0, ...(always ? { 'x-required': true as const } : {}), description: 'Seconds to wait before trying again' },
});

/** The response headers that come with an error status, as the OpenAPI document declares them (`x-required`: openapi.ts). */
export const problemHeaders: Record<number, Record<string, HeaderSchema>> = {
  423: retryAfter(true),
  429: retryAfter(true),
  503: retryAfter(true),
};

/** OpenAPI response entries for error statuses, all answered as application/problem+json. */
export function problemResponses(...statuses: number[]) {
  return Object.fromEntries(
    statuses.map((status) => [
      status,
      {
        description: descriptions[status] ?? 'Error',
        ...(problemHeaders[status] ? { headers: problemHeaders[status] } : {}),
        content: { [PROBLEM_CONTENT_TYPE]: { schema: ProblemSchema } },
      },
    ]),
  );
}

/** A 409 whose code may come with Retry-After (mfa_enrollment_in_progress), for operations that answer one. */
export function conflictWithRetryAfter() {
  return { 409: { ...problemResponses(409)[409]!, headers: retryAfter(false) } };
}

/** "Errors: 404 user_not_found; 409 already_blocked, last_administrator." for an operation's description. */
export function describeErrors(codes: readonly string[]): string {
  const byStatus = new Map<number, Set<string>>();
  for (const code of codes) {
    const status = errorCatalogue().get(code)?.status;
    if (status === undefined) throw new Error(`describeErrors: unknown error code ${code}`);
    byStatus.set(status, (byStatus.get(status) ?? new Set()).add(code));
  }
  const parts = [...byStatus.entries()].sort(([a], [b]) => a - b).map(([status, set]) => `${status} ${[...set].sort().join(', ')}`);
  return parts.length > 0 ? `Errors: ${parts.join('; ')}.` : '';
}
