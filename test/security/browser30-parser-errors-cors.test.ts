import { once } from 'node:events';
import { connect, type AddressInfo } from 'node:net';
import t from 'tap';
import { buildTestApp } from '../helpers/app.js';

const SHOP = 'https://shop.example.test';

/**
 * browser30 (real Chromium against CORS_ORIGINS): a fetch() from the shop frontend whose headers
 * exceed 16 KiB got the documented 431 problem+json (declared on every operation, docs/security.md)
 * without Access-Control-Allow-Origin, so the browser refused it ("TypeError: Failed to fetch") and
 * the frontend could read neither the status, the code nor X-Request-Id. Router errors carry CORS
 * "like every other answer" (review-error-format.test.ts); the HTTP parser's answers do not.
 */
t.test('a 431 from the HTTP parser is readable by the allowed frontend (CORS), not by others', async (t) => {
  const { app } = await buildTestApp(t, { CORS_ORIGINS: SHOP });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  const raw = async (origin: string, space = ' ') => {
    const socket = connect(port, '127.0.0.1');
    await once(socket, 'connect');
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    // Origin before the oversized Authorization (readable by the parser before it overflows).
    socket.write(`GET /v1/me HTTP/1.1\r\nHost: x\r\nOrigin:${space}${origin}${space}\r\nAuthorization: Bearer ${'a'.repeat(20_000)}\r\n\r\n`);
    await once(socket, 'close');
    const [head = ''] = received.split('\r\n\r\n');
    const [statusLine = '', ...lines] = head.split('\r\n');
    const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
    return { statusLine, headers };
  };
  const res = await raw(SHOP);
  t.match(res.statusLine, /^HTTP\/1\.1 431 /);
  t.equal(res.headers['access-control-allow-origin'], SHOP, 'the frontend may read the error');
  t.match(String(res.headers['access-control-expose-headers']), /X-Request-Id/, 'and its request id');
  t.match(String(res.headers.vary), /Origin/, 'Vary: Origin');
  const spaced = await raw(SHOP, ' \t ');
  t.equal(spaced.headers['access-control-allow-origin'], SHOP, 'spaces around the value are no part of it');
  const foreign = await raw('https://evil.example');
  t.match(foreign.statusLine, /^HTTP\/1\.1 431 /);
  t.notOk(foreign.headers['access-control-allow-origin'], 'a foreign origin may not read it');
});
