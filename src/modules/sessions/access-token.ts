import { randomUUID } from 'node:crypto';
import { jwtVerify, SignJWT, type JWTPayload } from 'jose';
import type { AppContext } from '../../context.js';
import type { Role } from '../../generated/prisma/enums.js';

/**
 * Access tokens (security.md item 17, RFC 9068 profile): JWT signed with the configured algorithm,
 * `kid` and `typ: at+jwt` in the header; claims iss, aud (every configured audience), sub, sid, jti,
 * iat, exp, org, roles, amr, terms and `token_use: "access"`. Verification accepts exactly the
 * configured algorithm, our issuer, one of our audiences (or our own, see selfAudience), `typ: at+jwt`
 * AND `token_use: access`, so no other token (refresh token, login challenge, e-mail link, a JWT of
 * another kind) passes.
 */

export const ACCESS_TOKEN_TYP = 'at+jwt';
export const ACCESS_TOKEN_USE = 'access';
/** Leeway for clock skew between this service and its verifiers. */
export const CLOCK_TOLERANCE_SECONDS = 5;
const MAX_TOKEN_LENGTH = 4096;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ROLES: readonly string[] = ['USER', 'CUSTOMER_ADMIN', 'SUPPORT'];

export type AccessTokenSubject = {
  userId: string;
  sessionId: string;
  organizationId: string | null;
  roles: Role[];
  amr: string[];
  termsVersion: string | null;
};

export type VerifiedAccessToken = {
  sub: string;
  sid: string;
  jti: string;
  iat: number;
  exp: number;
  iss: string;
  aud: string[];
  org: string | null;
  roles: Role[];
  amr: string[];
  terms: string | null;
};

type SignCtx = Pick<AppContext, 'config' | 'clock' | 'signer'>;

/**
 * The audience of tokens this service alone accepts: its own issuer URL. A session whose user has no
 * active second factor (after self-service MFA removal, until a new factor is confirmed) only gets
 * such tokens on refresh, so other apps verifying offline with JWKS (CSO 3.0: aud "cso") refuse them,
 * while this service lets them reach the MFA enrolment routes (the authenticate hook does the rest).
 */
export const selfAudience = (ctx: Pick<AppContext, 'config'>): string => ctx.config.jwt.issuer;

/** Signs an access token with the in-memory signing key (no database access). */
export async function signAccessToken(
  ctx: SignCtx,
  subject: AccessTokenSubject,
  options: { selfOnly?: boolean } = {},
): Promise<{ token: string; expiresIn: number; jti: string; exp: number }> {
  const key = ctx.signer.signingKey();
  const iat = Math.floor(ctx.clock.now().getTime() / 1000);
  const expiresIn = ctx.config.jwt.accessTtlSeconds;
  const exp = iat + expiresIn;
  const jti = randomUUID();
  const token = await new SignJWT({
    org: subject.organizationId,
    roles: subject.roles,
    amr: subject.amr,
    terms: subject.termsVersion,
    sid: subject.sessionId,
    token_use: ACCESS_TOKEN_USE,
  })
    .setProtectedHeader({ alg: key.algorithm, kid: key.kid, typ: ACCESS_TOKEN_TYP })
    .setIssuer(ctx.config.jwt.issuer)
    .setAudience(options.selfOnly ? [selfAudience(ctx)] : [...ctx.config.jwt.audiences])
    .setSubject(subject.userId)
    .setJti(jti)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .sign(key.privateKey);
  return { token, expiresIn, jti, exp };
}

const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');

/** Verifies signature, header and claims; null for anything that is not a valid access token of ours. */
export async function verifyAccessToken(ctx: SignCtx, token: string): Promise<VerifiedAccessToken | null> {
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) return null;
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(
      token,
      async (header) => {
        const key = typeof header.kid === 'string' ? await ctx.signer.resolveVerificationKey(header.kid) : undefined;
        if (!key) throw new Error('unknown kid');
        return key;
      },
      {
        algorithms: [ctx.config.jwt.algorithm],
        issuer: ctx.config.jwt.issuer,
        audience: [...ctx.config.jwt.audiences, selfAudience(ctx)],
        typ: ACCESS_TOKEN_TYP,
        currentDate: ctx.clock.now(),
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        requiredClaims: ['sub', 'sid', 'jti', 'iat', 'exp', 'aud', 'iss'],
      },
    ));
  } catch {
    return null;
  }
  const { sub, sid, jti, iat, exp, iss, aud, org, roles, amr, terms } = payload as JWTPayload & Record<string, unknown>;
  if (payload.token_use !== ACCESS_TOKEN_USE) return null;
  if (typeof sub !== 'string' || !UUID.test(sub) || typeof sid !== 'string' || !UUID.test(sid)) return null;
  if (typeof jti !== 'string' || typeof iat !== 'number' || typeof exp !== 'number' || typeof iss !== 'string') return null;
  if (!(org === null || (typeof org === 'string' && UUID.test(org)))) return null;
  if (!isStringArray(roles) || !roles.every((r) => ROLES.includes(r)) || !isStringArray(amr)) return null;
  if (!(terms === null || typeof terms === 'string')) return null;
  return {
    sub,
    sid,
    jti,
    iat,
    exp,
    iss,
    aud: typeof aud === 'string' ? [aud] : isStringArray(aud) ? aud : [],
    org,
    roles: roles as Role[],
    amr,
    terms,
  };
}
