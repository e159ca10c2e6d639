import t from 'tap';
import { buildTestApp } from '../helpers/app.js';

const SHOP = 'https://shop.example.test';

/**
 * product.md: "Errors are RFC 9457 application/problem+json with a stable machine-readable code."
 * @fastify/cors (strictPreflight) answered an OPTIONS from an allowed origin without
 * Access-Control-Request-Method itself: 400 text/plain "Invalid Preflight Request".
 */
t.test('an incomplete preflight from an allowed origin is a problem+json 4xx', async (t) => {
  const { app } = await buildTestApp(t, { CORS_ORIGINS: SHOP });
  const res = await app.inject({ method: 'OPTIONS', url: '/v1/auth/login', headers: { origin: SHOP } });
  t.ok(res.statusCode >= 400 && res.statusCode < 500, `4xx (${res.statusCode})`);
  t.match(String(res.headers['content-type']), /^application\/problem\+json/, `problem+json (got ${res.headers['content-type']}: ${res.body})`);
  t.equal(JSON.parse(res.body).code, 'validation_failed', 'with a stable code');
  t.match(String(res.headers['content-security-policy']), /default-src 'none'/, 'and the security headers');

  const complete = await app.inject({ method: 'OPTIONS', url: '/v1/auth/login', headers: { origin: SHOP, 'access-control-request-method': 'POST' } });
  t.equal(complete.statusCode, 204, 'a complete preflight is still answered');
});
