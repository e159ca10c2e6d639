import t from 'tap';
import { decodeJwt } from 'jose';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { openClient, waitForLockWaiters } from '../helpers/row-locks.js';
import { createOrganization, createUser, currentTotp } from '../helpers/factories.js';
import { challengeFor } from '../integration/mfa/helpers.js';

/**
 * The fast code step (src/modules/mfa/code-step-at-once.ts) reads the user without a lock and
 * writes in a second statement: what it answers must be what the second statement saw.
 */

t.test('a demotion committed during the code step: the new session and token do not carry CUSTOMER_ADMIN', async (t) => {
  const { app, databaseUrl } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user, totpSecret } = await createUser(app.ctx.db, app, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'] });
  const challengeToken = await challengeFor(app, user.id, 'mfa');
  const other = await openClient(t, databaseUrl);

  // What setUserRoles does: the new roles and the end of every live session, in one transaction.
  await other.query('BEGIN');
  await other.query(`UPDATE users SET roles = '{USER}' WHERE id = $1`, [user.id]);
  await other.query(`UPDATE sessions SET revoked_at = now(), revoked_reason = 'roles_reduced' WHERE user_id = $1 AND revoked_at IS NULL`, [
    user.id,
  ]);
  const pending = request({ url: '/v1/auth/login/mfa', body: { challengeToken, code: currentTotp(app, totpSecret!) } });
  await waitForLockWaiters(other); // the code step read the old roles and now waits for the user row
  await other.query('COMMIT');
  const res = await pending;

  t.equal(res.status, 200, 'the login completes after the demotion');
  t.same(decodeJwt(res.body.accessToken).roles, ['USER'], 'the access token carries the roles as committed');
  t.same(res.body.user.roles, ['USER'], 'so does the answer');
  const session = await app.ctx.db.session.findFirstOrThrow({ where: { userId: user.id } });
  t.equal(session.revokedAt, null, 'the session was started after the demotion and is live');
});
