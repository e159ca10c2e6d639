import t, { type Test } from 'tap';
import { decodeJwt } from 'jose';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { openClient, waitForLockWaiters } from '../helpers/row-locks.js';
import { createOrganization, createUser, signIn } from '../helpers/factories.js';
import { randomToken, sha256Hex } from '../../src/lib/tokens.js';
import { generateKey, parseKeyring } from '../../src/lib/secret-box.js';
import { REFRESH_TOKEN_BYTES, refreshSession } from '../../src/modules/sessions/sessions.service.js';
import { rotateSigningKey } from '../../src/modules/sessions/signing-keys.js';

/**
 * The one-statement refresh (src/modules/sessions/refresh-at-once.ts) decides on a snapshot and
 * locks the token row, then the session row: what commits in between must win, and it writes
 * nothing when it cannot answer with a pair.
 */

/** A signed-in user, and a second database connection to hold rows with. */
async function signedInBesideAnotherClient(t: Test) {
  const { app, databaseUrl } = await buildTestApp(t);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  const tokens = await signIn(app, user);
  const sessionId = decodeJwt(tokens.accessToken).sid as string;
  return { app, request: api(app), user, tokens, sessionId, other: await openClient(t, databaseUrl) };
}

t.test('a block committed while the refresh waits for the session row: no pair, the refresh token is dead', async (t) => {
  const { app, request, user, tokens, sessionId, other } = await signedInBesideAnotherClient(t);

  // What a block does: the status and the end of every live session, in one transaction.
  await other.query('BEGIN');
  await other.query(`UPDATE users SET status = 'BLOCKED', blocked_at = now() WHERE id = $1`, [user.id]);
  await other.query(`UPDATE sessions SET revoked_at = now(), revoked_reason = 'user_blocked' WHERE user_id = $1 AND revoked_at IS NULL`, [user.id]);
  const pending = request({ url: '/v1/auth/refresh', body: { refreshToken: tokens.refreshToken } });
  await waitForLockWaiters(other); // the refresh saw a live session and now waits for its row
  await other.query('COMMIT');
  const res = await pending;

  t.equal(res.status, 401);
  t.equal(res.body.code, 'refresh_token_invalid');
  t.notOk(res.body.accessToken, 'no access token either');
  t.equal(await app.ctx.db.refreshToken.count({ where: { sessionId } }), 1, 'no new refresh token');
  const again = await request({ url: '/v1/auth/refresh', body: { refreshToken: tokens.refreshToken } });
  t.equal(again.body.code, 'refresh_token_invalid', 'and the old one stays dead');
});

t.test('a concurrent rotation committed while the refresh waits for the token row: 409, the session lives on', async (t) => {
  const { app, request, tokens, sessionId, other } = await signedInBesideAnotherClient(t);

  await other.query('BEGIN');
  await other.query(`UPDATE refresh_tokens SET rotated_at = $2 WHERE token_hash = $1`, [sha256Hex(tokens.refreshToken), app.ctx.clock.now()]);
  const pending = request({ url: '/v1/auth/refresh', body: { refreshToken: tokens.refreshToken } });
  await waitForLockWaiters(other);
  await other.query('COMMIT');
  const res = await pending;

  t.equal(res.status, 409);
  t.equal(res.body.code, 'refresh_conflict');
  const session = await app.ctx.db.session.findUniqueOrThrow({ where: { id: sessionId } });
  t.equal(session.revokedAt, null, 'the family is not revoked');
  t.equal(await app.ctx.db.refreshToken.count({ where: { sessionId } }), 1, 'no second pair');
});

t.test('no signing key: the refresh answers 503 and writes nothing; the same token works once a key is loaded', async (t) => {
  // This instance cannot open the signing key in the database (sealed under a key it does not
  // hold), so it starts without a signer and answers 503 where it would sign.
  const { app, clock } = await buildTestApp(t, {}, {
    beforeReady: (app) =>
      rotateSigningKey({ ...app.ctx, keyring: parseKeyring(`elsewhere-1:${generateKey()}`) }, { immediate: true }),
  });
  t.notOk(app.ctx.signer.loaded, 'no key loaded');
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  // A session from before (signed in while a key could be opened).
  const refreshToken = randomToken(REFRESH_TOKEN_BYTES);
  const now = clock.now();
  const session = await app.ctx.db.session.create({
    data: {
      userId: user.id,
      amr: ['pwd', 'otp'],
      createdAt: now,
      lastUsedAt: now,
      idleExpiresAt: new Date(now.getTime() + 3_600_000),
      expiresAt: new Date(now.getTime() + 86_400_000),
      refreshTokens: { create: { tokenHash: sha256Hex(refreshToken), createdAt: now } },
    },
  });

  clock.advance(60);
  const refused = await request({ url: '/v1/auth/refresh', body: { refreshToken } });
  t.equal(refused.status, 503);
  t.equal(refused.body.code, 'service_unavailable');
  const stored = await app.ctx.db.refreshToken.findMany({ where: { sessionId: session.id } });
  t.equal(stored.length, 1, 'no new refresh token');
  t.equal(stored[0]!.rotatedAt, null, 'the presented one is not rotated');
  const after = await app.ctx.db.session.findUniqueOrThrow({ where: { id: session.id } });
  t.same([after.lastUsedAt, after.idleExpiresAt], [session.lastUsedAt, session.idleExpiresAt], 'the session is untouched');

  // The operator replaces the key this instance cannot open; the same refresh token works.
  await app.ctx.db.signingKey.deleteMany();
  await app.ctx.signer.reload();
  const retried = await request({ url: '/v1/auth/refresh', body: { refreshToken } });
  t.equal(retried.status, 200);
  t.equal(decodeJwt(retried.body.accessToken).sid, session.id);
});

t.test('a refresh that waited for a free connection past the idle expiry: expired, not renewed', async (t) => {
  const { app, clock } = await buildTestApp(t, { REFRESH_IDLE_TTL_SECONDS: '3600' });
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  const tokens = await signIn(app, user);
  const sessionId = decodeJwt(tokens.accessToken).sid as string;

  // Every connection of the pool is busy; the refresh arrives while the session is still live.
  const pool = app.ctx.pool;
  const held = await Promise.all(Array.from({ length: pool.options.max }, () => pool.connect()));
  clock.advance(3590);
  const pending = request({ url: '/v1/auth/refresh', body: { refreshToken: tokens.refreshToken } });
  while (pool.waitingCount === 0) await new Promise((resolve) => setTimeout(resolve, 5));
  // It gets a connection only after the idle expiry has passed.
  clock.advance(20);
  for (const client of held) client.release();
  const res = await pending;

  t.equal(res.status, 401);
  t.equal(res.body.code, 'refresh_token_expired');
  const session = await app.ctx.db.session.findUniqueOrThrow({ where: { id: sessionId } });
  t.ok(session.idleExpiresAt <= clock.now(), 'the idle expiry was not moved');
  t.equal(await app.ctx.db.refreshToken.count({ where: { sessionId } }), 1, 'no new refresh token');
});

t.test('the general refresh path (refreshSession) loses to a block committed while it waits for the session row: no pair (mutation review, session 20)', async (t) => {
  const { app, databaseUrl } = await buildTestApp(t);
  const { user } = await createUser(app.ctx.db, app);
  const tokens = await signIn(app, user);
  const sessionId = decodeJwt(tokens.accessToken).sid as string;
  const other = await openClient(t, databaseUrl);

  // The fast refresh takes every live token first; this drives the general path behind it directly.
  await other.query('BEGIN');
  await other.query(`UPDATE users SET status = 'BLOCKED', blocked_at = now() WHERE id = $1`, [user.id]);
  await other.query(`UPDATE sessions SET revoked_at = now(), revoked_reason = 'user_blocked' WHERE user_id = $1 AND revoked_at IS NULL`, [user.id]);
  const pending = refreshSession(app.ctx, tokens.refreshToken, { ip: '127.0.0.1', userAgent: null }).then(
    (value) => ({ ok: true as const, value }),
    (error: { code?: string }) => ({ ok: false as const, code: error.code }),
  );
  await waitForLockWaiters(other);
  await other.query('COMMIT');
  t.same(await pending, { ok: false, code: 'refresh_token_invalid' }, 'no new pair, not even an access token');
  t.equal(await app.ctx.db.refreshToken.count({ where: { sessionId } }), 1, 'no new refresh token');
});
