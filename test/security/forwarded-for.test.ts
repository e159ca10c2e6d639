import t from 'tap';
import { withoutPorts } from '../../src/http/forwarded-for.js';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createUser } from '../helpers/factories.js';

/**
 * Behind a proxy that writes the client's port into X-Forwarded-For (TRUST_PROXY set): the port is
 * no part of the client's IP — not of its rate-limit budget, nor of what audit rows record.
 * (app.inject comes from 127.0.0.1: the trusted proxy here.)
 */

t.test('withoutPorts drops ports of IPv4 and bracketed IPv6 entries and leaves everything else as it is', async (t) => {
  t.equal(withoutPorts('203.0.113.7:40000'), '203.0.113.7');
  t.equal(withoutPorts('[2001:db8::1]:443, 10.0.0.2:8080'), '2001:db8::1, 10.0.0.2');
  t.equal(withoutPorts('2001:db8::1,198.51.100.9'), '2001:db8::1, 198.51.100.9', 'an IPv6 address is no address with a port');
  t.equal(withoutPorts('garbage:12, 999.1.1.1:80, [nonsense]:1'), 'garbage:12, 999.1.1.1:80, [nonsense]:1', 'not an IP with a port: unchanged');
});

t.test('each source port is not a new budget; audit rows record the address without the port', async (t) => {
  const { app } = await buildTestApp(t, { RATE_LIMIT_ENABLED: 'true', TRUST_PROXY: 'loopback' });
  const request = api(app);
  const login = (i: number, forwarded = `203.0.113.7:${40000 + i}`) =>
    request({ url: '/v1/auth/login', headers: { 'x-forwarded-for': forwarded }, body: { email: `nobody${i}@example.test`, password: 'a wrong password 1' } });
  const statuses: number[] = [];
  for (let i = 0; i < 31; i++) statuses.push((await login(i)).status);
  t.same(statuses.slice(0, 30), Array(30).fill(401));
  t.equal(statuses[30], 429, 'the 31st login from one address is limited, whatever its source port');
  const [row] = await app.ctx.db.auditEvent.findMany({ where: { type: 'login.password_failed' }, take: 1 });
  t.equal(row?.ip, '203.0.113.7');

  t.equal((await login(99, '[2001:db8::7]:5555')).status, 401, 'another client');
  const v6 = await app.ctx.db.auditEvent.findFirst({ where: { type: 'login.password_failed', ip: { startsWith: '2001' } } });
  t.equal(v6?.ip, '2001:db8::7');
});

t.test('control characters of a User-Agent are not stored', async (t) => {
  const { app } = await buildTestApp(t);
  await api(app)({ url: '/v1/auth/login', headers: { 'user-agent': 'Mozilla\tEvil\u009b31m' }, body: { email: 'ua@example.test', password: 'a wrong password 1' } });
  const row = await app.ctx.db.auditEvent.findFirstOrThrow({ where: { type: 'login.password_failed' } });
  t.equal(row.userAgent, 'Mozilla Evil 31m');
});

t.test('a trusted proxy passing on an X-Forwarded-For entry that is no IP: the socket address is recorded, not the text (mutation review, session 20)', async (t) => {
  const { app } = await buildTestApp(t, { TRUST_PROXY: 'loopback' });
  const { user } = await createUser(app.ctx.db, app);
  for (const forwarded of ['unknown', '<img src=x onerror=alert(1)>, 127.0.0.1', 'support-desk-laptop']) {
    const res = await api(app)({ url: '/v1/auth/login', headers: { 'x-forwarded-for': forwarded }, body: { email: user.email, password: 'a wrong password 1' } });
    t.equal(res.status, 401, forwarded);
  }
  const rows = await app.ctx.db.auditEvent.findMany({ where: { subjectUserId: user.id, type: 'login.password_failed' } });
  t.same(rows.map((r) => r.ip), ['127.0.0.1', '127.0.0.1', '127.0.0.1'], 'never a value the client chose');
});
