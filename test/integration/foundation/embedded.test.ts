import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import t from 'tap';
import { buildApp } from '../../../src/app.js';
import { loadConfig } from '../../../src/config.js';
import { openDatabase } from '../../../src/db/client.js';
import { startEmbeddedPostgres } from '../../../src/db/embedded.js';
import { migrate } from '../../../src/db/migrate.js';
import { poolSql } from '../../../src/db/sql.js';
import { generateKey, parseKeyring } from '../../../src/lib/secret-box.js';
import { api } from '../../helpers/http.js';
import { createUser, currentTotp } from '../../helpers/factories.js';

const quiet = { info: () => undefined, warn: () => undefined };

t.test('the embedded development database serves the app over the pg driver', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'webshop-auth-embedded-'));
  const embedded = await startEmbeddedPostgres(dataDir);
  t.teardown(async () => {
    await embedded.stop();
    await rm(dataDir, { recursive: true, force: true });
  });
  t.equal(embedded.shared, null, 'its own');
  t.match(embedded.url, /^postgresql:\/\/postgres@127\.0\.0\.1:\d+\//);

  const first = await migrate(embedded.url, quiet);
  t.ok(first.applied.length > 0, 'migrations apply on PGlite');

  const second = await startEmbeddedPostgres(dataDir);
  t.same(second.shared, { pid: process.pid }, 'a second process (the CLI) connects to the running server instead of opening the folder');
  t.equal(second.url, embedded.url);

  // As src/runtime.ts opens it.
  const database = openDatabase(embedded.url, { max: 1, connectTimeoutMs: 15_000, preparedStatements: false });
  const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent', DATA_DIR: dataDir, MAIL_WORKER_ENABLED: 'false' });
  const app = await buildApp({ config, database, keyring: parseKeyring(`e:${generateKey()}`) });
  t.teardown(async () => {
    await app.close();
    await database.close();
  });
  await app.ready();
  const request = api(app);
  // Readiness is polled, as a load balancer does: on a loaded machine PGlite (WASM) can take a
  // while to answer its first queries. It must become ready, and stay so.
  let ready = await request({ url: '/readyz' });
  for (let i = 0; i < 30 && ready.status !== 200; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    ready = await request({ url: '/readyz' });
  }
  t.equal(ready.status, 200, 'ready');
  const jwks = await request({ url: '/.well-known/jwks.json' });
  t.equal(jwks.status, 200);
  t.equal(jwks.body.keys.length, 1, 'a signing key was created in the embedded database');
  const login = await request({ url: '/v1/auth/login', body: { email: 'nobody@example.com', password: 'not the right password' } });
  t.equal(login.status, 401);
  t.equal(login.body.code, 'invalid_credentials');

  // The raw SQL hot paths (one-statement password success, the code step's own transaction) on PGlite too.
  const { user, password, totpSecret } = await createUser(database.db, app);
  const challenge = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
  t.equal(challenge.status, 200);
  t.equal(challenge.body.next, 'mfa');
  const tokens = await request({
    url: '/v1/auth/login/mfa',
    body: { challengeToken: challenge.body.challengeToken, code: currentTotp(app, totpSecret!) },
  });
  t.equal(tokens.status, 200);
  const me = await request({ url: '/v1/me', token: tokens.body.accessToken });
  t.equal(me.status, 200);
  t.equal(me.body.id, user.id);

  // Password steps while an earlier challenge is still unused (an abandoned code step, a second
  // tab): each replaces it. PGlite serves every connection in one session, so a connection the pool
  // dropped after an error used to leave its prepared statements behind, and every later one failed
  // to prepare them again: from the third login on, every login and /v1/me answered 500.
  for (let i = 1; i <= 4; i++) {
    const again = await request({ url: '/v1/auth/login', body: { email: user.email, password } });
    t.equal(again.status, 200, `password step ${i} with a challenge pending`);
  }
  t.equal(await database.db.flowToken.count({ where: { userId: user.id, purpose: 'LOGIN_CHALLENGE', state: 'PENDING' } }), 1, 'one live challenge');
  t.equal((await request({ url: '/v1/me', token: tokens.body.accessToken })).status, 200, '/v1/me still answers');

  // Whatever makes a hot-path statement fail, the pool drops that connection; the same statement
  // must still run on the next one.
  const sql = poolSql(database.pool);
  await t.rejects(sql('SELECT 1 / $1::int AS x', [0]), /division by zero/);
  t.same(await sql('SELECT 1 / $1::int AS x', [1]), [{ x: 1 }], 'the same statement on the next connection');

  // A pg.Query object (streaming rows) is submitted as it is, not turned into a plain config.
  const client = await database.pool.connect();
  const query = new pg.Query({ text: 'SELECT generate_series(1, 3) AS n' });
  const rows: unknown[] = [];
  query.on('row', (row: unknown) => rows.push(row));
  const ended = new Promise((resolve, reject) => query.on('end', resolve).on('error', reject));
  t.equal(client.query(query), query, 'the same Query object comes back');
  await ended;
  client.release();
  t.same(rows, [{ n: 1 }, { n: 2 }, { n: 3 }]);
});
