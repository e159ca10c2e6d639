import { once } from 'node:events';
import net from 'node:net';
import t, { type Test } from 'tap';
import { z } from 'zod';
import { REQUEST_TIMEOUT_MS } from '../../../src/app.js';
import { SHUTDOWN, shutDown } from '../../../src/http/shutdown.js';
import { buildTestApp } from '../../helpers/app.js';
import { createTestDatabase } from '../../helpers/database.js';
import { readyzAfterStart, spawnServer, watchServer } from '../../helpers/server-process.js';

/**
 * Graceful shutdown (close-with-grace calls app.close() on SIGTERM): a request that arrives on a
 * kept-alive connection while the instance drains is answered like any other, with
 * `Connection: close` — not with Fastify's bare 503, which is no problem+json — and /readyz says
 * 503 problem+json from the start of the drain, so a balancer stops sending new work.
 */

type Answer = { status: number; headers: Record<string, string>; body: string };

/** The answers written on one connection, in order (Content-Length bodies; what the app writes). */
function answersOf(raw: string): Answer[] {
  const answers: Answer[] = [];
  let rest = raw;
  while (rest.startsWith('HTTP/1.1 ')) {
    const end = rest.indexOf('\r\n\r\n');
    const [statusLine, ...lines] = rest.slice(0, end).split('\r\n');
    const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
    const length = Number(headers['content-length'] ?? 0);
    const bodyStart = end + 4;
    answers.push({ status: Number(statusLine!.split(' ')[1]), headers, body: Buffer.from(rest.slice(bodyStart)).subarray(0, length).toString() });
    rest = Buffer.from(rest.slice(bodyStart)).subarray(length).toString();
  }
  return answers;
}

/** A slow request in flight, app.close() begun, then `pipelined` sent on the same connection; the gate opens and everything is read. */
async function duringDrain(t: Test, pipelined: string): Promise<Answer[]> {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  let entered!: () => void;
  const inHandler = new Promise<void>((resolve) => (entered = resolve));
  const { app } = await buildTestApp(t, {}, {
    beforeReady: (app) =>
      app.register(async (scope) => {
        scope.get(
          '/test/slow',
          { config: { access: 'public' }, schema: { operationId: 'testSlow', response: { 200: z.object({ slow: z.string() }) } } },
          async () => {
            entered();
            await gate;
            return { slow: 'done' };
          },
        );
      }),
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const socket = net.connect((app.server.address() as net.AddressInfo).port, '127.0.0.1');
  let raw = '';
  socket.on('data', (chunk: Buffer) => (raw += chunk.toString('latin1')));
  await once(socket, 'connect');
  socket.write('GET /test/slow HTTP/1.1\r\nHost: auth.example.test\r\n\r\n');
  await inHandler;
  const closing = app.close();
  await new Promise((resolve) => setImmediate(resolve));
  socket.write(pipelined);
  await new Promise((resolve) => setTimeout(resolve, 50));
  open();
  await once(socket, 'close');
  await closing;
  return answersOf(raw);
}

t.test('/readyz during the drain: 503 problem+json with Retry-After, the in-flight request finishes', async (t) => {
  const [slow, ready] = await duringDrain(t, 'GET /readyz HTTP/1.1\r\nHost: auth.example.test\r\n\r\n');
  t.equal(slow?.status, 200, 'the request in flight is finished');
  t.equal(ready?.status, 503);
  t.match(ready?.headers['content-type'], /^application\/problem\+json/);
  t.equal(JSON.parse(ready!.body).code, 'service_unavailable');
  t.match(JSON.parse(ready!.body).detail, 'shutting down');
  t.equal(ready?.headers['retry-after'], '5');
  t.equal(ready?.headers.connection, 'close');
  t.ok(ready?.headers['x-request-id'], 'an answer of the app, with its headers');
});

t.test('any other request on a kept-alive connection during the drain is answered as usual, then the connection closes', async (t) => {
  const body = JSON.stringify({ email: 'nobody@example.test', password: 'whatever whatever' });
  const [slow, login] = await duringDrain(
    t,
    `POST /v1/auth/login HTTP/1.1\r\nHost: auth.example.test\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
  );
  t.equal(slow?.status, 200);
  t.equal(login?.status, 401, 'the login step ran');
  t.match(login?.headers['content-type'], /^application\/problem\+json/);
  t.equal(JSON.parse(login!.body).code, 'invalid_credentials');
  t.equal(login?.headers.connection, 'close');
});

/** A listening app and a connection that has sent a login's headers and the start of a 200-byte body, then stalls. */
async function stalledLogin(t: Test) {
  const { app } = await buildTestApp(t);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as net.AddressInfo;
  const socket = net.connect(port, '127.0.0.1');
  await once(socket, 'connect');
  const answer = { received: '' };
  socket.on('data', (chunk: Buffer) => (answer.received += chunk.toString()));
  const closed = once(socket, 'close');
  socket.write('POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"email":');
  return { app, answer, closed };
}

t.test('a request whose body stalls is answered 408 and disconnected within the request timeout, and does not hold up a shutdown', async (t) => {
  const started = Date.now();
  const { app, answer, closed } = await stalledLogin(t);
  await closed;
  const took = Date.now() - started;
  t.ok(took < REQUEST_TIMEOUT_MS + 3000, `disconnected after ${took} ms`);
  t.ok(took >= REQUEST_TIMEOUT_MS - 1000, 'not before the timeout');
  t.match(answer.received, /^HTTP\/1\.1 408 /, 'told 408 Request Timeout');
  t.match(answer.received, /\r\ncontent-type: application\/problem\+json\r\n[\s\S]*"code":"request_timeout"/, 'as problem+json with its code');
  const closing = Date.now();
  await app.close();
  t.ok(Date.now() - closing < 2000, 'nothing left to drain');
});

t.test('a request whose body is still arriving when the shutdown begins is cut after the drain limit, inside the grace period', async (t) => {
  const { app, closed } = await stalledLogin(t);
  await new Promise((resolve) => setTimeout(resolve, 300));
  const started = Date.now();
  await app.close(); // Node no longer enforces the request timeout from here on
  const took = Date.now() - started;
  await closed;
  t.ok(took >= SHUTDOWN.DRAIN_LIMIT_MS - 500 && took < SHUTDOWN.DRAIN_LIMIT_MS + 1500, `the drain ended after ${took} ms, inside close-with-grace's 8 s`);
});

t.test('SIGTERM to the server: logins in flight still finish with their own answer before the database closes (mutation review, session 21)', async (t) => {
  const { url } = await createTestDatabase(t);
  // Slow hashes on one slot: the logins are still hashing, or waiting to, when the signal comes.
  // Two hashes of ≈ 0.1–1 s one after another: in flight at the signal, done well inside the 6-s drain
  // limit even on a busy machine (at the event loop's priority, so other processes cannot starve them).
  const server = spawnServer(t, {
    DATABASE_URL: url, RATE_LIMIT_ENABLED: 'false', HASH_MAX_CONCURRENT: '1', HASH_THREAD_NICE: '0', ARGON2_MEMORY_KIB: '65536', ARGON2_TIME_COST: '1',
  });
  const watched = watchServer(server);
  const base = await watched.listening;
  t.ok(base, 'the server started');
  t.equal(await readyzAfterStart(base!), 200, 'ready before the logins');
  const logins = Array.from({ length: 2 }, (_, i) =>
    fetch(`${base}/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: `nobody-${i}@example.test`, password: 'not the right password' }),
    }).then(async (res) => ({ status: res.status, code: ((await res.json()) as { code?: string }).code })),
  );
  // Every login has reached the server (answered, hashing or waiting for the slot) before the signal.
  const received = async () => {
    const body = await (await fetch(`${base}/metrics`)).text();
    const series = (name: string) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(body)?.[1] ?? 0);
    return series('webshop_auth_hash_queue_running') + series('webshop_auth_hash_queue_waiting') +
      series('webshop_auth_http_request_duration_seconds_count\\{method="POST",route="/v1/auth/login",status_code="401"\\}');
  };
  let seen = 0;
  for (let i = 0; i < 500 && (seen = await received()) < logins.length; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(seen, logins.length, 'every login reached the server before the signal');
  server.kill('SIGTERM');
  const answers = await Promise.all(logins);
  t.same(answers, answers.map(() => ({ status: 401, code: 'invalid_credentials' })), 'each login answered as without the signal');
  t.equal(await watched.closed, 0, 'a clean exit');
});

/** A kept-alive connection that has had one answer and is now idle, as a balancer's probe connection between probes. */
async function idleConnection(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  const state = { raw: '', closed: false };
  socket.on('data', (chunk: Buffer) => (state.raw += chunk.toString('latin1')));
  socket.on('close', () => (state.closed = true));
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  socket.write('GET /healthz HTTP/1.1\r\nHost: auth.example.test\r\n\r\n');
  while (answersOf(state.raw).length < 1) await new Promise((resolve) => setTimeout(resolve, 10));
  return { socket, state };
}

t.test('SIGTERM (shutDown): for the ready delay the instance still listens, /readyz on an idle kept-alive connection says 503, other requests are served (multi-instance review, session 24)', async (t) => {
  const { app } = await buildTestApp(t);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as net.AddressInfo;
  const probe = await idleConnection(port);
  const client = await idleConnection(port);
  await new Promise((resolve) => setTimeout(resolve, 100));

  const started = Date.now();
  const shuttingDown = shutDown(app);
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.notOk(probe.state.closed, 'the idle probe connection is still open');
  probe.socket.write('GET /readyz HTTP/1.1\r\nHost: auth.example.test\r\n\r\n');
  const body = JSON.stringify({ email: 'nobody@example.test', password: 'whatever whatever' });
  client.socket.write(`POST /v1/auth/login HTTP/1.1\r\nHost: auth.example.test\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
  const fresh = await fetch(`http://127.0.0.1:${port}/healthz`);
  t.equal(fresh.status, 200, 'a new connection is still accepted during the ready delay');
  t.equal(fresh.headers.get('connection'), 'close');

  await shuttingDown;
  const took = Date.now() - started;
  t.ok(took >= SHUTDOWN.READY_DELAY_MS - 100, `the listener closed after the ready delay (${took} ms)`);
  const [, ready] = answersOf(probe.state.raw);
  t.equal(ready?.status, 503, '/readyz told the balancer');
  t.equal(JSON.parse(ready!.body).code, 'service_unavailable');
  t.equal(ready?.headers.connection, 'close');
  const [, login] = answersOf(client.state.raw);
  t.equal(login?.status, 401, 'the login was served as usual');
  t.equal(JSON.parse(login!.body).code, 'invalid_credentials');
  t.equal(login?.headers.connection, 'close', 'and its connection ends after the answer');
  await until(() => probe.state.closed && client.state.closed);
});

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
}
