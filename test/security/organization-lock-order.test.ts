import t from 'tap';
import { openClient, waitForLockWaiters } from '../helpers/row-locks.js';
import { adminWorld } from '../integration/organization/helpers.js';

/**
 * Administrative changes lock the organisation row, then the user row (acting-user.ts). Requests
 * that lock a user row first and then write a row referring to the organisation (an audit row, a
 * user) take a KEY SHARE lock on the organisation row through the foreign key. With the
 * organisation locked FOR UPDATE, which conflicts with KEY SHARE, the two orders deadlocked:
 * PostgreSQL aborted one side with 40P01, a 500, and for "forgot password" only when the address
 * has an account (an unknown one touches no organisation row). Found by session 10's second read.
 * The organisation row is now locked FOR NO KEY UPDATE: administrative changes still exclude each
 * other, and the foreign keys' KEY SHARE no longer waits for them.
 *
 * Each case: a third connection holds the user row, so the request that locks it first queues on
 * it first; then the administrative change takes the organisation row and queues behind; then the
 * holder lets go.
 */
for (const action of ['block', 'password-reset', 'roles'] as const) {
  t.test(`"forgot password" and an administrator's ${action} of the same user at once: both succeed`, async (t) => {
    const w = await adminWorld(t);
    const { request, adminA, app, databaseUrl } = w;
    const member = await w.member(w.orgA.id, { email: 'victim@alpha.test', roles: ['USER', 'CUSTOMER_ADMIN'] });
    const holder = await openClient(t, databaseUrl);
    const watcher = await openClient(t, databaseUrl);
    await holder.query('BEGIN');
    await holder.query('SELECT 1 FROM users WHERE id = $1::uuid FOR UPDATE', [member.user.id]);

    const forgot = request({ url: '/v1/password/forgot', body: { email: 'victim@alpha.test' } });
    await waitForLockWaiters(watcher, 1);
    const change =
      action === 'roles'
        ? request({ method: 'PUT', url: `/v1/organization/users/${member.user.id}/roles`, token: adminA.token, body: { roles: ['USER'] } })
        : request({ method: 'POST', url: `/v1/organization/users/${member.user.id}/${action}`, token: adminA.token });
    await waitForLockWaiters(watcher, 2);
    await holder.query('COMMIT');
    const [f, c] = await Promise.all([forgot, change]);
    t.equal(f.status, 202, 'forgot password: 202');
    t.equal(c.status, 200, `${action}: 200 (${c.body.code ?? ''})`);
    const pending = await app.ctx.db.flowToken.count({ where: { userId: member.user.id, purpose: 'PASSWORD_RESET', state: 'PENDING' } });
    t.equal(pending, action === 'block' ? 0 : 1, 'one valid reset link at most, none for a blocked user');
  });
}

t.test('unblocking a never-activated user while "forgot password" runs for the unblocking administrator: both succeed', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, app, databaseUrl } = w;
  const invited = await w.member(w.orgA.id, { email: 'late@alpha.test', status: 'INVITED' });
  t.equal((await request({ method: 'POST', url: `/v1/organization/users/${invited.user.id}/block`, token: adminA.token })).status, 200);
  // The unblock issues a new activation link with the administrator as its requester (their row held FOR SHARE).
  const holder = await openClient(t, databaseUrl);
  const watcher = await openClient(t, databaseUrl);
  await holder.query('BEGIN');
  await holder.query('SELECT 1 FROM users WHERE id = $1::uuid FOR UPDATE', [adminA.user.id]);
  const forgot = request({ url: '/v1/password/forgot', body: { email: adminA.user.email } });
  await waitForLockWaiters(watcher, 1);
  const unblock = request({ method: 'POST', url: `/v1/organization/users/${invited.user.id}/unblock`, token: adminA.token });
  await waitForLockWaiters(watcher, 2);
  await holder.query('COMMIT');
  const [f, u] = await Promise.all([forgot, unblock]);
  t.equal(f.status, 202);
  t.equal(u.status, 200, `unblock: 200 (${u.body.code ?? ''})`);
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: invited.user.id } })).status, 'INVITED');
});
