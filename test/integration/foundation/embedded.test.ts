import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildApp } from '../../../src/app.js';
import { loadConfig } from '../../../src/config.js';
import { openDatabase } from '../../../src/db/client.js';
import { startEmbeddedPostgres } from '../../../src/db/embedded.js';
import { migrate } from '../../../src/db/migrate.js';
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
  t.equal(embedded.shared, false);
  t.match(embedded.url, /^postgresql:\/\/postgres@127\.0\.0\.1:\d+\//);

  const first = await migrate(embedded.url, quiet);
  t.ok(first.applied.length > 0, 'migrations apply on PGlite');

  const second = await startEmbeddedPostgres(dataDir);
  t.equal(second.shared, true, 'a second process (the CLI) connects to the running server instead of opening the folder');
  t.equal(second.url, embedded.url);

  const database = openDatabase(embedded.url, { max: 1, connectTimeoutMs: 15_000 });
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
});
