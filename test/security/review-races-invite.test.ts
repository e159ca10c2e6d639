import t, { type Test } from 'tap';
import pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import { adminWorld } from '../integration/organization/helpers.js';

/**
 * An administrator demoted or blocked by a concurrent request is seen as such by an invite (which
 * can grant CUSTOMER_ADMIN): every administrative decision is made on the stored roles and status,
 * read inside the deciding transaction after the organisation lock that every role change and
 * block takes (acting-user.ts, user-admin.service.ts lockForChange).
 *
 * Made deterministic as in review-races.test.ts: a second connection runs the demotion (or block)
 * as setUserRoles/blockUser do (organisation row FOR UPDATE, then the user row) and commits while
 * the invite waits for it.
 */

async function openClient(t: Test, url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  t.teardown(() => client.end());
  return client;
}

async function waitForLockWaiter(client: pg.Client): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const { rows } = await client.query<{ n: string }>(
      "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
    );
    if (Number(rows[0]?.n) > 0) return;
    await sleep(50);
  }
  throw new Error('the invite never waited for a lock');
}

t.test('an invite racing the inviter\'s demotion must not create an administrator after the demotion committed', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, app, databaseUrl } = w;
  // A second administrator (Dora) demotes Alice.
  const dora = await w.member(w.orgA.id, { roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Dora Deputy' });
  const other = await openClient(t, databaseUrl);

  // Dora's demotion of Alice, as setUserRoles runs it: organisation row, then user row, then the change.
  await other.query('BEGIN');
  await other.query('SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE', [w.orgA.id]);
  await other.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [adminA.user.id]);
  await other.query(`UPDATE users SET roles = '{USER}' WHERE id = $1`, [adminA.user.id]);

  // Meanwhile Alice (still an administrator as far as committed data goes) invites a backdoor administrator.
  const pending = request({
    method: 'POST',
    url: '/v1/organization/users',
    token: adminA.token,
    body: { email: 'backdoor@alpha.test', name: 'Backdoor', roles: ['USER', 'CUSTOMER_ADMIN'] },
  });
  await waitForLockWaiter(other);
  await other.query('COMMIT');
  const res = await pending;

  const alice = await app.ctx.db.user.findUniqueOrThrow({ where: { id: adminA.user.id } });
  t.same(alice.roles, ['USER'], 'Alice is demoted (committed before the invite wrote anything)');
  t.equal(res.status, 403, `a demoted administrator cannot invite (got ${res.status} ${res.body?.code ?? ''})`);
  const backdoor = await app.ctx.db.user.findFirst({ where: { email: 'backdoor@alpha.test' } });
  t.equal(backdoor, null, 'no administrator was created by the demoted administrator');
  t.ok(dora.user.id);
});

t.test('an invite racing the inviter\'s block must not create an administrator after the block committed', async (t) => {
  const w = await adminWorld(t);
  const { request, adminA, app, databaseUrl } = w;
  await w.member(w.orgA.id, { roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Dora Deputy' });
  const other = await openClient(t, databaseUrl);

  // Dora blocks Alice, as blockUser runs it: organisation row, then user row, then the change and the session revocation.
  await other.query('BEGIN');
  await other.query('SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE', [w.orgA.id]);
  await other.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [adminA.user.id]);
  await other.query(`UPDATE users SET status = 'BLOCKED', blocked_at = now() WHERE id = $1`, [adminA.user.id]);
  await other.query(`UPDATE sessions SET revoked_at = now(), revoked_reason = 'user_blocked' WHERE user_id = $1 AND revoked_at IS NULL`, [adminA.user.id]);

  const pending = request({
    method: 'POST',
    url: '/v1/organization/users',
    token: adminA.token,
    body: { email: 'backdoor2@alpha.test', name: 'Backdoor Two', roles: ['USER', 'CUSTOMER_ADMIN'] },
  });
  await waitForLockWaiter(other);
  await other.query('COMMIT');
  const res = await pending;

  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: adminA.user.id } })).status, 'BLOCKED');
  t.not(res.status, 201, `a blocked administrator cannot invite (got ${res.status} ${res.body?.code ?? ''})`);
  t.equal(await app.ctx.db.user.findFirst({ where: { email: 'backdoor2@alpha.test' } }), null, 'no administrator was created by the blocked administrator');
});
