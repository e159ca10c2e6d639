import Fastify from 'fastify';
import type { AppContext } from '../src/context.js';
import { openDatabase } from '../src/db/client.js';
import { getMe } from '../src/modules/me/me.service.js';
import { findLiveSession } from '../src/modules/sessions/session-lookup.js';

/**
 * The baseline for /me and introspection: a bare Fastify (no hooks, no validation, no logging,
 * no token verification) running the very same database work through the very same functions:
 *  - GET /me?sid=&uid=         → findLiveSession (what authentication queries) + getMe's query;
 *  - GET /introspect?sid=&uid= → findLiveSession (what introspection queries).
 * The service's numbers next to these show what the stack around the queries costs.
 */
const url = process.env.DATABASE_URL;
if (!url) throw new Error('DATABASE_URL is required');
const database = openDatabase(url, { max: Number(process.env.DATABASE_POOL_MAX ?? 10) });
const ctx = { db: database.db, config: { termsVersion: process.env.TERMS_VERSION ?? '2026-01' } } as unknown as AppContext;

const app = Fastify({ logger: false });

app.get('/me', async (request, reply) => {
  const { sid, uid } = request.query as { sid: string; uid: string };
  const session = await findLiveSession(database.pool, sid, uid, new Date());
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

app.get('/introspect', async (request) => {
  const { sid, uid } = request.query as { sid: string; uid: string };
  const session = await findLiveSession(database.pool, sid, uid, new Date());
  return session ? { active: true, sub: session.userId, sid: session.sessionId, roles: session.roles } : { active: false };
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
