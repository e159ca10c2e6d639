import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t, { type Test } from 'tap';
import { totpCode } from '../../../src/lib/totp.js';
import { cli } from '../../helpers/cli.js';
import { readyzAfterStart, spawnServer, watchServer } from '../../helpers/server-process.js';

/**
 * The README's first command on a fresh machine: `npm start` with nothing configured — no
 * DATABASE_URL, no ENCRYPTION_KEYS, no NODE_ENV. Until now only its parts were tested (the embedded
 * database in foundation/embedded.test.ts, through buildApp); here the real server process, with the
 * README's next step (the CLI's first support user) and a restart on the same data folder.
 */

type Running = { base: string; output: () => string; stop: () => Promise<void> };

/** The environment of `npm start` with nothing configured (MIGRATE_ON_START=false as well). */
const unconfigured = (dataDir: string) => ({
  NODE_ENV: undefined,
  ENCRYPTION_KEYS: undefined,
  APP_BASE_URL: undefined,
  MAIL_WORKER_ENABLED: undefined,
  RETENTION_SWEEP_INTERVAL_SECONDS: undefined,
  DATA_DIR: dataDir,
  // The embedded database has no other schema owner: it is migrated whatever this says.
  MIGRATE_ON_START: 'false',
});

/** The server as `npm start` runs it with nothing configured; resolves once /readyz is 200. */
async function startUnconfigured(t: Test, dataDir: string): Promise<Running> {
  const child = spawnServer(t, unconfigured(dataDir));
  const server = watchServer(child);
  const base = await server.listening;
  if (!base) throw new Error(`the server ended: ${server.output()}`);
  // PGlite (WASM) takes a while on a loaded machine: up to 30 s to be ready.
  const ready = await readyzAfterStart(base, 150);
  if (ready !== 200) throw new Error(`/readyz answered ${ready}: ${server.output()}`);
  return {
    base,
    output: server.output,
    async stop() {
      child.kill('SIGTERM');
      await server.closed;
    },
  };
}

async function post(base: string, path: string, body: unknown) {
  const res = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

t.test("`npm start` with nothing configured: embedded database and development keys, loudly; the README's first support user signs in, also after a restart", async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'webshop-auth-unconfigured-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));

  const first = await startUnconfigured(t, dataDir);
  t.match(first.output(), /DATABASE_URL is not set: using the EMBEDDED PostgreSQL .*DEVELOPMENT ONLY/, 'says loudly that the database is for development only');
  t.match(first.output(), /ENCRYPTION_KEYS is not set: using development keys from .*dev-secrets\.json/, 'and that the keys are development keys');
  t.match(first.output(), /migration\(s\) applied now/, 'the embedded database was migrated although MIGRATE_ON_START=false');
  const jwks = (await (await fetch(`${first.base}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
  t.equal(jwks.keys.length, 1);

  // README: `npm run cli -- create-support-user …` beside the running server, on its database.
  const created = await cli(['create-support-user', '--email', 'first@example.test', '--name', 'First Support'], { DATA_DIR: dataDir, NODE_ENV: 'development' });
  t.equal(created.code, 0, created.stderr);
  const link = new URL(created.stdout.trim());
  t.equal(`${link.origin}${link.pathname}`, 'http://localhost:5173/activate', "the link leads to the frontend's development server (the default APP_BASE_URL)");
  // The CLI sealed the mail with the development keys; the server opens it and, without SMTP_URL, logs it.
  for (let i = 0; i < 150 && !first.output().includes('"to":"first@example.test"'); i++) await sleep(200);
  t.match(first.output(), /"to":"first@example\.test".*mail not sent \(SMTP_URL is not set\): written to the log/, 'the activation mail went to the log');

  const password = 'Correct horse battery staple 2026';
  const activated = await post(first.base, '/v1/activation', { token: link.searchParams.get('token'), password });
  t.equal(activated.status, 200, JSON.stringify(activated.body));
  t.equal(activated.body.next, 'mfa_enrollment');
  const challengeToken = activated.body.challengeToken;
  const enrolment = await post(first.base, '/v1/auth/login/mfa-enrollment', { challengeToken });
  t.equal(enrolment.status, 200);
  const secret = String(enrolment.body.secret);
  const verified = await post(first.base, '/v1/auth/login/mfa-enrollment/verify', { challengeToken, code: totpCode(secret, Math.floor(Date.now() / 1000)) });
  t.equal(verified.status, 200, JSON.stringify(verified.body));
  const recoveryCodes = verified.body.recoveryCodes as string[];

  // A second `npm start` on the same folder is refused (newcomer review, session 25): it used to
  // serve from the first one's database and answer 503 for good once that one stopped.
  const twin = watchServer(spawnServer(t, unconfigured(dataDir)));
  t.notOk(await twin.listening, 'the second server never listens');
  t.equal(await twin.closed, 78, 'a configuration error');
  t.match(twin.output(), /already served by process \d+ .*another DATA_DIR/, 'says which process holds the folder and what to do');
  t.equal((await fetch(`${first.base}/readyz`)).status, 200, 'the first server is unaffected');
  await first.stop();

  // Restarted on the same folder: the same database, and the same keys open what the first run sealed.
  const second = await startUnconfigured(t, dataDir);
  t.notMatch(second.output(), /migration\(s\) applied now, 0 before/, 'nothing is migrated afresh');
  const again = (await (await fetch(`${second.base}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] };
  t.same(again.keys.map((k) => k.kid), jwks.keys.map((k) => k.kid), 'the signing key of the first run');
  const login = await post(second.base, '/v1/auth/login', { email: 'first@example.test', password });
  t.equal(login.status, 200);
  t.equal(login.body.next, 'mfa');
  const signedIn = await post(second.base, '/v1/auth/login/mfa', { challengeToken: login.body.challengeToken, recoveryCode: recoveryCodes[0] });
  t.equal(signedIn.status, 200, 'a session, signed with the key the first run sealed under the development keys');
  const me = await fetch(`${second.base}/v1/me`, { headers: { authorization: `Bearer ${String(signedIn.body.accessToken)}` } });
  t.equal(me.status, 200);
  t.match(await me.json(), { email: 'first@example.test', roles: ['SUPPORT'] });
  await second.stop();
});
