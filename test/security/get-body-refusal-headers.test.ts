import t from 'tap';
import { buildTestApp } from '../helpers/app.js';

/**
 * A GET with a body is refused (input-guard.ts) with the headers every answer carries: the
 * security headers, no-store (security.md 21.1) and CORS, so that the frontend can read the
 * problem. The refusal first ran before security-headers.ts and had none (second read, session 24).
 */
const SHOP = 'https://shop.example.test';

t.test('a GET with a body is refused with the same security headers, no-store and CORS as any other 400', async (t) => {
  const { app } = await buildTestApp(t, { CORS_ORIGINS: SHOP });
  const base = { method: 'GET' as const, url: '/healthz', headers: { origin: SHOP, 'content-type': 'application/json' } };
  const other400 = await app.inject({ method: 'GET', url: '/healthz?isAdmin=true', headers: { origin: SHOP } });
  t.equal(other400.statusCode, 400, 'an undeclared query parameter: the 400 compared with');
  const refused = await app.inject({ ...base, payload: '{"isAdmin":true}' });
  t.equal(refused.statusCode, 400);
  for (const name of ['content-security-policy', 'x-content-type-options', 'strict-transport-security', 'x-frame-options', 'cache-control', 'access-control-allow-origin']) {
    t.equal(refused.headers[name], other400.headers[name], `${name}: ${String(other400.headers[name])}`);
  }
});
