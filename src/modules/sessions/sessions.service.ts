import type { AppContext } from '../../context.js';
import type { Tx } from '../../db/client.js';
import { newId, prismaSql } from '../../db/sql.js';
import { SqlParams } from '../../db/sql-params.js';
import { commonErrors } from '../../errors.js';
import { addSeconds, secondsLeft } from '../../lib/clock.js';
import { randomToken, sha256Hex } from '../../lib/tokens.js';
import type { Session, User } from '../../generated/prisma/client.js';
import { announceAudit, auditInsertSql, recordAudit, recordManyAudits, type RequestMeta } from '../audit/audit.service.js';
import { computeRequiredActions } from '../me/required-actions.js';
import { signAccessToken, verifyAccessToken } from './access-token.js';
import type { ActiveSigningKey } from './signing-keys.js';
import { revokeSessionsOf } from './revoke.js';
import { findLiveSession } from './session-lookup.js';
import { sessionErrors } from './sessions.errors.js';
import type { IntrospectionResponse, TokenResponse } from './sessions.schemas.js';

/**
 * Sessions (one refresh-token family each), their tokens and their end (security.md items 17-21).
 *
 * Refresh tokens: 256-bit random, stored as SHA-256, rotated on every use. Presenting a rotated
 * token again revokes the whole session (reuse detection, audited as session.family_revoked)...
 * except within REFRESH_REUSE_GRACE_SECONDS (default 10 s) of its rotation: that is a concurrent
 * refresh (two tabs, a retried request) and answers 409 `refresh_conflict` WITHOUT revoking and
 * WITHOUT issuing a second pair. The client that won holds the new pair; the loser should use it
 * (shared storage) or sign in again. A thief who races the legitimate client inside the window gets
 * nothing either, and any later reuse (after the window) still revokes the family.
 * Idle timeout: each refresh moves idleExpiresAt to now + REFRESH_IDLE_TTL_SECONDS, never past the
 * absolute expiresAt (createdAt + REFRESH_ABSOLUTE_TTL_SECONDS). Every rotated token is kept (reuse
 * detection); the session ends after REFRESH_MAX_PER_SESSION refreshes, which bounds them.
 */

export const REFRESH_TOKEN_BYTES = 32;

type Ctx = Pick<AppContext, 'config' | 'clock' | 'signer'>;

export type UserForTokens = Pick<User, 'id' | 'email' | 'name' | 'organizationId' | 'roles' | 'termsVersion' | 'preferencesUpdatedAt'>;

/**
 * The token response for a session (signs the access token with the in-memory key, or with `key`
 * taken before the session was written; no query).
 */
export async function sessionTokens(
  ctx: Ctx,
  user: UserForTokens,
  session: Pick<Session, 'id' | 'amr' | 'idleExpiresAt' | 'expiresAt'>,
  refreshToken: string,
  mfaEnrolled: boolean,
  key?: ActiveSigningKey,
): Promise<TokenResponse> {
  const now = ctx.clock.now();
  const sessionEnds = session.idleExpiresAt < session.expiresAt ? session.idleExpiresAt : session.expiresAt;
  // Without an active factor (self-service removal, not yet re-enrolled) the session may only enrol
  // again: its tokens are for this service alone, never for apps that verify offline (rule 1).
  const access = await signAccessToken(
    ctx,
    {
      userId: user.id,
      sessionId: session.id,
      organizationId: user.organizationId,
      roles: user.roles,
      amr: session.amr,
      termsVersion: user.termsVersion,
    },
    { selfOnly: !mfaEnrolled, key, sessionEndsAt: sessionEnds },
  );
  return {
    accessToken: access.token,
    tokenType: 'Bearer',
    expiresIn: access.expiresIn,
    refreshToken,
    refreshExpiresIn: secondsLeft(sessionEnds, now),
    requiredActions: computeRequiredActions(user, { mfaEnrolled, termsVersion: ctx.config.termsVersion }),
    user: { id: user.id, email: user.email, name: user.name, organizationId: user.organizationId, roles: user.roles },
  };
}

async function newRefreshToken(tx: Tx, sessionId: string, now: Date): Promise<string> {
  const token = randomToken(REFRESH_TOKEN_BYTES);
  await tx.refreshToken.create({ data: { sessionId, tokenHash: sha256Hex(token), createdAt: now } });
  return token;
}

/** A session about to be written by sessionStartSql, and its first refresh token (plaintext, answered once). */
export type StartingSession = {
  session: Pick<Session, 'id' | 'amr' | 'idleExpiresAt' | 'expiresAt'>;
  refreshToken: string;
  /** The CTEs that write it (see sessionStartSql); the `session` CTE returns its id. */
  ctes: string;
};

/**
 * The rows of a new session as CTEs of one raw SQL statement (src/db/sql.ts): the Session, its first
 * RefreshToken and the `session.created` audit row. With `gate` (the name of an earlier CTE) all of
 * it is written only if that CTE returned a row. The user row is not touched here (one statement
 * may update a row only once): callers set users.last_login_at themselves. Call
 * announceAudit('session.created') after the statement.
 */
export function sessionStartSql(
  p: SqlParams,
  ctx: Pick<AppContext, 'config' | 'clock'>,
  input: { userId: string; organizationId: string | null; amr: string[]; meta: RequestMeta },
  gate?: string,
): StartingSession {
  const now = ctx.clock.now();
  const { idleTtlSeconds, absoluteTtlSeconds } = ctx.config.refresh;
  const expiresAt = addSeconds(now, absoluteTtlSeconds);
  const idle = addSeconds(now, idleTtlSeconds);
  const session = { id: newId(), amr: input.amr, idleExpiresAt: idle < expiresAt ? idle : expiresAt, expiresAt };
  const refreshToken = randomToken(REFRESH_TOKEN_BYTES);
  const at = p.add(now, 'timestamptz');
  const audit = auditInsertSql(
    p,
    ctx.clock,
    {
      type: 'session.created',
      actorUserId: input.userId,
      subjectUserId: input.userId,
      organizationId: input.organizationId,
      meta: input.meta,
      details: { sessionId: session.id, amr: input.amr },
    },
    { from: 'session' },
  );
  const ctes = `session AS (
      INSERT INTO sessions (id, user_id, amr, ip, user_agent, created_at, last_used_at, idle_expires_at, expires_at)
      SELECT ${p.add(session.id, 'uuid')}, ${p.add(input.userId, 'uuid')}, ${p.add(input.amr, 'text[]')}, ${p.add(input.meta.ip, 'text')},
        ${p.add(input.meta.userAgent, 'text')}, ${at}, ${at}, ${p.add(session.idleExpiresAt, 'timestamptz')}, ${p.add(expiresAt, 'timestamptz')}
      ${gate ? `FROM ${gate}` : ''}
      RETURNING id),
    first_refresh AS (
      INSERT INTO refresh_tokens (id, session_id, token_hash, created_at)
      SELECT ${p.add(newId(), 'uuid')}, session.id, ${p.add(sha256Hex(refreshToken), 'text')}, ${at} FROM session),
    session_audit AS (${audit})`;
  return { session, refreshToken, ctes };
}

/**
 * Signs a user in: writes the Session, its first RefreshToken and `session.created` in the caller's
 * transaction (sessionStartSql) and signs the access token with the in-memory key.
 * Call it only after every factor was verified (MFA is mandatory); `amr` e.g. ['pwd','otp'].
 * Callers that return the result over HTTP must call noStore(reply) (src/http/no-store.ts).
 */
export async function issueSession(
  ctx: AppContext,
  tx: Tx,
  input: { userId: string; amr: string[]; meta: RequestMeta },
): Promise<TokenResponse> {
  const user = await tx.user.findUnique({
    where: { id: input.userId },
    include: { totpFactors: { where: { status: 'ACTIVE' }, select: { id: true } } },
  });
  if (!user || user.status !== 'ACTIVE') throw commonErrors.forbidden('The account is not active.');
  const p = new SqlParams();
  const starting = sessionStartSql(p, ctx, { userId: user.id, organizationId: user.organizationId, amr: input.amr, meta: input.meta });
  await prismaSql(tx)(`WITH ${starting.ctes} SELECT id FROM session`, p.values);
  announceAudit('session.created');
  await tx.user.update({ where: { id: user.id }, data: { lastLoginAt: ctx.clock.now() } });
  return sessionTokens(ctx, user, starting.session, starting.refreshToken, user.totpFactors.length > 0);
}

type RefreshOutcome =
  | { kind: 'ok'; response: TokenResponse }
  | { kind: 'invalid' }
  | { kind: 'expired' }
  | { kind: 'limit' }
  | { kind: 'conflict' }
  | { kind: 'reused' };

/**
 * Ends a session's token family at `now` (the refresh's time) for `details.reason` (its
 * revoked_reason) and audits it as session.family_revoked, once: not when something else ended the
 * session meanwhile.
 */
async function endFamily(
  tx: Tx,
  ctx: Pick<AppContext, 'clock'>,
  on: { session: { id: string }; user: { id: string; organizationId: string | null }; meta: RequestMeta; now: Date },
  details: { reason: 'refresh_token_reuse' | 'refresh_limit' } & Record<string, unknown>,
): Promise<void> {
  const { count } = await tx.session.updateMany({
    where: { id: on.session.id, revokedAt: null },
    data: { revokedAt: on.now, revokedReason: details.reason },
  });
  if (count !== 1) return;
  await recordAudit(tx, ctx.clock, {
    type: 'session.family_revoked',
    actorUserId: null,
    subjectUserId: on.user.id,
    organizationId: on.user.organizationId,
    meta: on.meta,
    details: { sessionId: on.session.id, ...details },
  });
}

/** Rotates a refresh token: the old one dies, a new pair is returned (see the module comment). */
export async function refreshSession(ctx: AppContext, refreshToken: string, meta: RequestMeta): Promise<TokenResponse> {
  const outcome = await ctx.db.$transaction(async (tx): Promise<RefreshOutcome> => {
    const now = ctx.clock.now();
    const row = await tx.refreshToken.findUnique({
      where: { tokenHash: sha256Hex(refreshToken) },
      include: {
        session: {
          include: { user: { include: { totpFactors: { where: { status: 'ACTIVE' }, select: { id: true } } } } },
        },
      },
    });
    if (!row) return { kind: 'invalid' };
    const { session } = row;
    const { user } = session;
    if (session.revokedAt !== null || user.status !== 'ACTIVE') return { kind: 'invalid' };

    if (row.rotatedAt !== null) {
      if (now.getTime() - row.rotatedAt.getTime() <= ctx.config.refresh.reuseGraceSeconds * 1000) return { kind: 'conflict' };
      await endFamily(tx, ctx, { session, user, meta, now }, { reason: 'refresh_token_reuse', rotatedAt: row.rotatedAt.toISOString() });
      return { kind: 'reused' };
    }

    if (session.expiresAt <= now || session.idleExpiresAt <= now) return { kind: 'expired' };
    // A session refreshed REFRESH_MAX_PER_SESSION times ends: every rotated token stays for reuse
    // detection, and this bounds how many (one client refreshing as fast as the per-IP limit let it
    // added ~170 MB a day; DoS review, session 32). The cap outlasts the absolute lifetime at one
    // refresh per access token (config.ts), so reaching it is unusual — a script, or a thief rotating
    // a stolen token until the victim's older one can no longer count as reuse: the end of the
    // family is audited as reuse would be.
    if (session.refreshCount >= ctx.config.refresh.maxPerSession) {
      await endFamily(tx, ctx, { session, user, meta, now }, { reason: 'refresh_limit', refreshes: session.refreshCount });
      return { kind: 'limit' };
    }

    // Conditional update: of two concurrent refreshes with one token exactly one rotates it.
    const { count } = await tx.refreshToken.updateMany({ where: { id: row.id, rotatedAt: null }, data: { rotatedAt: now } });
    if (count !== 1) return { kind: 'conflict' };

    const idle = addSeconds(now, ctx.config.refresh.idleTtlSeconds);
    // Conditional: the session and user were read before any lock was held. A logout, block,
    // password reset or MFA reset that ended the session meanwhile (it revokes the session row in
    // its own transaction) must win: no new pair, not even an access token that offline verifiers
    // would accept until it expires. Throwing rolls the rotation back with it.
    const { count: alive } = await tx.session.updateMany({
      where: { id: session.id, revokedAt: null, expiresAt: { gt: now } },
      data: {
        lastUsedAt: now,
        refreshCount: { increment: 1 },
        idleExpiresAt: idle < session.expiresAt ? idle : session.expiresAt,
        ip: meta.ip,
        userAgent: meta.userAgent,
      },
    });
    if (alive !== 1) throw sessionErrors.refresh_token_invalid('Sign in again.');
    const updated = await tx.session.findUniqueOrThrow({ where: { id: session.id } });
    const next = await newRefreshToken(tx, session.id, now);
    return { kind: 'ok', response: await sessionTokens(ctx, user, updated, next, user.totpFactors.length > 0) };
  });

  switch (outcome.kind) {
    case 'ok':
      return outcome.response;
    case 'conflict':
      throw sessionErrors.refresh_conflict(
        'Another request refreshed this session with the same token a moment ago. Use the tokens it received.',
      );
    case 'reused':
      throw sessionErrors.refresh_token_reused('The session was ended for safety. Sign in again.');
    case 'expired':
      throw sessionErrors.refresh_token_expired('Sign in again.');
    case 'limit':
      throw sessionErrors.refresh_token_expired('This session reached its limit of refreshes. Sign in again.');
    case 'invalid':
      throw sessionErrors.refresh_token_invalid('Sign in again.');
  }
}

/** Ends one session of a user (logout, or "sign out that device"); false when none was alive. */
export async function endSession(
  ctx: AppContext,
  input: {
    userId: string;
    sessionId: string;
    reason: 'logout' | 'user_revoked';
    meta: RequestMeta;
    organizationId: string | null;
    /** A logout by refresh token (revokeByRefreshToken) rather than by access token. */
    via?: 'refresh_token';
  },
): Promise<boolean> {
  return ctx.db.$transaction(async (tx) => {
    const now = ctx.clock.now();
    const { count } = await tx.session.updateMany({
      // Alive as listSessions and findLiveSession see it: an idle-expired session has already ended.
      where: { id: input.sessionId, userId: input.userId, revokedAt: null, expiresAt: { gt: now }, idleExpiresAt: { gt: now } },
      data: { revokedAt: now, revokedReason: input.reason },
    });
    if (count !== 1) return false;
    await recordAudit(tx, ctx.clock, {
      type: 'session.revoked',
      actorUserId: input.userId,
      subjectUserId: input.userId,
      organizationId: input.organizationId,
      meta: input.meta,
      details: { sessionId: input.sessionId, reason: input.reason, ...(input.via ? { via: input.via } : {}) },
    });
    return true;
  });
}

/**
 * Signs the user out of every other device (DELETE /v1/me/sessions): each live session but the
 * current one ends, as DELETE /v1/me/sessions/{id} would end it, with one `session.revoked` audit
 * row each (expired ones are marked too, as revokeUserSessions does, but not counted). Returns how
 * many ended.
 */
export async function endOtherSessions(
  ctx: AppContext,
  input: { userId: string; currentSessionId: string; organizationId: string | null; meta: RequestMeta },
): Promise<number> {
  return ctx.db.$transaction(async (tx) => {
    const ended = await revokeSessionsOf(tx, ctx.clock, [input.userId], 'user_revoked', { exceptSessionId: input.currentSessionId });
    await recordManyAudits(
      tx,
      ctx.clock,
      ended.map(({ sessionId }) => ({
        type: 'session.revoked' as const,
        actorUserId: input.userId,
        subjectUserId: input.userId,
        organizationId: input.organizationId,
        meta: input.meta,
        details: { sessionId, reason: 'user_revoked', via: 'all_others' },
      })),
    );
    return ended.length;
  });
}

/**
 * Logout by refresh token (POST /v1/auth/revoke, in the manner of RFC 7009): ends the session the
 * token belongs to, for a client whose access token has expired. Any token of the session counts,
 * a rotated one too: whoever holds one could end the session through the refresh endpoint's reuse
 * detection anyway, and a logout that races a refresh in another tab still ends the session.
 * Unknown tokens and ended sessions change nothing; the caller answers the same either way.
 */
export async function revokeByRefreshToken(ctx: AppContext, refreshToken: string, meta: RequestMeta): Promise<void> {
  const token = await ctx.db.refreshToken.findUnique({
    where: { tokenHash: sha256Hex(refreshToken) },
    select: { session: { select: { id: true, userId: true, user: { select: { organizationId: true } } } } },
  });
  if (!token) return;
  const { session } = token;
  await endSession(ctx, {
    userId: session.userId,
    sessionId: session.id,
    organizationId: session.user.organizationId,
    reason: 'logout',
    meta,
    via: 'refresh_token',
  });
}

export type SessionView = {
  id: string;
  createdAt: string;
  lastUsedAt: string;
  expiresAt: string;
  idleExpiresAt: string;
  ip: string | null;
  userAgent: string | null;
  amr: string[];
  current: boolean;
};

/** The user's live sessions, newest first. */
export async function listSessions(ctx: AppContext, userId: string, currentSessionId: string): Promise<SessionView[]> {
  return liveSessions(ctx.db, ctx.clock.now(), userId, currentSessionId);
}

/** The live sessions of a user (at most 200, newest first); `current` marks the caller's own, if any. */
export async function liveSessions(
  db: Pick<Tx, 'session'>,
  now: Date,
  userId: string,
  currentSessionId: string | null,
): Promise<SessionView[]> {
  const sessions = await db.session.findMany({
    where: { userId, revokedAt: null, expiresAt: { gt: now }, idleExpiresAt: { gt: now } },
    orderBy: { createdAt: 'desc' },
    take: 200,
  });
  return sessions.map((s) => ({
    id: s.id,
    createdAt: s.createdAt.toISOString(),
    lastUsedAt: s.lastUsedAt.toISOString(),
    expiresAt: s.expiresAt.toISOString(),
    idleExpiresAt: s.idleExpiresAt.toISOString(),
    ip: s.ip,
    userAgent: s.userAgent,
    amr: s.amr,
    current: s.id === currentSessionId,
  }));
}

/**
 * RFC 7662 introspection: active only when the access token verifies AND its session is alive AND
 * the user is active with an active MFA factor; exactly `{ active: false }` otherwise. Roles are
 * the user's current ones.
 */
export async function introspect(ctx: AppContext, token: string, client: { audiences: readonly string[] }): Promise<IntrospectionResponse> {
  const claims = await verifyAccessToken(ctx, token);
  // Expired is expired here, without the leeway verifyAccessToken allows for skewed clocks: a
  // verifier with none (jose's default) must not see a token expired that introspection calls active.
  if (claims && claims.exp * 1000 <= ctx.clock.now().getTime()) return { active: false };
  // Active only for a client that may use it (RFC 7662 §4): one of its audiences (a subset of
  // JWT_AUDIENCES) in the token. So a token for this service alone (audience: its issuer; a session
  // re-enrolling its MFA) is no token for other apps, whatever became of its session since: JWKS
  // verifiers refuse it too.
  if (!claims || !claims.aud.some((aud) => client.audiences.includes(aud))) return { active: false };
  const session = await findLiveSession(ctx.pool, claims.sid, claims.sub, ctx.clock.now());
  // A session whose user removed their MFA may only enrol again: not a usable login for others.
  if (!session || !session.mfaEnrolled) return { active: false };
  return {
    active: true,
    token_type: 'Bearer',
    iss: claims.iss,
    sub: claims.sub,
    aud: claims.aud,
    exp: claims.exp,
    iat: claims.iat,
    jti: claims.jti,
    sid: claims.sid,
    org: session.organizationId,
    roles: session.roles,
    amr: session.amr,
    terms: session.termsVersion,
    // A resource server need not know TERMS_VERSION to hold back a user who has not accepted the
    // current terms (integrator review, session 30).
    terms_current: session.termsVersion === ctx.config.termsVersion,
  };
}
