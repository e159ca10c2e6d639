import t from 'tap';
import { buildTestApp } from '../../helpers/app.js';
import { api } from '../../helpers/http.js';
import { ACCOUNT_RATE_LIMITS } from '../../../src/modules/accounts/rate-limits.js';

t.test('per-IP limits on the login, activation and password routes: 429 with Retry-After', async (t) => {
  const { app } = await buildTestApp(t, { RATE_LIMIT_ENABLED: 'true' });
  const request = api(app);
  const routes = [
    { url: '/v1/auth/login', body: { email: 'a@example.test', password: 'wrong password 1' }, limit: ACCOUNT_RATE_LIMITS.login.max },
    { url: '/v1/activation/inspect', body: { token: 'A'.repeat(43) }, limit: ACCOUNT_RATE_LIMITS.activationInspect.max },
    { url: '/v1/activation', body: { token: 'A'.repeat(43), password: 'whatever 12345' }, limit: ACCOUNT_RATE_LIMITS.activation.max },
    { url: '/v1/password/forgot', body: { email: 'a@example.test' }, limit: ACCOUNT_RATE_LIMITS.passwordForgot.max },
    { url: '/v1/password/reset', body: { token: 'A'.repeat(43), password: 'whatever 12345' }, limit: ACCOUNT_RATE_LIMITS.passwordReset.max },
  ];
  for (const route of routes) {
    for (let i = 0; i < route.limit; i++) {
      const res = await request({ url: route.url, body: route.body, headers: { 'x-test': String(i) } });
      if (res.status === 429) {
        t.fail(`${route.url} limited after ${i} requests`);
        break;
      }
    }
    const limited = await request({ url: route.url, body: route.body });
    t.equal(limited.status, 429, `${route.url} is limited after ${route.limit}`);
    t.equal(limited.body.code, 'rate_limited');
    t.ok(Number(limited.headers['retry-after']) > 0, 'Retry-After');
    // Another address has its own budget.
    const other = await app.inject({ method: 'POST', url: route.url, payload: route.body, remoteAddress: '10.9.8.7' });
    t.not(other.statusCode, 429, `${route.url}: per IP`);
  }
});
