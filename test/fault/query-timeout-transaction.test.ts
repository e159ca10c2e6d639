import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createOrganization, createUser, signIn } from '../helpers/factories.js';
import { openClient, waitForLockWaiters } from '../helpers/row-locks.js';

/**
 * security.md item 28 (found by session 14's second read): DATABASE_QUERY_TIMEOUT_MS inside a Prisma
 * interactive transaction. pg fails the timed-out call but leaves the statement running and the
 * connection open; the ROLLBACK Prisma queues behind it timed out too and was never sent, and the
 * adapter handed the connection back to the pool inside the failed transaction: the next
 * transaction on it committed the change that had been answered 503 (a password changed without
 * its audit row or mail). The connection is now closed when a round trip times out
 * (db/client.ts TimeoutClosingClient), so PostgreSQL rolls the transaction back.
 */

const NEW_PASSWORD = 'Amber falcon meadow 4711?';

t.test('a change answered 503 after a query timeout inside its transaction is never committed later', async (t) => {
  const { app, databaseUrl } = await buildTestApp(t, { DATABASE_QUERY_TIMEOUT_MS: '1000' });
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const u = await createUser(app.ctx.db, app, { organizationId: org.id, termsAccepted: true, preferencesSet: true });
  const mine = await signIn(app, u.user);
  await signIn(app, u.user); // another session: change password revokes it
  const sessions = await app.ctx.db.session.findMany({ where: { userId: u.user.id }, orderBy: { createdAt: 'asc' } });
  const otherSessionId = sessions.at(-1)!.id;
  const before = await app.ctx.db.user.findUniqueOrThrow({ where: { id: u.user.id } });

  // Something holds the other session's row a little longer than the query timeout (2.5 s).
  const locker = await openClient(t, databaseUrl);
  await locker.query('BEGIN');
  await locker.query('SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE', [otherSessionId]);
  const started = Date.now();
  const change = request({ method: 'PUT', url: '/v1/me/password', token: mine.accessToken, body: { currentPassword: u.password, newPassword: NEW_PASSWORD } });
  await waitForLockWaiters(locker, 1);
  const res = await change;
  t.comment(`change password answered ${res.status} after ${Date.now() - started} ms`);
  t.equal(res.status, 503, 'the client is told the change failed (503)');
  await sleep(Math.max(0, 2500 - (Date.now() - started)));
  await locker.query('COMMIT');
  await sleep(300);

  const watcher = await openClient(t, databaseUrl);
  const { rows: stale } = await watcher.query(
    "SELECT pid, state, left(query, 60) AS query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'idle in transaction'",
  );
  t.comment(`app backends idle in transaction: ${JSON.stringify(stale)}`);
  t.same(stale, [], 'no pooled connection is left inside an open transaction');

  // Any later request that runs a Prisma transaction on that pooled connection (here: another user's sign-in).
  const other = await createUser(app.ctx.db, app, { organizationId: org.id });
  await signIn(app, other.user);

  const after = await app.ctx.db.user.findUniqueOrThrow({ where: { id: u.user.id } });
  const audits = await app.ctx.db.auditEvent.count({ where: { subjectUserId: u.user.id, type: 'password.changed' } });
  const mails = await app.ctx.db.mailOutbox.count({ where: { template: 'password_changed' } });
  const revoked = await app.ctx.db.session.count({ where: { userId: u.user.id, revokedReason: 'password_changed' } });
  t.comment(`after: passwordChangedAt ${before.passwordChangedAt?.toISOString()} -> ${after.passwordChangedAt?.toISOString()}, password.changed audit rows ${audits}, mails ${mails}, sessions revoked ${revoked}`);
  t.equal(after.passwordHash, before.passwordHash, 'the change answered 503 was not committed later');
  t.equal(revoked, 0, 'no session revoked by the failed change');
  const login = await request({ url: '/v1/auth/login', body: { email: u.user.email, password: NEW_PASSWORD } });
  t.not(login.status, 200, `the new password does not sign in (got ${login.status})`);
});
