import { z } from 'zod';

/** RFC 9457 problem details. Extra members (hint, retryAfter, errors, ...) are allowed per code. */
export const ProblemSchema = z
  .looseObject({
    type: z.string().describe('URI identifying the problem type'),
    title: z.string(),
    status: z.number().int(),
    code: z.string().describe('Stable machine-readable error code (snake_case)'),
    detail: z.string().optional(),
    requestId: z.string().optional(),
    errors: z
      .array(z.object({ path: z.string(), message: z.string() }))
      .optional()
      .describe('For validation_failed: the offending fields'),
  })
  .meta({ id: 'Problem' });

export type Problem = z.infer<typeof ProblemSchema>;

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

const descriptions: Record<number, string> = {
  400: 'Invalid request (code: validation_failed, malformed_json, or a route-specific code)',
  401: 'Not authenticated (code: unauthenticated, token_invalid, ...)',
  403: 'Not allowed (code: forbidden, or a required action is pending)',
  404: 'Not found, or not visible to the caller',
  409: 'Conflict with the current state',
  410: 'The link or challenge expired or was already used',
  413: 'Request body larger than 16 KiB',
  415: 'Content-Type is not one the operation accepts (application/json unless it lists others)',
  422: 'The request is well-formed but breaks a rule',
  423: 'The account or factor is temporarily locked (see Retry-After)',
  429: 'Rate limit exceeded (see Retry-After)',
  500: 'Unexpected error (no internals are disclosed)',
  503: 'A dependency is unavailable or the service is overloaded (see Retry-After)',
};

/** OpenAPI response entries for error statuses, all answered as application/problem+json. */
export function problemResponses(...statuses: number[]) {
  return Object.fromEntries(
    statuses.map((status) => [
      status,
      {
        description: descriptions[status] ?? 'Error',
        content: { [PROBLEM_CONTENT_TYPE]: { schema: ProblemSchema } },
      },
    ]),
  );
}
