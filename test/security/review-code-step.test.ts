import t from 'tap';
import { decodeJwt } from 'jose';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { openClient, waitForLockWaiters } from '../helpers/row-locks.js';
import { createOrganization, createUser, currentTotp } from '../helpers/factories.js';
import { challengeFor } from '../integration/mfa/helpers.js';
import { generateKey, parseKeyring } from '../../src/lib/secret-box.js';
import { rotateSigningKey } from '../../src/modules/sessions/signing-keys.js';

/**
 * The fast code step (src/modules/mfa/code-step-at-once.ts) reads the user without a lock and
 * writes in a second statement: what it answers must be what the second statement saw, and it
 * writes nothing unless it can answer with tokens.
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

t.test('no signing key: the code step answers 503 and writes nothing; the same code works once a key is loaded', async (t) => {
  // This instance cannot open the signing key in the database (sealed under a key it does not
  // hold), so it starts without a signer and answers 503 where it would sign.
  const { app } = await buildTestApp(t, {}, {
    beforeReady: (app) =>
      rotateSigningKey({ ...app.ctx, keyring: parseKeyring(`elsewhere-1:${generateKey()}`) }, { immediate: true }),
  });
  t.notOk(app.ctx.signer.loaded, 'no key loaded');
  const request = api(app);
  const { user, totpSecret } = await createUser(app.ctx.db, app);
  const challengeToken = await challengeFor(app, user.id, 'mfa');
  const code = currentTotp(app, totpSecret!);

  const refused = await request({ url: '/v1/auth/login/mfa', body: { challengeToken, code } });
  t.equal(refused.status, 503);
  t.equal(refused.body.code, 'service_unavailable');
  const flow = await app.ctx.db.flowToken.findFirstOrThrow({ where: { userId: user.id, purpose: 'LOGIN_CHALLENGE' } });
  t.equal(flow.state, 'PENDING', 'the challenge is not consumed');
  t.equal(flow.attempts, 0, 'nor counted');
  const factor = await app.ctx.db.totpFactor.findFirstOrThrow({ where: { userId: user.id } });
  t.equal(factor.lastUsedStep, null, 'the code is not burned');
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } })).lastLoginAt, null, 'no login recorded');
  t.equal(await app.ctx.db.session.count({ where: { userId: user.id } }), 0, 'no session');
  t.equal(await app.ctx.db.auditEvent.count({ where: { subjectUserId: user.id } }), 0, 'no audit row claims a login');

  // The operator replaces the key this instance cannot open; the retry with the same code succeeds.
  await app.ctx.db.signingKey.deleteMany();
  await app.ctx.signer.reload();
  const retried = await request({ url: '/v1/auth/login/mfa', body: { challengeToken, code } });
  t.equal(retried.status, 200);
  t.equal(await app.ctx.db.session.count({ where: { userId: user.id } }), 1);
});
