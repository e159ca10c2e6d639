import { pino } from 'pino';
import t from 'tap';
import { buildApp } from '../../../src/app.js';
import { openDatabase } from '../../../src/db/client.js';
import { generateKey, parseKeyring } from '../../../src/lib/secret-box.js';
import { buildTestApp } from '../../helpers/app.js';

/**
 * Found by session 15's operator review: an instance started with the wrong ENCRYPTION_KEYS (the
 * right key id with other key material: a wrong secret mounted) answered /readyz 200 while every
 * login and refresh failed with 503, so a rolling deploy went "ready" everywhere and took logins
 * down. Now it is not ready until it has been able to sign; one that was, and loses the key later
 * (cli-signing-key.test.ts), stays ready for what it still serves.
 */
t.test('an instance that could never load a signing key is not ready (alive all the same); one that could is', async (t) => {
  const first = await buildTestApp(t);
  t.equal((await first.app.inject({ url: '/readyz' })).statusCode, 200, 'the instance with the right keys is ready');

  // A second instance on the same database, its ENCRYPTION_KEYS naming the same id with other bytes.
  const [keyId] = [...first.app.ctx.keyring.keys.keys()];
  const database = openDatabase(first.databaseUrl, { max: 2 });
  const wrong = await buildApp({
    config: first.config,
    database,
    keyring: parseKeyring(`${keyId}:${generateKey()}`),
    clock: first.clock,
    logger: pino({ level: 'silent' }),
  });
  await wrong.ready();
  t.teardown(async () => {
    await wrong.close();
    await database.close();
  });
  const notReady = await wrong.inject({ url: '/readyz' });
  t.equal(notReady.statusCode, 503, 'not ready: the balancer keeps sending traffic to the old instances');
  t.equal(notReady.json().code, 'service_unavailable');
  t.match(notReady.json().detail, /signing key/);
  t.equal(notReady.headers['retry-after'], '5');
  t.equal((await wrong.inject({ url: '/healthz' })).statusCode, 200, 'alive all the same: no restart loop');
  const refresh = await wrong.inject({ method: 'POST', url: '/v1/auth/refresh', payload: { refreshToken: 'r'.repeat(43) } });
  t.not(refresh.statusCode, 200);
});
