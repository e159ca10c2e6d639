/**
 * One error model. Every module defines its codes with defineErrors(); the error handler turns an
 * AppError into RFC 9457 problem+json with a stable `code`. Codes are snake_case and never change.
 */

export type ErrorDefinition = { status: number; title: string };

const catalogue = new Map<string, ErrorDefinition>();

export class AppError extends Error {
  override name = 'AppError';
  readonly code: string;
  readonly status: number;
  readonly title: string;
  /** Extra problem members the client may rely on (e.g. hint, retryAfter, errors). */
  readonly extras: Readonly<Record<string, unknown>>;
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    code: string,
    def: ErrorDefinition,
    detail?: string,
    extras: Record<string, unknown> = {},
    headers: Record<string, string> = {},
  ) {
    super(detail ?? def.title);
    this.code = code;
    this.status = def.status;
    this.title = def.title;
    this.extras = extras;
    this.headers = headers;
  }
}

type ErrorFactory = (detail?: string, extras?: Record<string, unknown>, headers?: Record<string, string>) => AppError;

/** Registers a module's error codes and returns one factory per code. */
export function defineErrors<const T extends Record<string, ErrorDefinition>>(defs: T): { [K in keyof T]: ErrorFactory } {
  const factories = {} as { [K in keyof T]: ErrorFactory };
  for (const [code, def] of Object.entries(defs) as [keyof T & string, ErrorDefinition][]) {
    const known = catalogue.get(code);
    if (known && (known.status !== def.status || known.title !== def.title)) {
      throw new Error(`error code ${code} defined twice with different meaning`);
    }
    catalogue.set(code, def);
    factories[code] = (detail, extras, headers) => new AppError(code, def, detail, extras, headers);
  }
  return factories;
}

/** Every registered code, for the OpenAPI document and the docs. */
export function errorCatalogue(): ReadonlyMap<string, ErrorDefinition> {
  return catalogue;
}

export const commonErrors = defineErrors({
  validation_failed: { status: 400, title: 'The request is not valid' },
  malformed_json: { status: 400, title: 'The request body is not valid JSON' },
  unauthenticated: { status: 401, title: 'Authentication required' },
  token_invalid: { status: 401, title: 'The access token is not valid' },
  forbidden: { status: 403, title: 'Not allowed' },
  not_found: { status: 404, title: 'Not found' },
  payload_too_large: { status: 413, title: 'The request body is too large' },
  unsupported_media_type: { status: 415, title: 'Unsupported content type' },
  rate_limited: { status: 429, title: 'Too many requests' },
  internal_error: { status: 500, title: 'Internal server error' },
  service_unavailable: { status: 503, title: 'Service temporarily unavailable' },
});

/**
 * 429 rate_limited with `Retry-After` (and `retryAfter` in the body): `what` says which budget ran
 * out; the detail adds when to try again.
 */
export function rateLimitedFor(what: string, retryAfterSeconds: number): AppError {
  return commonErrors.rate_limited(`${what} Try again in ${retryAfterSeconds} s.`, { retryAfter: retryAfterSeconds }, { 'retry-after': String(retryAfterSeconds) });
}

/** rateLimitedFor with the wait as a rate limiter reports it (ms), in whole seconds rounded up (at least 1). */
export function rateLimitedForMs(what: string, ttlMs: number): AppError {
  return rateLimitedFor(what, Math.max(1, Math.ceil(ttlMs / 1000)));
}
