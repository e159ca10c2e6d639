import { z } from 'zod';
import { RequiredActionsSchema } from '../me/required-actions.js';

export const RoleSchema = z.enum(['USER', 'CUSTOMER_ADMIN', 'SUPPORT']).meta({ id: 'Role' });

export const UserSummarySchema = z
  .object({
    id: z.uuid(),
    email: z.string(),
    name: z.string(),
    organizationId: z.uuid().nullable(),
    roles: z.array(RoleSchema),
  })
  .meta({ id: 'UserSummary' });

/** What every endpoint that signs someone in (login, MFA enrolment, refresh) answers. */
export const TokenResponseSchema = z
  .object({
    accessToken: z.string().describe('JWT (EdDSA or ES256) for Authorization: Bearer; verify with /.well-known/jwks.json'),
    tokenType: z.literal('Bearer'),
    expiresIn: z
      .number()
      .int()
      .describe("The access token's lifetime in seconds, its exp - iat (RFC 6749 expires_in; at most 900, less near the session's end)"),
    refreshToken: z.string().describe('Opaque, single use: POST it to /v1/auth/refresh for a new pair'),
    refreshExpiresIn: z.number().int().describe('Seconds until the refresh token expires if unused (idle timeout, capped by the absolute session lifetime)'),
    requiredActions: RequiredActionsSchema,
    user: UserSummarySchema,
  })
  .meta({ id: 'TokenResponse' });

export type TokenResponse = z.infer<typeof TokenResponseSchema>;

export const RefreshRequestSchema = z.strictObject({
  refreshToken: z.string().min(1).max(512),
});

export const SessionSchema = z
  .object({
    id: z.uuid(),
    createdAt: z.iso.datetime(),
    lastUsedAt: z.iso.datetime().describe('Last sign-in or token refresh'),
    expiresAt: z.iso.datetime().describe('Absolute end of the session'),
    idleExpiresAt: z.iso.datetime().describe('The session ends at this time unless refreshed before'),
    ip: z.string().nullable().describe('IP address of the last sign-in or refresh'),
    userAgent: z.string().nullable(),
    amr: z.array(z.string()).describe('How the user signed in, e.g. ["pwd","otp"]'),
    current: z.boolean().describe('The session of the access token used for this request'),
  })
  .meta({ id: 'Session' });

export const SessionListSchema = z.object({ sessions: z.array(SessionSchema) }).meta({ id: 'SessionList' });

export const OtherSessionsEndedSchema = z
  .strictObject({ ended: z.number().int().min(0).describe('How many sessions ended') })
  .meta({ id: 'OtherSessionsEnded' });

export const SessionIdParamsSchema = z.strictObject({ id: z.uuid() });

export const IntrospectionRequestSchema = z.strictObject({
  token: z.string().min(1).max(8192),
  token_type_hint: z.string().max(64).optional().describe('Ignored: only access tokens can be active'),
  client_id: z
    .string()
    .max(256)
    .optional()
    .describe('Sent by some OAuth libraries beside the Basic credentials: must name the authenticated client (else 401 invalid_client)'),
});

export const IntrospectionResponseSchema = z
  .union([
    z.strictObject({ active: z.literal(false) }),
    z.object({
      active: z.literal(true),
      token_type: z.literal('Bearer'),
      iss: z.string(),
      sub: z.uuid(),
      aud: z.array(z.string()),
      exp: z.number().int(),
      iat: z.number().int(),
      jti: z.string(),
      sid: z.uuid(),
      org: z.uuid().nullable(),
      roles: z.array(RoleSchema).describe('Current roles of the user (may be newer than the token)'),
      amr: z.array(z.string()),
      terms: z.string().nullable().describe('Terms version the user accepted, null for none (current, like roles: may be newer than the token)'),
      terms_current: z
        .boolean()
        .describe("Whether that is the service's current TERMS_VERSION: false → the user has yet to accept the current terms (requiredActions accept_terms)"),
    }),
  ])
  .meta({ id: 'IntrospectionResponse' });

export type IntrospectionResponse = z.infer<typeof IntrospectionResponseSchema>;

export const JwksSchema = z
  .object({
    keys: z.array(
      z.looseObject({
        kty: z.string(),
        kid: z.string(),
        alg: z.string(),
        use: z.literal('sig'),
        crv: z.string().optional(),
        x: z.string().optional(),
        y: z.string().optional(),
      }),
    ),
  })
  .meta({ id: 'Jwks' });
