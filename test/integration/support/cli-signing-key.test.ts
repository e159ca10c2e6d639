import { decodeProtectedHeader } from 'jose';
import t from 'tap';
import { generateKey } from '../../../src/lib/secret-box.js';
import { buildTestApp } from '../../helpers/app.js';
import { cli, cliEnv } from '../../helpers/cli.js';
import { api } from '../../helpers/http.js';
import { createUser, signIn } from '../../helpers/factories.js';

/**
 * `rotate-signing-key` as the operator runs it. Found by session 13's operator review: run with an
 * ENCRYPTION_KEYS that is not the servers' (a wrong env file, development keys), it sealed the new key
 * under a key no server had and exited 0; 150 s later no instance could sign (503 on every login)
 * while /readyz still answered 200.
 */
t.test('rotate-signing-key: with the servers\' keyring it rotates; with another one a staged rotation is refused and nothing changes', async (t) => {
  const { app, databaseUrl, clock } = await buildTestApp(t);
  const env = cliEnv(databaseUrl);
  const before = await app.ctx.db.signingKey.findMany({ orderBy: { createdAt: 'asc' } });

  const wrong = await cli(['rotate-signing-key'], { ...env, ENCRYPTION_KEYS: `dev-1:${generateKey()}` });
  t.equal(wrong.code, 1, wrong.stderr);
  t.match(wrong.stderr, /refused: this ENCRYPTION_KEYS cannot open the signing key .* \(sealed under test-1\)/);
  t.equal(wrong.stdout, '');
  t.same(await app.ctx.db.signingKey.findMany({ orderBy: { createdAt: 'asc' } }), before, 'no key added, none retired');

  // The servers' keyring plus a newer key the servers do not have yet (an encryption-key rotation
  // begun at the CLI): the new signing key is sealed under the key the servers are known to hold.
  const right = await cli(['rotate-signing-key'], { ...env, ENCRYPTION_KEYS: `${env.ENCRYPTION_KEYS},next-1:${generateKey()}` });
  t.equal(right.code, 0, right.stderr);
  const result = JSON.parse(right.stdout) as { kid: string; sealedUnder: string; signsFrom: string; retired: string[]; warning?: string };
  t.equal(result.sealedUnder, 'test-1', "sealed under the signing key's own encryption key, not the CLI's newer current one");
  t.same(result.retired, [before[0]!.kid]);
  t.notOk(result.warning);

  // The servers (test-1 only) open it and sign with it once it is due.
  await app.ctx.signer.reload();
  clock.set(new Date(new Date(result.signsFrom).getTime() + 1000));
  const { user } = await createUser(app.ctx.db, app.ctx);
  const session = await signIn(app, user);
  t.equal(decodeProtectedHeader(session.accessToken).kid, result.kid);
  t.equal((await api(app)({ url: '/v1/me', token: session.accessToken })).status, 200);
});

t.test('rotate-signing-key --immediate (a leaked key) with another keyring goes ahead and says so; the instance that cannot sign reports it, and stays ready for what it still serves', async (t) => {
  const { app, databaseUrl } = await buildTestApp(t);
  const request = api(app);
  t.equal((await request({ url: '/readyz' })).status, 200);
  const run = await cli(['rotate-signing-key', '--immediate'], { ...cliEnv(databaseUrl), ENCRYPTION_KEYS: `other-1:${generateKey()}` });
  t.equal(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout) as { sealedUnder: string; warning?: string };
  t.equal(result.sealedUnder, 'other-1');
  t.match(result.warning, /could not open the replaced key\(s\) .*: every server needs key other-1/);

  const gauge = async () => /webshop_auth_signing_key_loaded (\d)/.exec((await app.inject({ url: '/metrics' })).body)?.[1];
  t.equal(await gauge(), '1');
  await t.rejects(app.ctx.signer.reload(), /cannot open the private signing key/);
  t.equal(await gauge(), '0', 'the gauge to alert on');
  // Every instance is in the same state after such a rotation: verification, introspection and the
  // JWKS still work, so readiness does not take them all out of the load balancer.
  t.equal((await request({ url: '/readyz' })).status, 200);
  t.equal((await request({ url: '/.well-known/jwks.json' })).status, 200);
});

t.test('key rotations are audited with who ran them and why (support audit log); a refused one leaves no row', async (t) => {
  const { app, databaseUrl } = await buildTestApp(t);
  const env = { ...cliEnv(databaseUrl), SUDO_USER: 'olga' };
  const rows = () => app.ctx.db.auditEvent.findMany({ where: { type: { in: ['signing_key.rotated', 'encryption_key.rotated'] } }, orderBy: { createdAt: 'asc' } });

  t.equal((await cli(['rotate-signing-key'], { ...env, ENCRYPTION_KEYS: `dev-1:${generateKey()}` })).code, 1);
  t.same(await rows(), [], 'a refused rotation changed nothing and recorded nothing');

  const staged = await cli(['rotate-signing-key', '--reason', 'OPS-7 yearly'], env);
  t.equal(staged.code, 0, staged.stderr);
  const leaked = await cli(['rotate-signing-key', '--immediate', '--reason', 'OPS-8 key leaked'], env);
  t.equal(leaked.code, 0, leaked.stderr);
  const resealed = await cli(['rotate-encryption-key'], env);
  t.equal(resealed.code, 0, resealed.stderr);
  t.equal((await cli(['rotate-encryption-key', '--immediate'], env)).code, 2, 'still no unknown options');

  const [first, second, third, ...more] = await rows();
  t.same(more, []);
  const stagedResult = JSON.parse(staged.stdout) as { kid: string; retired: string[] };
  const leakedResult = JSON.parse(leaked.stdout) as { kid: string; deleted: string[] };
  t.match(first, {
    type: 'signing_key.rotated',
    actorUserId: null,
    organizationId: null,
    userAgent: 'webshop-auth-cli',
    details: { immediate: false, kid: stagedResult.kid, retired: stagedResult.retired, cli: { operator: 'olga', reason: 'OPS-7 yearly' } },
  });
  t.match(second, {
    type: 'signing_key.rotated',
    details: { immediate: true, kid: leakedResult.kid, deleted: leakedResult.deleted, cli: { operator: 'olga', reason: 'OPS-8 key leaked' } },
  });
  t.equal(leakedResult.deleted.length, 2, 'the immediate rotation deleted both older keys, and says which');
  t.match(third, {
    type: 'encryption_key.rotated',
    organizationId: null,
    details: { currentKeyId: 'test-1', totpFactors: { failed: 0 }, signingKeys: { failed: 0 }, mailBodies: { failed: 0 }, failures: 0, cli: { operator: 'olga' } },
  });
  t.notOk((third?.details as { cli?: { reason?: string } }).cli?.reason, 'no --reason given, none recorded');
});
