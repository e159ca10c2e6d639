import t, { type Test } from 'tap';
import { decodeJwt, decodeProtectedHeader, SignJWT } from 'jose';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createOrganization, createUser, signIn } from '../helpers/factories.js';
import { sha256Hex } from '../../src/lib/tokens.js';
import { KEY_PROPAGATION_SECONDS, PREPUBLISH_SECONDS, rotateSigningKey } from '../../src/modules/sessions/signing-keys.js';

/**
 * The verified-token cache (src/modules/sessions/access-token.ts) may only save the signature check:
 * a cached token must still expire, die with its key, and no variant of it may ride on its entry.
 */

const CSO_SECRET = 'cso-secret-0123456789abcdef';
const env = { SERVICE_CLIENTS: `cso:${sha256Hex(CSO_SECRET)}` };

async function setup(t: Test) {
  const built = await buildTestApp(t, env);
  const { app } = built;
  const request = api(app);
  const org = await createOrganization(app.ctx.db);
  const { user } = await createUser(app.ctx.db, app.ctx, { organizationId: org.id });
  const me = (token: string) => request({ url: '/v1/me', token });
  const introspect = (token: string) =>
    request({
      url: '/v1/tokens/introspect',
      body: { token },
      headers: { authorization: `Basic ${Buffer.from(`cso:${CSO_SECRET}`).toString('base64')}` },
    });
  return { ...built, user, me, introspect, cache: app.ctx.signer.verifiedTokens };
}

const expectRefused = async (t: Test, res: Promise<{ status: number; body: { code?: string } }>, label: string) => {
  const { status, body } = await res;
  t.equal(status, 401, `${label}: 401`);
  t.equal(body.code, 'token_invalid', `${label}: token_invalid`);
};

/** The token with the character at `index` replaced by another base64url character. */
const withCharChanged = (token: string, index: number) =>
  `${token.slice(0, index)}${token[index] === 'A' ? 'B' : 'A'}${token.slice(index + 1)}`;

t.test('a cached token is served from the cache and still expires on the (fake) clock', async (t) => {
  const { app, config, clock, user, me, introspect, cache } = await setup(t);
  const { accessToken } = await signIn(app, user);
  t.equal(cache.get(accessToken), undefined, 'not cached before its first use');

  t.equal((await me(accessToken)).status, 200, 'first use: verified in full');
  const entry = cache.get(accessToken);
  t.ok(entry, 'and cached');
  t.equal((await me(accessToken)).status, 200, 'second use');
  t.equal((await introspect(accessToken)).body.active, true, 'introspection of the same token');
  t.equal(cache.get(accessToken), entry, 'both answered from the same entry (no new verification)');

  clock.advance(config.jwt.accessTtlSeconds - 1);
  t.equal((await me(accessToken)).status, 200, 'valid until exp');
  t.equal(cache.get(accessToken), entry, 'still from the cache');
  clock.advance(7); // past exp and the 5-s leeway
  await expectRefused(t, me(accessToken), 'expired while cached');
  t.same((await introspect(accessToken)).body, { active: false }, 'introspection: expired');
  t.equal(cache.get(accessToken), undefined, 'the expired entry is gone');
});

t.test('each app has its own cache', async (t) => {
  const a = await setup(t);
  const b = await setup(t);
  const { accessToken } = await signIn(a.app, a.user);
  t.equal((await a.me(accessToken)).status, 200);
  t.ok(a.cache.get(accessToken));
  t.equal(b.cache.get(accessToken), undefined, "another app's cache does not know the token");
  await expectRefused(t, b.me(accessToken), 'the other app (other keys) refuses it');
});

t.test('a tampered variant of a cached token is refused, and refused tokens are never cached', async (t) => {
  const { app, user, me, introspect, cache } = await setup(t);
  const { accessToken } = await signIn(app, user);
  t.equal((await me(accessToken)).status, 200);
  const size = cache.size;

  const [header, payload] = accessToken.split('.') as [string, string, string];
  const inSignature = header.length + payload.length + 2 + 20;
  const inPayload = header.length + 1 + Math.floor(payload.length / 2);
  for (const [label, variant] of [
    ['one character of the signature changed', withCharChanged(accessToken, inSignature)],
    ['one character of the payload changed', withCharChanged(accessToken, inPayload)],
    ['one character of the header changed', withCharChanged(accessToken, 10)],
    ['a character appended', `${accessToken}A`],
    ['the last character dropped', accessToken.slice(0, -1)],
  ] as const) {
    t.not(variant, accessToken);
    await expectRefused(t, me(variant), label);
    t.same((await introspect(variant)).body, { active: false }, `${label}: introspection`);
    t.equal(cache.get(variant), undefined, `${label}: not cached`);
  }
  for (let i = 0; i < 20; i++) await expectRefused(t, me(`garbage.${i}.x`), `garbage ${i}`);
  t.equal(cache.size, size, 'refused tokens added nothing');
  t.equal((await me(accessToken)).status, 200, 'the genuine token still works');
});

t.test('a cached token stops verifying when its key is removed or past its retention', async (t) => {
  const { app, config, clock, user, me, introspect, cache, database } = await setup(t);
  const old = await signIn(app, user);
  const oldKid = decodeProtectedHeader(old.accessToken).kid!;
  t.equal((await me(old.accessToken)).status, 200);
  t.ok(cache.get(old.accessToken), 'cached');

  await rotateSigningKey(app.ctx);
  await app.ctx.signer.reload();
  clock.advance(PREPUBLISH_SECONDS + 1);
  t.equal((await me(old.accessToken)).status, 200, 'the retired key still verifies during its retention (after a reload)');
  const fresh = await signIn(app, user);
  t.not(decodeProtectedHeader(fresh.accessToken).kid, oldKid, 'the new key signs');
  t.equal((await me(fresh.accessToken)).status, 200);

  // Another instance (or an operator) deletes the old key: gone after this instance's next reload.
  await database.db.signingKey.delete({ where: { kid: oldKid } });
  await app.ctx.signer.reload();
  await expectRefused(t, me(old.accessToken), 'key removed');
  t.same((await introspect(old.accessToken)).body, { active: false }, 'introspection: key removed');
  t.equal((await me(fresh.accessToken)).status, 200, 'tokens of the remaining key still work');

  // Past its retention a key stops verifying without any reload. A token with a long exp (signed
  // here with the then current key) shows that it is the key that is refused, not the expiry.
  const signing = app.ctx.signer.signingKey();
  const longLived = await new SignJWT({ ...decodeJwt(fresh.accessToken), exp: Math.floor(clock.now().getTime() / 1000) + 7200 })
    .setProtectedHeader({ alg: signing.algorithm, kid: signing.kid, typ: 'at+jwt' })
    .sign(signing.privateKey);
  t.equal((await me(longLived)).status, 200);
  t.ok(cache.get(longLived), 'cached');
  await rotateSigningKey(app.ctx);
  await app.ctx.signer.reload();
  clock.advance(PREPUBLISH_SECONDS + 1);
  t.equal((await me(longLived)).status, 200, 'within the retention of its (now retired) key');
  clock.advance(config.jwt.accessTtlSeconds + KEY_PROPAGATION_SECONDS + 1);
  await expectRefused(t, me(longLived), 'its key is past retention');
});

t.test('rotate-signing-key --immediate (a leaked key): a cached token of the old key is refused after the reload', async (t) => {
  const { app, user, me, introspect, cache } = await setup(t);
  const old = await signIn(app, user);
  t.equal((await me(old.accessToken)).status, 200);
  t.ok(cache.get(old.accessToken), 'cached');
  await rotateSigningKey(app.ctx, { immediate: true });
  await app.ctx.signer.reload();
  await expectRefused(t, me(old.accessToken), 'old key withdrawn');
  t.same((await introspect(old.accessToken)).body, { active: false }, 'introspection: old key withdrawn');
  t.equal((await me((await signIn(app, user)).accessToken)).status, 200, 'the new key signs and verifies');
});
