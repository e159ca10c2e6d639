import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import { buildApp } from '../../src/app.js';
import { openDatabase } from '../../src/db/client.js';
import { generateKey, parseKeyring, SecretBoxError } from '../../src/lib/secret-box.js';
import { openTotpSecret, sealTotpSecret } from '../../src/modules/mfa/totp-secret.js';
import { resealSecrets } from '../../src/modules/mfa/key-rotation.js';
import { buildTestApp } from '../helpers/app.js';
import { openClient, waitForLockWaiters } from '../helpers/row-locks.js';
import { api } from '../helpers/http.js';
import { createUser, currentTotp } from '../helpers/factories.js';
import { challengeFor, enrolAtLogin } from '../integration/mfa/helpers.js';

/**
 * security.md item 11: TOTP secrets are AES-256-GCM sealed with the key id stored, bound to their
 * user, and `rotate-encryption-key` re-seals them (and the JWT signing keys) under the newest key,
 * after which the old key can be dropped from ENCRYPTION_KEYS.
 */

const run = promisify(execFile);
const ROOT = new URL('../../', import.meta.url).pathname;

t.test('sealed per user: the row holds no secret, names its key, and does not open for another user', async (t) => {
  const keyring = parseKeyring(`k1:${generateKey()}`);
  const secret = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
  const sealed = sealTotpSecret(keyring, 'user-a', secret);
  t.equal(sealed.encryptionKeyId, 'k1');
  t.notOk(sealed.secretCiphertext.includes(secret));
  t.not(sealTotpSecret(keyring, 'user-a', secret).secretCiphertext, sealed.secretCiphertext, 'random nonce');
  t.equal(openTotpSecret(keyring, 'user-a', sealed), secret);
  t.throws(() => openTotpSecret(keyring, 'user-b', sealed), SecretBoxError, "another user's row does not open");
  t.throws(() => openTotpSecret(parseKeyring(`k1:${generateKey()}`), 'user-a', sealed), SecretBoxError, 'wrong key');
});

t.test('rotate-encryption-key re-seals TOTP secrets and signing keys; the old key can then go', async (t) => {
  const { app, databaseUrl, config, clock } = await buildTestApp(t);
  const request = api(app);
  const oldKey = app.ctx.keyring.keys.get('test-1')!.toString('base64');
  const newKey = generateKey();

  const { user } = await createUser(app.ctx.db, app, { withTotp: false });
  const { secret } = await enrolAtLogin(t, app, request, await challengeFor(app, user.id, 'mfa_enrollment'));
  const { user: second, totpSecret: secondSecret } = await createUser(app.ctx.db, app);
  t.ok(await app.ctx.db.signingKey.count(), 'the app created a signing key');

  const env = { ...process.env, NODE_ENV: 'test', LOG_LEVEL: 'silent', DATABASE_URL: databaseUrl, ENCRYPTION_KEYS: `test-1:${oldKey},test-2:${newKey}` };
  // --force: the app running here holds test-1 only, and stands in for the database's rows, not for
  // servers already restarted with both keys (the command's check of running instances:
  // test/integration/support/cli-encryption-key.test.ts).
  const rotate = ['--import', 'tsx', 'src/cli.ts', 'rotate-encryption-key', '--force'];
  const { stdout } = await run('node', rotate, { cwd: ROOT, env });
  const report = JSON.parse(stdout);
  t.equal(report.currentKeyId, 'test-2');
  t.same(report.totpFactors, { resealed: 2, skipped: 0, failed: 0 });
  t.ok(report.signingKeys.resealed >= 1);
  t.same(report.failures, []);
  t.notMatch(stdout, secret, 'no secret in the output');

  const factors = await app.ctx.db.totpFactor.findMany();
  t.same([...new Set(factors.map((f) => f.encryptionKeyId))], ['test-2']);
  t.same([...new Set((await app.ctx.db.signingKey.findMany()).map((k) => k.encryptionKeyId))], ['test-2']);

  // Idempotent: nothing is left under the old key.
  const again = JSON.parse((await run('node', rotate, { cwd: ROOT, env })).stdout);
  t.same(again.totpFactors, { resealed: 0, skipped: 0, failed: 0 });

  // An instance that only has the new key signs in both users (TOTP secrets and the signing key open).
  const database = openDatabase(databaseUrl, { max: 2 });
  const next = await buildApp({ config, database, keyring: parseKeyring(`test-2:${newKey}`), clock, logger: app.log });
  await next.ready();
  t.teardown(async () => {
    await next.close();
    await database.close();
  });
  clock.advance(30);
  const nextRequest = api(next);
  for (const [id, s] of [
    [user.id, secret],
    [second.id, secondSecret!],
  ] as const) {
    const res = await nextRequest({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(next, id, 'mfa'), code: currentTotp(next, s) } });
    t.equal(res.status, 200, 'login works under the new key only');
  }

  // A key missing from the keyring is reported per row (ids only), and the command fails.
  const missing = { ...env, ENCRYPTION_KEYS: `test-3:${generateKey()}` };
  const failed = await run('node', rotate, { cwd: ROOT, env: missing }).catch(
    (err: { code: number; stdout: string }) => err,
  );
  t.equal((failed as { code: number }).code, 1);
  const failedReport = JSON.parse((failed as { stdout: string }).stdout);
  t.equal(failedReport.totpFactors.failed, 2);
  t.same([...new Set(failedReport.failures.map((f: { reason: string }) => f.reason))], ['unknown_key_id']);
});

t.test('a TOTP secret replaced while the rotation waits for its row is skipped, not overwritten with the one read before (mutation review, session 21)', async (t) => {
  const { app, databaseUrl } = await buildTestApp(t);
  const { user } = await createUser(app.ctx.db, app);
  const factor = await app.ctx.db.totpFactor.findFirstOrThrow({ where: { userId: user.id } });
  // Another transaction writes a new secret (under the same key) and holds the row until the rotation waits for it.
  const newer = 'KRUGS4ZANFZSAYJAON2XAZLSEBZWKY3S';
  const sealed = sealTotpSecret(app.ctx.keyring, user.id, newer);
  const other = await openClient(t, databaseUrl);
  await other.query('BEGIN');
  await other.query('UPDATE totp_factors SET secret_ciphertext = $1, encryption_key_id = $2 WHERE id = $3', [sealed.secretCiphertext, sealed.encryptionKeyId, factor.id]);
  const rotating = parseKeyring(`test-1:${app.ctx.keyring.keys.get('test-1')!.toString('base64')},test-2:${generateKey()}`);
  const running = resealSecrets(app.ctx.db, rotating, { clock: app.ctx.clock, meta: { ip: null, userAgent: null } });
  await waitForLockWaiters(other, 1);
  await other.query('COMMIT');
  t.same((await running).totpFactors, { resealed: 0, skipped: 1, failed: 0 }, 'skipped (a second run picks it up)');
  const res = await api(app)({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), code: currentTotp(app, newer) } });
  t.equal(res.status, 200, 'the secret written meanwhile is the one that counts');
});

t.test('a second run re-seals nothing: TOTP secrets, signing keys and mail bodies are all under the current key (mutation review, session 21)', async (t) => {
  const { app } = await buildTestApp(t);
  await createUser(app.ctx.db, app);
  const rotating = parseKeyring(`test-1:${app.ctx.keyring.keys.get('test-1')!.toString('base64')},test-2:${generateKey()}`);
  const run = { clock: app.ctx.clock, meta: { ip: null, userAgent: null } };
  const first = await resealSecrets(app.ctx.db, rotating, run);
  t.same(first.totpFactors, { resealed: 1, skipped: 0, failed: 0 });
  t.ok(first.signingKeys.resealed >= 1);
  const nothing = { resealed: 0, skipped: 0, failed: 0 };
  const again = await resealSecrets(app.ctx.db, rotating, run);
  t.same(again.totpFactors, nothing, 'TOTP secrets: nothing left');
  t.same(again.signingKeys, nothing, 'signing keys: nothing left (the old key can go)');
  t.same(again.failures, []);
});
