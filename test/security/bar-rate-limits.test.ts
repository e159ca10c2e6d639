import t from 'tap';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createUser, signIn } from '../helpers/factories.js';
import { ACCOUNT_RATE_LIMITS } from '../../src/modules/accounts/rate-limits.js';

/**
 * security.md item 7 for the routes test/integration/accounts/rate-limits.test.ts does not reach:
 * the code step and enrolment, refresh and revoke, the MFA-reset and e-mail-change confirmations
 * and the signed-in user's password, MFA, e-mail, terms and preferences routes. Each answers 429 rate_limited with Retry-After once its per-IP budget is
 * spent, and another address still has its own budget.
 */

const CHALLENGE = 'c'.repeat(43);

t.test('per-IP limits on the code, enrolment, refresh, revoke, MFA-reset, e-mail change and self-service routes: 429 with Retry-After', async (t) => {
  const { app } = await buildTestApp(t, { RATE_LIMIT_ENABLED: 'true' });
  const request = api(app);
  const { user, password } = await createUser(app.ctx.db, app);
  const { accessToken } = await signIn(app, user);

  type Route = { method: 'POST' | 'PUT' | 'PATCH' | 'DELETE'; url: string; body?: object; token?: string; max: number };
  const routes: Route[] = [
    // Found by session 20's mutation review: each of these budgets could go unnoticed.
    // The current address: 409 email_unchanged (nothing mailed), counted all the same.
    { method: 'POST', url: '/v1/me/email', body: { email: user.email, password }, token: accessToken, max: ACCOUNT_RATE_LIMITS.emailChange.max },
    { method: 'POST', url: '/v1/email-change/confirm', body: { token: 'e'.repeat(43) }, max: ACCOUNT_RATE_LIMITS.emailChangeConfirm.max },
    { method: 'POST', url: '/v1/email-change/undo', body: { token: 'e'.repeat(43) }, max: ACCOUNT_RATE_LIMITS.emailChangeConfirm.max },
    { method: 'POST', url: '/v1/auth/revoke', body: { refreshToken: 'r'.repeat(43) }, max: 300 },
    { method: 'POST', url: '/v1/me/mfa/totp/verify', body: { code: '123456' }, token: accessToken, max: 60 },
    { method: 'POST', url: '/v1/me/terms', body: { version: 'no such version', email: user.email }, token: accessToken, max: 30 },
    { method: 'PATCH', url: '/v1/me/preferences', body: { newsletterOptIn: false }, token: accessToken, max: 30 },
    { method: 'POST', url: '/v1/auth/login/mfa', body: { challengeToken: CHALLENGE, code: '123456' }, max: 60 },
    { method: 'POST', url: '/v1/auth/login/mfa-enrollment', body: { challengeToken: CHALLENGE }, max: 20 },
    { method: 'POST', url: '/v1/auth/login/mfa-enrollment/verify', body: { challengeToken: CHALLENGE, code: '123456' }, max: 60 },
    { method: 'POST', url: '/v1/auth/refresh', body: { refreshToken: 'r'.repeat(43) }, max: 300 },
    { method: 'POST', url: '/v1/mfa-reset/confirm', body: { token: 'm'.repeat(43) }, max: 10 },
    { method: 'POST', url: '/v1/me/mfa/recovery-codes', body: { password: 'not the password 1' }, token: accessToken, max: 10 },
    { method: 'PUT', url: '/v1/me/password', body: { currentPassword: 'not the password 1', newPassword: 'Amber falcon meadow 4711?' }, token: accessToken, max: 10 },
    { method: 'DELETE', url: '/v1/me/mfa', body: { password: 'not the password 1' }, token: accessToken, max: 10 },
  ];
  for (const route of routes) {
    let limitedEarly = false;
    for (let i = 0; i < route.max; i++) {
      const res = await request({ method: route.method, url: route.url, body: route.body, ...(route.token ? { token: route.token } : {}) });
      if (res.status === 429) {
        limitedEarly = true;
        t.fail(`${route.url}: limited after ${i} requests`);
        break;
      }
    }
    if (limitedEarly) continue;
    const over = await request({ method: route.method, url: route.url, body: route.body, ...(route.token ? { token: route.token } : {}) });
    t.equal(over.status, 429, `${route.method} ${route.url}: request ${route.max + 1} is refused`);
    t.equal(over.body.code, 'rate_limited', `${route.url}: rate_limited`);
    t.ok(Number(over.headers['retry-after']) >= 1, `${route.url}: Retry-After ${over.headers['retry-after']}`);
    const other = await app.inject({
      method: route.method,
      url: route.url,
      payload: route.body,
      remoteAddress: '192.0.2.77',
      headers: route.token ? { authorization: `Bearer ${route.token}` } : {},
    });
    t.not(other.statusCode, 429, `${route.url}: another address has its own budget`);
  }
});
