import t from 'tap';
import { decodeJwt } from 'jose';
import { buildTestApp } from '../../helpers/app.js';
import { api } from '../../helpers/http.js';
import { createOrganization, createUser, signIn } from '../../helpers/factories.js';
import { revokeUserSessions } from '../../../src/modules/sessions/revoke.js';
import { refreshSession } from '../../../src/modules/sessions/sessions.service.js';

t.test('refresh rotates the pair; the old refresh token dies', async (t) => {
  const { app, config, clock } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id, termsAccepted: true, preferencesSet: true });
  const first = await signIn(app, user);
  t.same(first.requiredActions, []);

  clock.advance(120);
  const res = await request({ url: '/v1/auth/refresh', body: { refreshToken: first.refreshToken }, headers: { 'user-agent': 'phone' } });
  t.equal(res.status, 200);
  t.equal(res.headers['cache-control'], 'no-store');
  t.not(res.body.refreshToken, first.refreshToken);
  t.not(res.body.accessToken, first.accessToken);
  t.equal(res.body.tokenType, 'Bearer');
  t.same(res.body.user.id, user.id);
  const a = decodeJwt(first.accessToken);
  const b = decodeJwt(res.body.accessToken);
  t.equal(b.sid, a.sid, 'same session');
  t.not(b.jti, a.jti);
  t.same(b.amr, ['pwd', 'otp'], 'amr of the sign-in carries over');
  t.equal(b.terms, config.termsVersion);
  t.equal(res.body.refreshExpiresIn, config.refresh.idleTtlSeconds, 'idle timeout restarts');

  const session = await app.ctx.db.session.findUniqueOrThrow({ where: { id: b.sid as string } });
  t.equal(session.lastUsedAt.getTime(), clock.now().getTime());
  t.equal(session.userAgent, 'phone');
  t.equal((await request({ url: '/v1/me', token: res.body.accessToken })).status, 200);
  t.equal(await app.ctx.db.refreshToken.count({ where: { sessionId: session.id } }), 2);
  const stored = await app.ctx.db.refreshToken.findMany({ where: { sessionId: session.id } });
  t.notOk(stored.some((r) => r.tokenHash === first.refreshToken || r.tokenHash === res.body.refreshToken), 'only hashes stored');

  // Claims are fresh on refresh: a role change shows in the next access token.
  await app.ctx.db.user.update({ where: { id: user.id }, data: { roles: ['USER', 'CUSTOMER_ADMIN'] } });
  const again = await request({ url: '/v1/auth/refresh', body: { refreshToken: res.body.refreshToken } });
  t.same(decodeJwt(again.body.accessToken).roles, ['USER', 'CUSTOMER_ADMIN']);

  const unknown = await request({ url: '/v1/auth/refresh', body: { refreshToken: 'x'.repeat(43) } });
  t.equal(unknown.status, 401);
  t.equal(unknown.body.code, 'refresh_token_invalid');
  const extra = await request({ url: '/v1/auth/refresh', body: { refreshToken: again.body.refreshToken, userId: user.id } });
  t.equal(extra.status, 400, 'unknown fields are rejected');
});

t.test('reuse of a rotated refresh token revokes the whole family (after the grace period) and is audited', async (t) => {
  const { app, config, clock } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  const first = await signIn(app, user);
  const second = (await request({ url: '/v1/auth/refresh', body: { refreshToken: first.refreshToken } })).body;

  // Within the grace period: a concurrent/retried refresh, answered 409 and harmless.
  clock.advance(config.refresh.reuseGraceSeconds);
  const conflict = await request({ url: '/v1/auth/refresh', body: { refreshToken: first.refreshToken } });
  t.equal(conflict.status, 409);
  t.equal(conflict.body.code, 'refresh_conflict');
  t.equal((await request({ url: '/v1/me', token: second.accessToken })).status, 200, 'family still alive');

  // After it: reuse. The attacker (or the victim) replaying the old token ends the session.
  clock.advance(1);
  const reuse = await request({ url: '/v1/auth/refresh', body: { refreshToken: first.refreshToken }, headers: { 'user-agent': 'thief' } });
  t.equal(reuse.status, 401);
  t.equal(reuse.body.code, 'refresh_token_reused');

  const current = await request({ url: '/v1/auth/refresh', body: { refreshToken: second.refreshToken } });
  t.equal(current.status, 401, 'the newest refresh token of the family is dead too');
  t.equal(current.body.code, 'refresh_token_invalid');
  t.equal((await request({ url: '/v1/me', token: second.accessToken })).body.code, 'token_invalid', 'access tokens of the family too');

  const events = await app.ctx.db.auditEvent.findMany({ where: { type: 'session.family_revoked' } });
  t.equal(events.length, 1, 'audited once');
  t.match(events[0], { subjectUserId: user.id, organizationId: org.id, userAgent: 'thief' });
  t.match(events[0]?.details, { reason: 'refresh_token_reuse', sessionId: decodeJwt(first.accessToken).sid });

  const other = await signIn(app, user);
  t.equal((await request({ url: '/v1/me', token: other.accessToken })).status, 200, 'other sessions are not affected');
});

/** A cap of 10 refreshes, on a lifetime that needs no more at one refresh per access token (10 min). */
const REFRESH_CAP_OF_10 = { REFRESH_MAX_PER_SESSION: '10', REFRESH_ABSOLUTE_TTL_SECONDS: '6000', REFRESH_IDLE_TTL_SECONDS: '1200', ACCESS_TOKEN_TTL_SECONDS: '600' };

t.test('a session ends after REFRESH_MAX_PER_SESSION refreshes: its rotated tokens stay bounded, and every one of them still trips reuse detection (DoS review, session 32)', async (t) => {
  const { app, clock } = await buildTestApp(t, REFRESH_CAP_OF_10);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  const first = await signIn(app, user);
  const sessionId = decodeJwt(first.accessToken).sid as string;
  // One client refreshing as fast as the per-IP limit lets it added a row per refresh for as long
  // as the session lived (~170 MB a day). Deleting old rotated tokens instead would let a thief who
  // rotates a stolen token past them make the victim's token unknown rather than reused.
  let latest = first;
  const statuses: number[] = [];
  for (let i = 0; i < 10; i++) {
    clock.advance(1);
    const res = await request({ url: '/v1/auth/refresh', body: { refreshToken: latest.refreshToken } });
    statuses.push(res.status);
    if (res.status === 200) latest = res.body;
  }
  t.same(statuses, Array(10).fill(200), 'ten refreshes rotate');
  const over = await request({ url: '/v1/auth/refresh', body: { refreshToken: latest.refreshToken }, headers: { 'user-agent': 'script' } });
  t.same([over.status, over.body.code], [401, 'refresh_token_expired'], 'the eleventh ends the session');
  t.match(over.body.detail, /limit/);
  // Unusual (a script, or a thief rotating a stolen token until the victim's is no longer reuse): audited as a family revocation.
  t.match(await app.ctx.db.auditEvent.findMany({ where: { type: 'session.family_revoked', subjectUserId: user.id } }), [
    { actorUserId: null, organizationId: org.id, userAgent: 'script', details: { sessionId, reason: 'refresh_limit', refreshes: 10 } },
  ]);
  t.match(await app.ctx.db.session.findUniqueOrThrow({ where: { id: sessionId } }), { revokedReason: 'refresh_limit' });
  t.not(await app.ctx.db.session.findUniqueOrThrow({ where: { id: sessionId } }).then((s) => s.revokedAt), null);
  t.equal((await request({ url: '/v1/me', token: latest.accessToken })).body.code, 'token_invalid', 'its access tokens end with it');
  t.equal(await app.ctx.db.refreshToken.count({ where: { sessionId } }), 11, 'no row beyond the limit');
  const again = await request({ url: '/v1/auth/refresh', body: { refreshToken: latest.refreshToken } });
  t.equal(again.body.code, 'refresh_token_invalid', 'and it stays ended');

  // Within the limit every rotated token is kept: reuse of the first one still ends a family.
  const second = await signIn(app, user);
  const next = (await request({ url: '/v1/auth/refresh', body: { refreshToken: second.refreshToken } })).body;
  clock.advance(60);
  t.equal((await request({ url: '/v1/auth/refresh', body: { refreshToken: second.refreshToken } })).body.code, 'refresh_token_reused');
  t.equal((await request({ url: '/v1/auth/refresh', body: { refreshToken: next.refreshToken } })).body.code, 'refresh_token_invalid');

  // The general path (a refresh the one-statement path leaves to it) counts and ends the same way.
  const third = await signIn(app, user);
  await app.ctx.db.session.update({ where: { id: decodeJwt(third.accessToken).sid as string }, data: { refreshCount: 9 } });
  const ninth = await refreshSession(app.ctx, third.refreshToken, { ip: '127.0.0.1', userAgent: null });
  await t.rejects(refreshSession(app.ctx, ninth.refreshToken, { ip: '127.0.0.1', userAgent: null }), { code: 'refresh_token_expired' });
});

t.test('at the cap, reuse of a rotated token is still reuse; the general path counts a refresh once (review of session 32)', async (t) => {
  const { app, clock } = await buildTestApp(t, REFRESH_CAP_OF_10);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  const victim = await signIn(app, user);
  let latest = victim;
  for (let i = 0; i < 10; i++) {
    clock.advance(1);
    latest = (await request({ url: '/v1/auth/refresh', body: { refreshToken: latest.refreshToken } })).body;
  }
  clock.advance(60);
  const reuse = await request({ url: '/v1/auth/refresh', body: { refreshToken: victim.refreshToken } });
  t.same([reuse.status, reuse.body.code], [401, 'refresh_token_reused']);
  t.match(await app.ctx.db.auditEvent.findMany({ where: { type: 'session.family_revoked', subjectUserId: user.id } }), [{ details: { reason: 'refresh_token_reuse' } }]);
  t.match(await app.ctx.db.session.findUniqueOrThrow({ where: { id: decodeJwt(victim.accessToken).sid as string } }), { revokedReason: 'refresh_token_reuse' });

  const other = await signIn(app, user);
  await refreshSession(app.ctx, other.refreshToken, { ip: '127.0.0.1', userAgent: null });
  t.equal((await app.ctx.db.session.findUniqueOrThrow({ where: { id: decodeJwt(other.accessToken).sid as string } })).refreshCount, 1, 'counted once');
});

t.test('concurrent refreshes with one token: exactly one wins, the family survives', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  const tokens = await signIn(app, user);

  const results = await Promise.all(
    Array.from({ length: 5 }, () => request({ url: '/v1/auth/refresh', body: { refreshToken: tokens.refreshToken } })),
  );
  const winners = results.filter((r) => r.status === 200);
  t.equal(winners.length, 1, 'one winner');
  t.same(
    results.filter((r) => r.status !== 200).map((r) => r.body.code),
    Array(4).fill('refresh_conflict'),
    'the others get 409 refresh_conflict',
  );
  const next = await request({ url: '/v1/auth/refresh', body: { refreshToken: winners[0]!.body.refreshToken } });
  t.equal(next.status, 200, "the winner's token keeps working: nothing was revoked");
  t.equal(await app.ctx.db.auditEvent.count({ where: { type: 'session.family_revoked' } }), 0);
});

t.test('idle timeout and absolute lifetime', async (t) => {
  const { app, clock } = await buildTestApp(t, { REFRESH_IDLE_TTL_SECONDS: '3600', REFRESH_ABSOLUTE_TTL_SECONDS: '7200' });
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });

  // Idle: unused for longer than the idle timeout.
  const idle = await signIn(app, user);
  t.equal(idle.refreshExpiresIn, 3600);
  clock.advance(3601);
  const idleRes = await request({ url: '/v1/auth/refresh', body: { refreshToken: idle.refreshToken } });
  t.equal(idleRes.status, 401);
  t.equal(idleRes.body.code, 'refresh_token_expired');

  // Absolute: refreshed regularly, still ends after the absolute lifetime.
  let tokens = await signIn(app, user);
  for (let i = 0; i < 3; i++) {
    clock.advance(1800);
    const res = await request({ url: '/v1/auth/refresh', body: { refreshToken: tokens.refreshToken } });
    t.equal(res.status, 200, `refresh ${i + 1} at ${(i + 1) * 30} min`);
    tokens = res.body;
  }
  t.equal(tokens.refreshExpiresIn, 1800, 'the idle window is capped by the absolute end');
  clock.advance(1800);
  const absolute = await request({ url: '/v1/auth/refresh', body: { refreshToken: tokens.refreshToken } });
  t.equal(absolute.status, 401);
  t.equal(absolute.body.code, 'refresh_token_expired');
  t.equal((await request({ url: '/v1/me', token: tokens.accessToken })).status, 401, 'the session is over for access tokens too');
});

t.test('blocking, password reset and MFA reset end sessions: refresh fails at once', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });

  for (const reason of ['password_reset', 'mfa_reset', 'blocked']) {
    const tokens = await signIn(app, user);
    await app.ctx.db.$transaction((tx) => revokeUserSessions(tx, app.ctx.clock, user.id, reason));
    const res = await request({ url: '/v1/auth/refresh', body: { refreshToken: tokens.refreshToken } });
    t.equal(res.status, 401, reason);
    t.equal(res.body.code, 'refresh_token_invalid', reason);
  }

  // Even if a session were left alive, a blocked user cannot refresh.
  const tokens = await signIn(app, user);
  await app.ctx.db.user.update({ where: { id: user.id }, data: { status: 'BLOCKED' } });
  const blocked = await request({ url: '/v1/auth/refresh', body: { refreshToken: tokens.refreshToken } });
  t.equal(blocked.body.code, 'refresh_token_invalid');
});

t.test('logout ends the current session only; sessions list and delete', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  const { user: other } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });

  const laptop = await signIn(app, user, ['pwd', 'otp'], { ip: '10.0.0.1', userAgent: 'laptop' });
  clock.advance(60);
  const phone = await signIn(app, user, ['pwd', 'rec'], { ip: '10.0.0.2', userAgent: 'phone' });
  const otherTokens = await signIn(app, other);

  const list = await request({ url: '/v1/me/sessions', token: phone.accessToken });
  t.equal(list.status, 200);
  t.equal(list.body.sessions.length, 2, 'only my sessions');
  t.match(list.body.sessions[0], { userAgent: 'phone', ip: '10.0.0.2', current: true, amr: ['pwd', 'rec'] });
  t.match(list.body.sessions[1], { userAgent: 'laptop', ip: '10.0.0.1', current: false });
  const laptopSid = decodeJwt(laptop.accessToken).sid as string;
  t.equal(list.body.sessions[1].id, laptopSid);

  // Someone else's session, an unknown id: 404 (nothing revealed, nothing changed).
  const otherSid = decodeJwt(otherTokens.accessToken).sid as string;
  const foreign = await request({ method: 'DELETE', url: `/v1/me/sessions/${otherSid}`, token: phone.accessToken });
  t.equal(foreign.status, 404);
  t.equal((await request({ url: '/v1/me', token: otherTokens.accessToken })).status, 200, "the other user's session lives");
  const bad = await request({ method: 'DELETE', url: '/v1/me/sessions/not-a-uuid', token: phone.accessToken });
  t.equal(bad.status, 400);

  // Sign out the laptop from the phone.
  const del = await request({ method: 'DELETE', url: `/v1/me/sessions/${laptopSid}`, token: phone.accessToken });
  t.equal(del.status, 204);
  t.equal((await request({ url: '/v1/me', token: laptop.accessToken })).status, 401);
  t.equal((await request({ url: '/v1/auth/refresh', body: { refreshToken: laptop.refreshToken } })).status, 401);
  t.equal((await request({ method: 'DELETE', url: `/v1/me/sessions/${laptopSid}`, token: phone.accessToken })).status, 404, 'already ended');

  // A session that ended by idle timeout is not listed and cannot be "ended" again: 404, no audit.
  const idle = await signIn(app, user, ['pwd', 'otp'], { ip: null, userAgent: 'tablet' });
  const idleSid = decodeJwt(idle.accessToken).sid as string;
  await app.ctx.db.session.update({ where: { id: idleSid }, data: { idleExpiresAt: clock.now() } });
  const listedIdle = await request({ url: '/v1/me/sessions', token: phone.accessToken });
  t.notOk(listedIdle.body.sessions.some((s: { id: string }) => s.id === idleSid), 'the idle-expired session is not listed');
  t.equal((await request({ method: 'DELETE', url: `/v1/me/sessions/${idleSid}`, token: phone.accessToken })).status, 404, 'idle-expired: already ended');
  t.equal(await app.ctx.db.auditEvent.count({ where: { type: 'session.revoked', details: { path: ['sessionId'], equals: idleSid } } }), 0, 'no revocation audited');

  // Logout.
  const out = await request({ url: '/v1/auth/logout', method: 'POST', token: phone.accessToken });
  t.equal(out.status, 204);
  t.equal((await request({ url: '/v1/me', token: phone.accessToken })).body.code, 'token_invalid');
  t.equal((await request({ url: '/v1/auth/refresh', body: { refreshToken: phone.refreshToken } })).body.code, 'refresh_token_invalid');
  t.equal((await request({ url: '/v1/auth/logout', method: 'POST', token: phone.accessToken })).status, 401, 'twice: the token is dead');
  t.equal((await request({ url: '/v1/auth/logout', method: 'POST' })).status, 401);

  const revoked = await app.ctx.db.auditEvent.findMany({ where: { type: 'session.revoked' }, orderBy: { createdAt: 'asc' } });
  t.same(revoked.map((e) => (e.details as { reason: string }).reason), ['user_revoked', 'logout']);
});
