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
    { url: '/v1/password/reset/inspect', body: { token: 'A'.repeat(43) }, limit: ACCOUNT_RATE_LIMITS.passwordResetInspect.max },
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

t.test('"forgot password" and "reset": ten requests per address, over 15 minutes and one minute; the 11th says how long to wait (mutation review, session 22)', async (t) => {
  const { app } = await buildTestApp(t, { RATE_LIMIT_ENABLED: 'true' });
  const routes = [
    { url: '/v1/password/forgot', body: { email: 'a@example.test' }, max: 10, windowSeconds: 15 * 60 },
    { url: '/v1/password/reset', body: { token: 'A'.repeat(43), password: 'whatever 12345' }, max: 10, windowSeconds: 60 },
  ];
  for (const route of routes) {
    const statuses: number[] = [];
    for (let i = 0; i < route.max; i++) {
      statuses.push((await app.inject({ method: 'POST', url: route.url, payload: route.body, remoteAddress: '198.51.100.23' })).statusCode);
    }
    t.notOk(statuses.includes(429), `${route.url}: ${route.max} requests pass`);
    const over = await app.inject({ method: 'POST', url: route.url, payload: route.body, remoteAddress: '198.51.100.23' });
    t.equal(over.statusCode, 429, `${route.url}: request ${route.max + 1} is refused`);
    const retryAfter = Number(over.headers['retry-after']);
    t.ok(retryAfter > route.windowSeconds - 60 && retryAfter <= route.windowSeconds, `${route.url}: Retry-After ${retryAfter} s is the rest of a ${route.windowSeconds}-s window`);
  }
});

t.test('IPv6 clients are counted per /64: other addresses of the same /64 share the budget, another /64 has its own (mutation review, session 22)', async (t) => {
  const { app } = await buildTestApp(t, { RATE_LIMIT_ENABLED: 'true' });
  const forgot = (remoteAddress: string) =>
    app.inject({ method: 'POST', url: '/v1/password/forgot', payload: { email: 'a@example.test' }, remoteAddress });
  const statuses: number[] = [];
  // One host of a /64 can take any of its 2^64 addresses: each request from a fresh one.
  for (let i = 1; i <= 10; i++) statuses.push((await forgot(`2001:db8:1:2::${i.toString(16)}`)).statusCode);
  t.same(statuses, Array(10).fill(202));
  const sameNetwork = await forgot('2001:db8:1:2:ffff:ffff:ffff:fffe');
  t.equal(sameNetwork.statusCode, 429, 'another address of the same /64 is refused');
  t.ok(Number(sameNetwork.headers['retry-after']) >= 1, 'with Retry-After');
  t.equal((await forgot('2001:db8:1:3::1')).statusCode, 202, 'the next /64 has its own budget');
});
