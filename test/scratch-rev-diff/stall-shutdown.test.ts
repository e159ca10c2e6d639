import { once } from 'node:events';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { REQUEST_TIMEOUT_MS } from '../../src/app.js';
import { buildTestApp } from '../helpers/app.js';

const GRACE_MS = 8_000; // close-with-grace delay in src/server.ts

t.test('a request whose body is stalling when the shutdown begins does not hold the drain past the grace', async (t) => {
  const { app } = await buildTestApp(t);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as net.AddressInfo;
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
  socket.write('POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"email":');
  await sleep(500);
  const closing = Date.now();
  const closed = await Promise.race([app.close().then(() => 'closed'), sleep(REQUEST_TIMEOUT_MS + 2_000).then(() => 'still draining')]);
  socket.destroy(); // let the test end either way
  t.equal(closed, 'closed', `drain after ${Date.now() - closing} ms (grace ${GRACE_MS} ms; received: ${JSON.stringify(received.slice(0, 20))})`);
  t.match(received, /^HTTP\/1\.1 408 /, 'the stalled request was answered 408');
});
