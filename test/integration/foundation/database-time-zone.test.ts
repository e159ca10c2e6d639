import net, { type AddressInfo } from 'node:net';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { ADMIN_URL, withAdmin } from '../../../scripts/pg-admin.js';
import { buildApp } from '../../../src/app.js';
import { loadConfig } from '../../../src/config.js';
import { openDatabase } from '../../../src/db/client.js';
import { parseKeyring } from '../../../src/lib/secret-box.js';
import { TEST_ENV } from '../../helpers/app.js';
import { fakeClock } from '../../helpers/clock.js';
import { createTestDatabase } from '../../helpers/database.js';
import { createUser, currentTotp, signIn, wrongCode } from '../../helpers/factories.js';
import { api } from '../../helpers/http.js';
import { TEST_ENCRYPTION_KEYS } from '../../helpers/keys.js';

/**
 * A database whose TimeZone is not UTC (initdb copies the host's; a German server runs
 * Europe/Berlin). The raw pg paths and the Prisma paths write and check the same expiries; found by
 * session 19's review: before every connection was set to UTC (db/client.ts), @prisma/adapter-pg
 * moved each instant by the zone's offset, so a code lock ended an hour early for the fast paths, a
 * fresh session was dead and an idle-expired one refreshed.
 */
async function appInTimeZone(t: Test, timeZone: string, env: Record<string, string> = {}) {
  const { name, url } = await createTestDatabase(t);
  await withAdmin((a) => a.query(`ALTER DATABASE "${name}" SET timezone TO '${timeZone}'`));
  const config = loadConfig({ ...TEST_ENV, ...env, DATABASE_URL: url });
  const database = openDatabase(url, { max: 5, queryTimeoutMs: config.databaseQueryTimeoutMs });
  const clock = fakeClock(Date.now());
  const app = await buildApp({ config, database, keyring: parseKeyring(TEST_ENCRYPTION_KEYS), clock, logger: pino({ level: 'silent' }) });
  await app.ready();
  t.teardown(async () => {
    await app.close();
    await database.close();
  });
  return { app, clock, pool: database.pool, request: api(app) };
}

t.test('Europe/Berlin: the code lock holds for every path, as long as it should', async (t) => {
  const { app, clock, pool, request } = await appInTimeZone(t, 'Europe/Berlin');
  const { user, password, totpSecret } = await createUser(app.ctx.db, app, { email: 'mia@alpha.test' });
  const login = () => request({ url: '/v1/auth/login', body: { email: 'mia@alpha.test', password } });
  let last;
  for (let round = 0; round < 2; round++) {
    const { body } = await login();
    for (let i = 0; i < 5; i++) last = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: body.challengeToken, code: wrongCode(app, totpSecret!) } });
  }
  t.equal(last!.status, 423, 'the 10th wrong code locks code entry');
  const { rows } = await pool.query<{ mfa_locked_until: Date; zone: string }>('SELECT mfa_locked_until, current_setting($2) AS zone FROM users WHERE id = $1', [user.id, 'TimeZone']);
  t.equal(rows[0]!.zone, 'UTC', "the service's sessions run in UTC");
  t.equal(rows[0]!.mfa_locked_until.getTime(), clock.now().getTime() + 15 * 60_000, 'stored as the 15 minutes from now it is');
  const during = await login();
  t.equal(during.status, 423, 'the password step tells the lock');
  t.equal(during.body.code, 'mfa_locked');
  clock.advance(15 * 60);
  const after = await login();
  t.equal(after.status, 200, 'and lets the user on once it is over');
  const right = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: after.body.challengeToken, code: currentTotp(app, totpSecret!) } });
  t.equal(right.status, 200);
});

t.test('America/New_York: a fresh challenge is live on the general path; an idle-expired session does not refresh', async (t) => {
  const { app, clock, request } = await appInTimeZone(t, 'America/New_York', { REFRESH_IDLE_TTL_SECONDS: '300', ACCESS_TOKEN_TTL_SECONDS: '60' });
  const created = await createUser(app.ctx.db, app, { email: 'nora@alpha.test', recoveryCodes: 2 });
  const challenge = await request({ url: '/v1/auth/login', body: { email: 'nora@alpha.test', password: created.password } });
  const viaRecovery = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: challenge.body.challengeToken, recoveryCode: created.recoveryCodes![0] } });
  t.equal(viaRecovery.status, 200, 'the recovery-code login (general path) takes the challenge the fast path wrote');
  const signedIn = await signIn(app, created.user);
  clock.advance(301);
  const refreshed = await request({ url: '/v1/auth/refresh', body: { refreshToken: signedIn.refreshToken } });
  t.equal(refreshed.status, 401, 'idle for longer than REFRESH_IDLE_TTL_SECONDS: refused');
});

t.test('Europe/Berlin: a session the general path issued is alive for the fast paths', async (t) => {
  const { app, request } = await appInTimeZone(t, 'Europe/Berlin', { REFRESH_IDLE_TTL_SECONDS: '1800' });
  const created = await createUser(app.ctx.db, app, { email: 'bea@alpha.test', recoveryCodes: 2 });
  const challenge = await request({ url: '/v1/auth/login', body: { email: 'bea@alpha.test', password: created.password } });
  const signedIn = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: challenge.body.challengeToken, recoveryCode: created.recoveryCodes![0] } });
  t.equal(signedIn.status, 200);
  t.equal((await request({ url: '/v1/me', token: signedIn.body.accessToken })).status, 200);
  t.equal((await request({ url: '/v1/auth/refresh', body: { refreshToken: signedIn.body.refreshToken } })).status, 200);
});

/**
 * A proxy in front of the test server that does `onSet` with the connect step's SET (the only
 * simple-protocol 'Q' message: the service's statements use the extended protocol).
 */
async function proxyHoldingTheSet(t: Test, onSet: (forward: () => void, kill: () => void) => void) {
  const upstream = new URL(ADMIN_URL);
  const server = net.createServer((client) => {
    const up = net.connect(Number(upstream.port || 5432), upstream.hostname);
    client.on('error', () => undefined);
    up.on('error', () => undefined);
    client.on('data', (chunk) => {
      if (chunk[0] !== 0x51) return void up.write(chunk);
      onSet(
        () => up.write(chunk),
        () => {
          client.destroy();
          up.destroy();
        },
      );
    });
    up.on('data', (c) => client.write(c));
    client.on('close', () => up.destroy());
    up.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = new URL(ADMIN_URL);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as AddressInfo).port);
  return url.toString();
}

t.test('the connect step: a SET answered late or a connection lost during it fails that checkout at most, never the process', async (t) => {
  // Found by session 19's final review: with the SET inside the client's connect(), a socket dying
  // meanwhile (a connect timeout, PgBouncer queueing it, a terminated backend) emitted 'error' on a
  // client nobody listened to yet: the process exited.
  const late = openDatabase(await proxyHoldingTheSet(t, (forward) => setTimeout(forward, 800)), { connectTimeoutMs: 300 });
  t.teardown(() => late.close());
  const ok = await late.pool.query<{ zone: string }>("SELECT current_setting('TimeZone') AS zone");
  t.equal(ok.rows[0]!.zone, 'UTC', 'a SET answered after the connect timeout still completes (query_timeout bounds it)');

  const lost = openDatabase(await proxyHoldingTheSet(t, (_, kill) => setTimeout(kill, 100)), { connectTimeoutMs: 300 });
  t.teardown(() => lost.close());
  await t.rejects(lost.pool.query('SELECT 1'), 'the checkout fails');
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.equal(lost.pool.totalCount, 0, 'the client is dropped; the process is still here');
});
