import type { AddressInfo } from 'node:net';
import t from 'tap';
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, SignJWT } from 'jose';
import { generateKey, parseKeyring } from '../../../src/lib/secret-box.js';
import { sha256Hex } from '../../../src/lib/tokens.js';
import {
  createSigningKeyManager,
  KEY_CHANGE_CHECK_INTERVAL_MS,
  KEY_PROPAGATION_SECONDS,
  KEY_RELOAD_INTERVAL_SECONDS,
  PREPUBLISH_SECONDS,
  rotateSigningKey,
} from '../../../src/modules/sessions/signing-keys.js';
import { buildTestApp } from '../../helpers/app.js';
import { openClient, waitForLockWaiters } from '../../helpers/row-locks.js';
import { api } from '../../helpers/http.js';
import { createOrganization, createUser, signIn } from '../../helpers/factories.js';
import { issueSession } from '../../../src/modules/sessions/sessions.service.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { allowInsecureRequests, clockSkew, validateJwtAccessToken } from 'oauth4webapi';

t.test('issueSession: token response and access-token claims', async (t) => {
  const { app, config } = await buildTestApp(t, { JWT_CLIENT_ID: 'shop-frontend' });
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'] });

  const tokens = await signIn(app, user);
  t.equal(tokens.tokenType, 'Bearer');
  t.equal(tokens.expiresIn, config.jwt.accessTtlSeconds);
  t.ok(tokens.expiresIn <= 900);
  t.equal(tokens.refreshExpiresIn, config.refresh.idleTtlSeconds);
  t.same(tokens.requiredActions, ['accept_terms', 'set_preferences']);
  t.same(tokens.user, { id: user.id, email: user.email, name: user.name, organizationId: org.id, roles: ['USER', 'CUSTOMER_ADMIN'] });
  t.ok(tokens.refreshToken.length >= 43, 'refresh token carries at least 256 bits');

  const header = decodeProtectedHeader(tokens.accessToken);
  t.equal(header.alg, 'EdDSA');
  t.equal(header.typ, 'at+jwt');
  t.match(header.kid, /^[A-Za-z0-9_-]{43}$/);
  const claims = decodeJwt(tokens.accessToken);
  t.equal(claims.iss, config.jwt.issuer);
  t.same(claims.aud, ['webshop', 'cso']);
  t.equal(claims.sub, user.id);
  t.equal(claims.org, org.id);
  t.same(claims.roles, ['USER', 'CUSTOMER_ADMIN']);
  t.same(claims.amr, ['pwd', 'otp']);
  t.equal(claims.terms, null);
  t.equal(claims.token_use, 'access');
  t.equal(claims.client_id, 'shop-frontend', 'RFC 9068 §2.2: client_id (JWT_CLIENT_ID)');
  t.match(claims.sid, /^[0-9a-f-]{36}$/);
  t.type(claims.jti, 'string');
  t.equal(claims.exp! - claims.iat!, config.jwt.accessTtlSeconds);

  const me = await request({ url: '/v1/me', token: tokens.accessToken });
  t.equal(me.status, 200);
  t.equal(me.body.id, user.id);

  const audit = await app.ctx.db.auditEvent.findFirst({ where: { type: 'session.created', subjectUserId: user.id } });
  t.ok(audit, 'session.created audited');
  t.equal(audit?.organizationId, org.id);
});

t.test('a separate jose client verifies access tokens against the served JWKS, also across a key rotation', async (t) => {
  const { app, config, clock } = await buildTestApp(t);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  const jwksUrl = new URL(`http://127.0.0.1:${port}/.well-known/jwks.json`);

  // What CSO 3.0 does: remote JWKS, its own audience, the issuer, the one algorithm.
  const verifyAsCso = async (token: string, jwks = createRemoteJWKSet(jwksUrl)) =>
    jwtVerify(token, jwks, {
      issuer: config.jwt.issuer,
      audience: 'cso',
      algorithms: ['EdDSA'],
      currentDate: clock.now(),
    });

  const jwksResponse = await fetch(jwksUrl);
  t.equal(jwksResponse.status, 200);
  t.match(jwksResponse.headers.get('cache-control'), /max-age=60/);
  const jwks = (await jwksResponse.json()) as { keys: Record<string, unknown>[] };
  t.equal(jwks.keys.length, 1);
  t.match(jwks.keys[0], { kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', use: 'sig' });
  t.notOk('d' in jwks.keys[0]!, 'no private key material is published');

  const before = await signIn(app, user);
  const { payload, protectedHeader } = await verifyAsCso(before.accessToken);
  // A strict RFC 9068 resource-server library (every required claim, typ at+jwt) accepts it too.
  const strict = await validateJwtAccessToken(
    { issuer: config.jwt.issuer, jwks_uri: jwksUrl.href },
    new Request('http://cso.example/api', { headers: { authorization: `Bearer ${before.accessToken}` } }),
    'cso',
    { [allowInsecureRequests]: true, [clockSkew]: Math.round((clock.now().getTime() - Date.now()) / 1000), signingAlgorithms: ['EdDSA'] },
  );
  t.match(strict, { sub: user.id, client_id: 'webshop', aud: ['webshop', 'cso'] }, 'RFC 9068 (oauth4webapi)');
  t.equal(payload.sub, user.id);
  t.equal(payload.org, org.id);
  const oldKid = protectedHeader.kid;

  const cso = createRemoteJWKSet(jwksUrl, { cooldownDuration: 0 });
  await verifyAsCso(before.accessToken, cso);

  // Rotation: the new key is published at once, but the old one keeps signing for PREPUBLISH_SECONDS.
  const rotation = await rotateSigningKey(app.ctx);
  await app.ctx.signer.reload();
  t.not(rotation.kid, oldKid);
  t.same(rotation.retired, [oldKid]);
  const during = (await (await fetch(jwksUrl)).json()) as { keys: { kid: string }[] };
  t.same(during.keys.map((k) => k.kid).sort(), [oldKid, rotation.kid].sort(), 'both keys published');
  const stillOld = await signIn(app, user);
  t.equal(decodeProtectedHeader(stillOld.accessToken).kid, oldKid, 'old key signs during the pre-publication');

  clock.advance(PREPUBLISH_SECONDS + 1);
  const after = await signIn(app, user);
  t.equal(decodeProtectedHeader(after.accessToken).kid, rotation.kid, 'the new key signs after the pre-publication');
  t.equal((await verifyAsCso(after.accessToken, cso)).payload.sub, user.id, 'new tokens verify');
  t.equal((await verifyAsCso(before.accessToken, cso)).payload.sub, user.id, 'old tokens still verify');
  t.equal((await api(app)({ url: '/v1/me', token: before.accessToken })).status, 200, 'and the service itself accepts both');
  t.equal((await api(app)({ url: '/v1/me', token: after.accessToken })).status, 200);

  // The old public key stays until its last token expired (TTL + propagation margin after retirement).
  const retention = (config.jwt.accessTtlSeconds + KEY_PROPAGATION_SECONDS) * 1000;
  clock.set(new Date(rotation.signsFrom).getTime() + retention - 1000);
  t.equal(app.ctx.signer.publicJwks().length, 2, 'old key kept while its tokens may live');
  clock.advance(1);
  const later = (await (await fetch(jwksUrl)).json()) as { keys: { kid: string }[] };
  t.same(later.keys.map((k) => k.kid), [rotation.kid], 'old key dropped once no token signed by it can be alive');

  // The next rotation deletes rows that are past retention.
  const second = await rotateSigningKey(app.ctx);
  t.same(second.deleted, [oldKid]);
  t.same(second.retired, [rotation.kid]);
  await app.ctx.signer.reload();
  const live = await signIn(app, user);
  t.equal(decodeProtectedHeader(live.accessToken).kid, rotation.kid, 'pre-publication: the current key still signs');

  // --immediate (a leaked key): the new key signs at once and every older key is deleted, so the
  // tokens they signed stop verifying here, in the JWKS, and for introspection.
  const third = await rotateSigningKey(app.ctx, { immediate: true });
  t.same(third.deleted.sort(), [rotation.kid, second.kid].sort());
  t.equal(third.signsFrom, clock.now().toISOString());
  await app.ctx.signer.reload();
  const now = await signIn(app, user);
  t.equal(decodeProtectedHeader(now.accessToken).kid, third.kid, '--immediate switches at once');
  const published = (await (await fetch(jwksUrl)).json()) as { keys: { kid: string }[] };
  t.same(published.keys.map((k) => k.kid), [third.kid], 'only the new key is published');
  t.equal((await api(app)({ url: '/v1/me', token: live.accessToken })).status, 401, 'a live token of a withdrawn key is refused');
  t.equal((await api(app)({ url: '/v1/me', token: now.accessToken })).status, 200);
});

t.test('rotate-signing-key --immediate: a token forged with the leaked key after the rotation verifies nowhere', async (t) => {
  const csoSecret = 'cso-secret-0123456789abcdef';
  const { app, config, clock } = await buildTestApp(t, { SERVICE_CLIENTS: `cso:${sha256Hex(csoSecret)}` });
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  const victim = await signIn(app, user);
  const leaked = app.ctx.signer.signingKey();

  await rotateSigningKey(app.ctx, { immediate: true });
  await app.ctx.signer.reload();
  clock.advance(60);
  const now = Math.floor(clock.now().getTime() / 1000);
  const forged = await new SignJWT({ ...decodeJwt(victim.accessToken), roles: ['USER', 'CUSTOMER_ADMIN'], iat: now, exp: now + 600 })
    .setProtectedHeader({ alg: leaked.algorithm, kid: leaked.kid, typ: 'at+jwt' })
    .sign(leaked.privateKey);

  const jwks = createLocalJWKSet((await request({ url: '/.well-known/jwks.json' })).body);
  await t.rejects(jwtVerify(forged, jwks, { issuer: config.jwt.issuer, audience: 'cso', currentDate: clock.now() }), 'a JWKS verifier refuses it');
  t.equal((await request({ url: '/v1/me', token: forged })).status, 401, 'this service refuses it');
  const basic = `Basic ${Buffer.from(`cso:${csoSecret}`).toString('base64')}`;
  const intro = await request({ url: '/v1/tokens/introspect', headers: { authorization: basic }, body: { token: forged } });
  t.same(intro.body, { active: false }, 'introspection refuses it');
  // The victim's session goes on: its refresh token is not tied to a signing key.
  const refreshed = await request({ url: '/v1/auth/refresh', body: { refreshToken: victim.refreshToken } });
  t.equal(refreshed.status, 200);
  t.not(decodeProtectedHeader(refreshed.body.accessToken).kid, leaked.kid);
});

t.test('rotate-signing-key --immediate run with an encryption key this instance lacks: the leaked key stops working here all the same, and signing answers 503', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  const victim = await signIn(app, user);
  const leaked = app.ctx.signer.signingKey();

  // The operator's CLI seals the new key under an ENCRYPTION_KEYS entry this instance was not given.
  const rotation = await rotateSigningKey({ ...app.ctx, keyring: parseKeyring(`other-1:${generateKey()}`) }, { immediate: true });
  await t.rejects(app.ctx.signer.reload(), { message: /cannot open the private signing key.*other-1/ }, 'the reload fails, to be logged and retried');

  t.equal(app.ctx.signer.verificationKey(leaked.kid), undefined, 'the deleted key no longer verifies');
  t.ok(app.ctx.signer.verificationKey(rotation.kid), "the new key verifies other instances' tokens");
  t.equal((await request({ url: '/v1/me', token: victim.accessToken })).status, 401, 'tokens of the leaked key are refused');
  clock.advance(1);
  const refreshed = await request({ url: '/v1/auth/refresh', body: { refreshToken: victim.refreshToken } });
  t.same([refreshed.status, refreshed.body.code], [503, 'service_unavailable'], 'nothing left to sign with: 503, not the leaked key');
  t.equal(await app.ctx.db.refreshToken.count({ where: { rotatedAt: { not: null } } }), 0, 'the refresh token was not spent on it');
});

t.test("a token signed elsewhere with a key this instance cannot open still verifies here on its first request", async (t) => {
  const { app } = await buildTestApp(t);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  const elsewhere = parseKeyring(`other-1:${generateKey()}`);
  await rotateSigningKey({ ...app.ctx, keyring: elsewhere }, { immediate: true });
  // Another instance, holding that encryption key, signs with the new key.
  const signer = createSigningKeyManager({ ...app.ctx, keyring: elsewhere });
  await signer.reload();
  const tokens = await app.ctx.db.$transaction((tx) =>
    issueSession({ ...app.ctx, signer }, tx, { userId: user.id, amr: ['pwd', 'otp'], meta: { ip: '127.0.0.1', userAgent: 'tap' } }),
  );
  await sleep(5_100); // past the throttle of reloads for unknown kids
  const first = await api(app)({ url: '/v1/me', token: tokens.accessToken });
  t.equal(first.status, 200, 'the reload that found the kid failed (a private key it cannot open), yet the kid verifies');
});

t.test('a second instance on the same database picks up the keys (no new key per instance)', async (t) => {
  const { app, database } = await buildTestApp(t);
  const rows = await database.db.signingKey.findMany();
  t.equal(rows.length, 1);
  t.equal(rows[0]?.algorithm, 'EdDSA');
  t.not(rows[0]?.privateKeyCiphertext, '');
  t.notMatch(JSON.stringify(rows[0]?.publicJwk), /"d"/);
  // Reloading (what another instance does at start) reuses the row.
  await app.ctx.signer.reload();
  t.equal(await database.db.signingKey.count(), 1);
});

t.test('another instance picks up rotate-signing-key --immediate at its next change check, not a minute later', async (t) => {
  const { app, clock, config } = await buildTestApp(t);
  // An instance running beside this one: loaded before the rotation, its checks running.
  const other = createSigningKeyManager({ db: app.ctx.db, keyring: app.ctx.keyring, clock, config });
  await other.reload();
  other.start();
  t.teardown(() => other.stop());
  const leaked = other.signingKey().kid;

  const started = performance.now();
  const rotation = await rotateSigningKey(app.ctx, { immediate: true });
  while (other.signingKey().kid === leaked && performance.now() - started < KEY_CHANGE_CHECK_INTERVAL_MS * 3) await sleep(100);
  const took = performance.now() - started;
  t.equal(other.signingKey().kid, rotation.kid, 'it signs with the new key');
  // One check interval, with room for a loaded machine; the reload interval (60 s) is far off.
  t.ok(took < KEY_CHANGE_CHECK_INTERVAL_MS * 2, `at its next check, not its next reload (${Math.round(took)} ms)`);
  t.equal(other.verificationKey(leaked), undefined, 'and no longer verifies the leaked one');
  t.same(other.publicJwks().map((k) => k.kid), [rotation.kid], 'nor publishes it');

  // A staged rotation too: the key that will sign is published within the interval.
  const staged = await rotateSigningKey(app.ctx);
  const stagedAt = performance.now();
  while (!other.publicJwks().some((k) => k.kid === staged.kid) && performance.now() - stagedAt < KEY_CHANGE_CHECK_INTERVAL_MS * 3) await sleep(100);
  t.ok(other.publicJwks().some((k) => k.kid === staged.kid), 'the staged key is published');
  t.equal(other.signingKey().kid, rotation.kid, 'while the current key still signs');
});

t.test('instances configured with different JWT_ALGORITHMs (a deploy half done) do not replace each other\'s keys', async (t) => {
  const { app, database, clock, config } = await buildTestApp(t);
  const es256 = createSigningKeyManager({ db: app.ctx.db, keyring: app.ctx.keyring, clock, config: { ...config, jwt: { ...config.jwt, algorithm: 'ES256' } } });
  await es256.reload();
  const kids = { eddsa: app.ctx.signer.signingKey().kid, es256: es256.signingKey().kid };
  for (let round = 0; round < 3; round++) {
    await app.ctx.signer.reload();
    await es256.reload();
  }
  t.equal(await database.db.signingKey.count(), 2, 'one key per algorithm, no new ones at each reload');
  t.equal(await database.db.signingKey.count({ where: { retiredAt: null } }), 2, 'neither retired');
  t.same({ eddsa: app.ctx.signer.signingKey().kid, es256: es256.signingKey().kid }, kids, 'each signs with the key it had');
  // The next rotation (run with the new algorithm) retires the old algorithm's key as well.
  const rotation = await rotateSigningKey({ ...app.ctx, config: { ...config, jwt: { ...config.jwt, algorithm: 'ES256' } } });
  t.same(rotation.retired.sort(), [kids.eddsa, kids.es256].sort());
});

t.test('ES256 when configured', async (t) => {
  const { app, config } = await buildTestApp(t, { JWT_ALGORITHM: 'ES256' });
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  const tokens = await signIn(app, user);
  t.equal(decodeProtectedHeader(tokens.accessToken).alg, 'ES256');
  const jwks = await api(app)({ url: '/.well-known/jwks.json' });
  t.match(jwks.body.keys[0], { kty: 'EC', crv: 'P-256', alg: 'ES256' });
  const { payload } = await jwtVerify(tokens.accessToken, createLocalJWKSet(jwks.body), {
    issuer: config.jwt.issuer,
    audience: 'webshop',
    algorithms: ['ES256'],
  });
  t.equal(payload.sub, user.id);
  t.equal((await api(app)({ url: '/v1/me', token: tokens.accessToken })).status, 200);
});

t.test('a staged rotation (as the CLI runs it) never leaves an instance without a signer, reloaded or not', async (t) => {
  const { app, config, clock } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app.ctx);
  const before = await signIn(app, user);
  const oldKid = decodeProtectedHeader(before.accessToken).kid;
  // Another instance on the same database whose last reload was just before the rotation.
  const stale = createSigningKeyManager({ db: app.ctx.db, keyring: app.ctx.keyring, clock, config });
  await stale.reload();

  const rotation = await rotateSigningKey({ db: app.ctx.db, keyring: app.ctx.keyring, clock, config });
  clock.set(new Date(rotation.signsFrom).getTime() + 1000);
  // This instance has not reloaded since the rotation (its reload is due, or it failed): it goes on signing.
  const refreshed = await request({ url: '/v1/auth/refresh', body: { refreshToken: before.refreshToken } });
  t.equal(refreshed.status, 200, 'refresh past the switch, before any reload');
  t.equal(decodeProtectedHeader(refreshed.body.accessToken).kid, oldKid, 'with the key it knows');
  t.equal(stale.signingKey().kid, oldKid, 'so does the other instance');

  // A token signed that late still verifies everywhere until it expires, also once the new key signs.
  await app.ctx.signer.reload();
  const after = await request({ url: '/v1/auth/refresh', body: { refreshToken: refreshed.body.refreshToken } });
  t.equal(after.status, 200);
  t.equal(decodeProtectedHeader(after.body.accessToken).kid, rotation.kid, 'the new key signs after the reload');
  clock.advance(config.jwt.accessTtlSeconds - 1);
  const jwks = createLocalJWKSet((await request({ url: '/.well-known/jwks.json' })).body);
  const verified = await jwtVerify(refreshed.body.accessToken, jwks, { issuer: config.jwt.issuer, audience: 'cso', currentDate: clock.now() });
  t.equal(verified.payload.sub, user.id, 'a JWKS verifier accepts it until its exp');
  t.equal((await request({ url: '/v1/me', token: refreshed.body.accessToken })).status, 200, 'and so does the service');
});

t.test('a staged rotation signs only once every JWKS cached without the new key has expired, also one from an instance not yet reloaded', async (t) => {
  const { app, config, clock } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app.ctx);
  const before = await signIn(app, user);
  const oldKid = decodeProtectedHeader(before.accessToken).kid;
  const jwksResponse = await request({ url: '/.well-known/jwks.json' });
  const maxAge = Number(/max-age=(\d+)/.exec(String(jwksResponse.headers['cache-control']))?.[1]);
  t.ok(maxAge > 0, 'the JWKS says how long it may be cached');

  const rotatedAt = clock.now().getTime();
  const rotation = await rotateSigningKey({ db: app.ctx.db, keyring: app.ctx.keyring, clock, config });
  // The last JWKS without the new key: served by an instance whose reload falls due a whole reload
  // interval after the rotation, then kept by a verifier for max-age.
  const lastStaleCopyExpires = rotatedAt + (KEY_RELOAD_INTERVAL_SECONDS + maxAge) * 1000;
  t.ok(new Date(rotation.signsFrom).getTime() > lastStaleCopyExpires, `signs from ${rotation.signsFrom}, after the last stale copy expired`);

  await app.ctx.signer.reload();
  clock.set(lastStaleCopyExpires);
  const refreshed = await request({ url: '/v1/auth/refresh', body: { refreshToken: before.refreshToken } });
  t.equal(refreshed.status, 200);
  t.equal(decodeProtectedHeader(refreshed.body.accessToken).kid, oldKid, 'a reloaded instance still signs with the old key then');
});

t.test('a second staged rotation soon after the first keeps the retired key while tokens it signed may live (mutation review, session 20)', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const { user } = await createUser(app.ctx.db, app.ctx);
  const first = await rotateSigningKey(app.ctx);
  await app.ctx.signer.reload();
  const old = await signIn(app, user); // signed by the key that retires at first.signsFrom
  const oldKid = decodeProtectedHeader(old.accessToken).kid!;
  t.not(oldKid, first.kid);
  clock.advance(PREPUBLISH_SECONDS + 1);
  const second = await rotateSigningKey(app.ctx);
  await app.ctx.signer.reload();
  t.same(second.deleted, [], 'no key whose tokens may still be alive is deleted');
  t.ok(app.ctx.signer.publicJwks().some((k) => k.kid === oldKid), 'the retired key stays published');
  t.equal((await api(app)({ url: '/v1/me', token: old.accessToken })).status, 200, 'its unexpired token still works');
});

t.test('two rotations at once are serialised: the later one also retires the key the earlier one added (mutation review, session 21)', async (t) => {
  const { app, databaseUrl } = await buildTestApp(t);
  // A transaction holding the signing key's row makes both rotations reach it before either commits.
  const other = await openClient(t, databaseUrl);
  await other.query('BEGIN');
  await other.query('SELECT kid FROM signing_keys FOR UPDATE');
  const both = Promise.all([rotateSigningKey(app.ctx), rotateSigningKey(app.ctx)]);
  await waitForLockWaiters(other, 2);
  await other.query('COMMIT');
  const [a, b] = await both;
  t.ok(b.retired.includes(a.kid) || a.retired.includes(b.kid), 'the later one saw the earlier one\'s key');
  t.equal(await app.ctx.db.signingKey.count({ where: { retiredAt: null } }), 1, 'one key signs next, not two');
});
