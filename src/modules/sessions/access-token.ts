import { randomUUID, sign, verify, type KeyObject } from 'node:crypto';
import type { AppContext } from '../../context.js';
import type { Role } from '../../generated/prisma/enums.js';
import type { ActiveSigningKey } from './signing-keys.js';
import { sessionErrors } from './sessions.errors.js';

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

/**
 * Signs an access token with the in-memory signing key (no database access), or with `key` when
 * the caller took it before writing what the token stands for. It expires after
 * ACCESS_TOKEN_TTL_SECONDS, or when its session ends (`sessionEndsAt`: idle or absolute) if that is
 * sooner: apps that verify offline (JWKS) have only `exp` to go by, and must not accept a token of
 * a session that has ended.
 */
export async function signAccessToken(
  ctx: SignCtx,
  subject: AccessTokenSubject,
  options: { selfOnly?: boolean; key?: ActiveSigningKey; sessionEndsAt: Date },
): Promise<{ token: string; expiresIn: number; jti: string; exp: number }> {
  const key = options.key ?? ctx.signer.signingKey();
  const iat = Math.floor(ctx.clock.now().getTime() / 1000);
  // `exp` is whole seconds, never past the session's end: a session ending within this second has
  // no token left to give (a refresh in its last moments answers as after its end).
  const sessionEnd = Math.floor(options.sessionEndsAt.getTime() / 1000);
  if (sessionEnd <= iat) throw sessionErrors.refresh_token_expired('Sign in again.');
  const exp = Math.min(iat + ctx.config.jwt.accessTtlSeconds, sessionEnd);
  // The token's lifetime (RFC 6749 expires_in), whole seconds as its claims are.
  const expiresIn = exp - iat;
  const jti = randomUUID();
  const header = { alg: key.algorithm, kid: key.kid, typ: ACCESS_TOKEN_TYP };
  const payload = {
    org: subject.organizationId,
    roles: subject.roles,
    amr: subject.amr,
    terms: subject.termsVersion,
    sid: subject.sessionId,
    token_use: ACCESS_TOKEN_USE,
    iss: ctx.config.jwt.issuer,
    aud: options.selfOnly ? [selfAudience(ctx)] : [...ctx.config.jwt.audiences],
    sub: subject.userId,
    // RFC 9068 §2.2 requires it (strict resource-server libraries refuse a token without it): the
    // client that signs users in through this service's login API (JWT_CLIENT_ID).
    client_id: ctx.config.jwt.clientId,
    jti,
    iat,
    exp,
  };
  const signingInput = `${b64json(header)}.${b64json(payload)}`;
  const signature = sign(digestOf(key.algorithm), Buffer.from(signingInput), keyParams(key.algorithm, key.privateKey));
  return { token: `${signingInput}.${signature.toString('base64url')}`, expiresIn, jti, exp };
}

/*
 * JWS compact serialisation on node:crypto (RFC 7515/7519) with the KeyObjects imported once in
 * signing-keys.ts, instead of jose's WebCrypto path, whose promise and algorithm plumbing cost the
 * event loop more than a third of an introspection (bench/README.md). Signing (≈ 35 µs for Ed25519,
 * only at login and refresh) is synchronous. Verification (≈ 115 µs, on every authenticated request
 * and introspection) uses the callback form of crypto.verify: it runs on the libuv pool, so the
 * event loop only parses and checks claims while the other cores verify (measured faster than both
 * the synchronous call and jose on two cores). The pool has more threads than argon2 may occupy
 * (UV_THREADPOOL_SIZE > HASH_MAX_CONCURRENT), so a verification never waits for a hash to finish.
 * The checks are those jose's jwtVerify made with the options used before; the tests verify tokens
 * with jose (as CSO 3.0 does) and forge the attacks with jose.
 *
 * A client presents the same access token for many requests (every call of a session, every
 * introspection of it), so a token that passed every check is remembered in the signer's
 * verified-token cache (per app instance, bounded LRU: verified-token-cache.ts) and the next
 * presentation skips the signature. A hit is as good as a fresh verification because:
 *  - the cache key is the whole token string: any other string (one character changed in the
 *    header, payload or signature) misses and is verified in full;
 *  - only tokens that passed every check enter; a refused token never does, so garbage cannot
 *    fill the cache or evict real entries;
 *  - what can change for the same string is checked again on every hit: exp and nbf against
 *    ctx.clock, and that the signer still answers the token's kid with the very key object that
 *    verified it. A key that was removed, is past its retention or was reloaded (key objects are
 *    created anew by every reload) turns the hit into a full verification, so a token whose key
 *    is gone stops verifying at once;
 *  - the claims handed out from the cache are frozen, so no caller can change them for the next.
 */
const B64URL = /^[A-Za-z0-9_-]+$/;
const b64json = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
const digestOf = (algorithm: string) => (algorithm === 'ES256' ? 'sha256' : null);
const keyParams = (algorithm: string, key: KeyObject) => (algorithm === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' as const } : key);
const KEY_TYPE: Record<string, string> = { EdDSA: 'ed25519', ES256: 'ec' };

function parseSegment(segment: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** RFC 9068 §4: `at+jwt`, also as `application/at+jwt`, case-insensitive (as jose compares it). */
const normalizeTyp = (typ: string) => typ.toLowerCase().replace(/^application\//, '');

const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');
const REQUIRED_CLAIMS = ['sub', 'sid', 'jti', 'iat', 'exp', 'aud', 'iss'] as const;

/** Cached claims are shared by every later presentation of the token: nobody may change them. */
const frozen = <T>(list: T[]) => Object.freeze(list) as T[];
const withinLifetime = (exp: number, nbf: number | undefined, now: number) =>
  exp > now - CLOCK_TOLERANCE_SECONDS && (nbf === undefined || nbf <= now + CLOCK_TOLERANCE_SECONDS);

/** Verifies signature, header and claims; null for anything that is not a valid access token of ours. */
export async function verifyAccessToken(ctx: SignCtx, token: string): Promise<VerifiedAccessToken | null> {
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) return null;
  const cache = ctx.signer.verifiedTokens;
  const cached = cache.get(token);
  if (cached) {
    const now = Math.floor(ctx.clock.now().getTime() / 1000);
    if (ctx.signer.verificationKey(cached.kid) === cached.key && withinLifetime(cached.claims.exp, cached.nbf, now)) return cached.claims;
    cache.delete(token); // the full verification below decides (and caches it again if it passes)
  }
  const parts = token.split('.');
  if (parts.length !== 3 || !parts.every((p) => B64URL.test(p))) return null;
  const [encodedHeader, encodedPayload, encodedSignature] = parts as [string, string, string];

  const header = parseSegment(encodedHeader);
  const algorithm = ctx.config.jwt.algorithm;
  if (!header || header.alg !== algorithm || typeof header.kid !== 'string') return null;
  // No extension is understood here, so any critical one refuses the token (RFC 7515 §4.1.11).
  if (header.crit !== undefined) return null;
  if (typeof header.typ !== 'string' || normalizeTyp(header.typ) !== ACCESS_TOKEN_TYP) return null;
  // Known kids resolve synchronously; an unknown one may trigger a (throttled) reload.
  const key = ctx.signer.verificationKey(header.kid) ?? (await ctx.signer.resolveVerificationKey(header.kid));
  if (!key || key.asymmetricKeyType !== KEY_TYPE[algorithm]) return null;
  const valid = await new Promise<boolean>((resolve) => {
    try {
      verify(
        digestOf(algorithm),
        Buffer.from(`${encodedHeader}.${encodedPayload}`),
        keyParams(algorithm, key),
        Buffer.from(encodedSignature, 'base64url'),
        (err, ok) => resolve(!err && ok),
      );
    } catch {
      resolve(false);
    }
  });
  if (!valid) return null;

  const payload = parseSegment(encodedPayload);
  if (!payload || REQUIRED_CLAIMS.some((claim) => payload[claim] === undefined)) return null;
  const { sub, sid, jti, iat, exp, nbf, iss, aud, org, roles, amr, terms } = payload;
  const now = Math.floor(ctx.clock.now().getTime() / 1000);
  if (iss !== ctx.config.jwt.issuer) return null;
  const audiences = typeof aud === 'string' ? [aud] : isStringArray(aud) ? aud : null;
  const accepted = [...ctx.config.jwt.audiences, selfAudience(ctx)];
  if (!audiences || !audiences.some((a) => accepted.includes(a))) return null;
  if (typeof iat !== 'number' || !Number.isFinite(iat)) return null;
  if (typeof exp !== 'number' || !Number.isFinite(exp)) return null;
  if (nbf !== undefined && typeof nbf !== 'number') return null;
  if (!withinLifetime(exp, nbf, now)) return null;
  if (payload.token_use !== ACCESS_TOKEN_USE) return null;
  if (typeof sub !== 'string' || !UUID.test(sub) || typeof sid !== 'string' || !UUID.test(sid)) return null;
  if (typeof jti !== 'string' || typeof iss !== 'string') return null;
  if (!(org === null || (typeof org === 'string' && UUID.test(org)))) return null;
  if (!isStringArray(roles) || !roles.every((r) => ROLES.includes(r)) || !isStringArray(amr)) return null;
  if (!(terms === null || typeof terms === 'string')) return null;
  const claims: VerifiedAccessToken = Object.freeze({
    sub, sid, jti, iat, exp, iss, aud: frozen(audiences), org, roles: frozen(roles as Role[]), amr: frozen(amr), terms,
  });
  cache.set(token, { kid: header.kid, key, claims, nbf });
  return claims;
}
