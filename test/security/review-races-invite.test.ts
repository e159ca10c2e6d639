import t from 'tap';
import { adminWorld } from '../integration/organization/helpers.js';
import { openClient, waitForLockWaiters } from '../helpers/row-locks.js';

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

const cases = [
  {
    name: 'demotion',
    change: [`UPDATE users SET roles = '{USER}' WHERE id = $1`],
    refused: { status: 403, code: 'forbidden' },
  },
  {
    name: 'block',
    change: [
      `UPDATE users SET status = 'BLOCKED', blocked_at = now() WHERE id = $1`,
      `UPDATE sessions SET revoked_at = now(), revoked_reason = 'user_blocked' WHERE user_id = $1 AND revoked_at IS NULL`,
    ],
    refused: { status: 401, code: 'unauthenticated' },
  },
];

for (const { name, change, refused } of cases) {
  t.test(`an invite racing its inviter's ${name} creates no administrator once the ${name} committed`, async (t) => {
    const w = await adminWorld(t);
    const { request, adminA, app, databaseUrl } = w;
    await w.member(w.orgA.id, { roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Dora Deputy' });
    const other = await openClient(t, databaseUrl);

    // Dora's change to Alice, as the service runs it: organisation row, then user row, then the change.
    await other.query('BEGIN');
    await other.query('SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE', [w.orgA.id]);
    await other.query('SELECT 1 FROM users WHERE id = $1 FOR UPDATE', [adminA.user.id]);
    for (const sql of change) await other.query(sql, [adminA.user.id]);

    // Meanwhile Alice, still an administrator as far as committed data goes, invites one more.
    const email = `backdoor-${name}@alpha.test`;
    const pending = request({
      method: 'POST',
      url: '/v1/organization/users',
      token: adminA.token,
      body: { email, name: 'Back Door', roles: ['USER', 'CUSTOMER_ADMIN'] },
    });
    await waitForLockWaiters(other);
    await other.query('COMMIT');
    const res = await pending;

    t.match({ status: res.status, code: res.body.code }, refused, `the ${name} is seen by the invite`);
    t.equal(await app.ctx.db.user.findFirst({ where: { email } }), null, 'nobody was invited');
  });
}
