import net from 'node:net';
import t from 'tap';
import { createTestDatabase } from '../../helpers/database.js';
import { spawnServer, watchServer } from '../../helpers/server-process.js';

/**
 * One client holding more idle kept-alive connections than the process has file descriptors (each
 * after one GET /healthz, which no limit counts) made the instance exit: @fastify/under-pressure's
 * 1-s timer calls process.memoryUsage(), which throws EMFILE once every descriptor is taken, and
 * close-with-grace took that for a fatal error (DoS review, session 32). The listener now takes at
 * most MAX_CONNECTIONS connections (default: below the open-file limit) and refuses the rest.
 */
const FILE_LIMIT = 256;

function holdConnections(port: number, count: number): net.Socket[] {
  return Array.from({ length: count }, () => {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    return socket;
  });
}

t.test('idle kept-alive connections beyond the open-file limit are refused; the instance stays up and answers once they go', async (t) => {
  const { url } = await createTestDatabase(t);
  const child = spawnServer(t, { DATABASE_URL: url, HOST: '127.0.0.1' }, { launcher: ['prlimit', `--nofile=${FILE_LIMIT}:${FILE_LIMIT}`] });
  const server = watchServer(child);
  const base = await server.listening;
  if (!base) return t.fail(`the server did not start: ${server.output()}`);
  t.match(server.output(), /"maxConnections":128,[^\n]*"msg":"connection limit"/, 'the limit leaves a quarter of the descriptors (at least 128) to the rest');

  let exited = false;
  void server.closed.then(() => (exited = true));
  const sockets = holdConnections(Number(new URL(base).port), FILE_LIMIT + 44);
  t.teardown(() => sockets.forEach((s) => s.destroy()));
  // under-pressure samples every second: a few samples with every connection slot taken.
  await new Promise((resolve) => setTimeout(resolve, 3500));
  t.notOk(exited, 'the instance is still running', { output: exited ? server.output().slice(-2000) : undefined });

  sockets.forEach((s) => s.destroy());
  await new Promise((resolve) => setTimeout(resolve, 500));
  t.equal((await fetch(`${base}/healthz`)).status, 200, 'it answers again once the client lets go');
  const metrics = await (await fetch(`${base}/metrics`)).text();
  const refused = Number(/^webshop_auth_connections_refused_total (\d+)/m.exec(metrics)?.[1]);
  t.ok(refused >= FILE_LIMIT + 44 - 128, `the refused connections are counted (${refused})`);
  t.equal(server.output().split('connection limit reached').length - 1, 1, 'the refusals are logged once a minute, not once each');
});

t.test('MAX_CONNECTIONS sets the limit', async (t) => {
  const { url } = await createTestDatabase(t);
  const server = watchServer(spawnServer(t, { DATABASE_URL: url, HOST: '127.0.0.1', MAX_CONNECTIONS: '3' }));
  const base = await server.listening;
  if (!base) return t.fail(`the server did not start: ${server.output()}`);
  t.match(server.output(), /"maxConnections":3,[^\n]*"msg":"connection limit"/);
  const sockets = holdConnections(Number(new URL(base).port), 3);
  t.teardown(() => sockets.forEach((s) => s.destroy()));
  await new Promise((resolve) => setTimeout(resolve, 300));
  const fourth = await fetch(`${base}/healthz`).then((r) => r.status, (err: Error) => err.name);
  t.equal(fourth, 'TypeError', 'a fourth connection is closed at once (fetch fails)');
  sockets.forEach((s) => s.destroy());
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.equal((await fetch(`${base}/healthz`)).status, 200);
});

t.test('a MAX_CONNECTIONS that leaves too few descriptors for the rest is warned about at start', async (t) => {
  const { url } = await createTestDatabase(t);
  const launcher = ['prlimit', `--nofile=${FILE_LIMIT}:${FILE_LIMIT}`];
  const tooMany = watchServer(spawnServer(t, { DATABASE_URL: url, HOST: '127.0.0.1', MAX_CONNECTIONS: '250' }, { launcher }));
  t.ok(await tooMany.listening, 'it starts');
  t.match(tooMany.output(), /"maxConnections":250,"openFileLimit":256,[^\n]*MAX_CONNECTIONS leaves fewer/);
  const fine = watchServer(spawnServer(t, { DATABASE_URL: url, HOST: '127.0.0.1', MAX_CONNECTIONS: '100' }, { launcher }));
  t.ok(await fine.listening);
  t.notMatch(fine.output(), /MAX_CONNECTIONS leaves fewer/, 'not for one within the default');
});
