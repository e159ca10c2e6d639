import t from 'tap';
import { buildTestApp } from '../helpers/app.js';
import { createOrganization, createUser } from '../helpers/factories.js';

/**
 * Behind a load balancer the client's IP (rate limits, audit rows, session list) comes from
 * X-Forwarded-For. A balancer appends the address it saw to whatever the client sent, so only the
 * hops the trusted proxies added count: walking back from the socket, the client is the first
 * address that is not a trusted proxy. Here the balancer is 10.0.0.1 and the real client 203.0.113.7.
 */

const LB = '10.0.0.1';
const CLIENT = '203.0.113.7';
const login = (email: string, forwardedFor: string) => ({
  method: 'POST' as const,
  url: '/v1/auth/login',
  remoteAddress: LB,
  headers: { 'content-type': 'application/json', 'x-forwarded-for': forwardedFor },
  payload: JSON.stringify({ email, password: 'a wrong password 123' }),
});

t.test('a first X-Forwarded-For hop the client wrote does not reset its per-IP login limit', async (t) => {
  const { app } = await buildTestApp(t, { RATE_LIMIT_ENABLED: 'true', TRUST_PROXY: LB });
  const statuses: number[] = [];
  for (let i = 0; i < 35; i++) statuses.push((await app.inject(login(`nobody-${i}@example.test`, `198.51.100.${i}, ${CLIENT}`))).statusCode);
  // The login route allows 30 per minute and IP.
  t.same(statuses.slice(0, 30), Array(30).fill(401));
  t.same(statuses.slice(30), Array(5).fill(429), `the real client ${CLIENT} is rate-limited`);
});

t.test('the audited IP is the address the trusted proxy saw, not one the client wrote', async (t) => {
  const { app } = await buildTestApp(t, { TRUST_PROXY: '10.0.0.0/8' });
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app, { organizationId: org.id });
  t.equal((await app.inject(login(user.email, `6.6.6.6, ${CLIENT}`))).statusCode, 401);
  // Straight to the service (not through the balancer): the header is not believed at all.
  t.equal((await app.inject({ ...login(user.email, CLIENT), remoteAddress: '198.51.100.9' })).statusCode, 401);
  const events = await app.ctx.db.auditEvent.findMany({ where: { subjectUserId: user.id, type: 'login.password_failed' }, orderBy: { createdAt: 'asc' } });
  t.same(events.map((e) => e.ip), [CLIENT, '198.51.100.9']);
});
