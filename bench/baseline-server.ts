import Fastify from 'fastify';
import type { AppContext } from '../src/context.js';
import { openDatabase } from '../src/db/client.js';
import { getMe } from '../src/modules/me/me.service.js';
import { findLiveSession } from '../src/modules/sessions/session-lookup.js';

/**
 * The baseline for /me and introspection: a bare Fastify that receives the very same HTTP requests
 * as the service and runs the very same database work through the very same functions, without
 * anything else: no hooks, no validation, no logging, no client authentication and no token
 * verification (the token's payload is only decoded, to find its session).
 *  - GET /v1/me, `Authorization: Bearer <access token>` → findLiveSession (what authentication
 *    queries) + getMe's query;
 *  - POST /v1/tokens/introspect, HTTP Basic (not checked) + JSON `{ token }` → findLiveSession
 *    (what introspection queries), answering the fields the service answers.
 * The service's numbers next to these show what the stack around the queries costs.
 */
const url = process.env.DATABASE_URL;
if (!url) throw new Error('DATABASE_URL is required');
const database = openDatabase(url, { max: Number(process.env.DATABASE_POOL_MAX ?? 10) });
// What getMe reads of the context: the pool (its one statement) and the terms version.
const ctx = { db: database.db, pool: database.pool, config: { termsVersion: process.env.TERMS_VERSION ?? '2026-01' } } as unknown as AppContext;

type Claims = { sub: string; sid: string; iss: string; aud: string[]; exp: number; iat: number; jti: string };

/** The payload of a JWT, decoded WITHOUT any verification; null when it is not even that. */
function unverifiedClaims(token: unknown): Claims | null {
  if (typeof token !== 'string') return null;
  try {
    const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as Partial<Claims>;
    return typeof claims.sid === 'string' && typeof claims.sub === 'string' ? (claims as Claims) : null;
  } catch {
    return null;
  }
}

const app = Fastify({ logger: false });

app.get('/v1/me', async (request, reply) => {
  const claims = unverifiedClaims(request.headers.authorization?.slice('Bearer '.length));
  const session = claims && (await findLiveSession(database.pool, claims.sid, claims.sub, new Date()));
  if (!session) return reply.code(401).send({ active: false });
  return getMe(ctx, {
    userId: session.userId,
    sessionId: session.sessionId,
    organizationId: session.organizationId,
    roles: session.roles,
    amr: session.amr,
    mfaEnrolled: session.mfaEnrolled,
  });
});

app.post('/v1/tokens/introspect', async (request) => {
  const claims = unverifiedClaims((request.body as { token?: unknown } | undefined)?.token);
  const session = claims && (await findLiveSession(database.pool, claims.sid, claims.sub, new Date()));
  if (!claims || !session || !session.mfaEnrolled) return { active: false };
  const { iss, sub, aud, exp, iat, jti, sid } = claims;
  return { active: true, token_type: 'Bearer', iss, sub, aud, exp, iat, jti, sid, org: session.organizationId, roles: session.roles, amr: session.amr };
});

app.get('/healthz', async () => ({ status: 'ok' }));

const shutdown = async () => {
  await app.close();
  await database.close();
  process.exit(0);
};
process.once('SIGTERM', shutdown);
process.once('SIGINT', shutdown);

await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 3100) });
