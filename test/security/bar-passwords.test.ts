import argon2 from 'argon2';
import t from 'tap';
import { loadConfig } from '../../src/config.js';
import { createPasswordHasher, parseArgon2Hash } from '../../src/lib/password-hasher.js';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createOrganization, createUser, signIn } from '../helpers/factories.js';
import { GOOD_PASSWORD, inviteUser, tokenFromLink } from '../helpers/accounts.js';
import { PRODUCTION_ENV } from '../helpers/production-env.js';
import { lastMail } from '../helpers/outbox.js';

/**
 * security.md items 1-4 through the HTTP API, where the existing suites only covered them in unit
 * tests (src/lib/password-policy.ts) or with passwords written straight into the database:
 *  1. length in code points, ≥ 128 (up to 1024) accepted and never truncated, NFKC applied when the
 *     password is SET (activation, reset, change), spaces/Unicode, no composition rules;
 *  2. blocklist and context words on reset and change too (e-mail local part, organisation, shop);
 *  3. no periodic expiry;
 *  4. argon2id with the configured parameters, production minimum, re-hash when raised.
 */

type Request = ReturnType<typeof api>;

const login = (request: Request, email: string, password: string) => request({ url: '/v1/auth/login', body: { email, password } });

/** Varied text (the repeat/sequence rule must not fire), exactly n code points. */
const filler = (n: number) => 'Velvet orbit lantern drifts over quiet harbour pickles at dawn; '.repeat(40).slice(0, n);

t.test('length through the API: counted in code points; 128 and 1024 accepted and never truncated; 1025 refused', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);

  // 11 code points but 21 UTF-16 units: too short. 12 code points: accepted.
  const { token: t1, user: u1 } = await inviteUser(app);
  const eleven = 'a🔒b🔒c🔒d🔒e🔒f';
  const short = await request({ url: '/v1/activation', body: { token: t1, password: eleven } });
  t.equal(short.status, 422, '11 code points (21 UTF-16 units) are too short');
  t.equal(short.body.code, 'password_too_short');
  const twelve = 'a🔒b🔒c🔒d🔒e🔒fg';
  t.equal((await request({ url: '/v1/activation', body: { token: t1, password: twelve } })).status, 200, '12 code points are enough');
  t.equal((await login(request, u1.email, twelve)).status, 200);

  // 128 code points: set through activation, every prefix refused at login.
  const { token: t2, user: u2 } = await inviteUser(app);
  const p128 = filler(128);
  const set128 = await request({ url: '/v1/activation', body: { token: t2, password: p128 } });
  t.equal(set128.status, 200, '128 characters accepted');
  t.equal((await login(request, u2.email, p128)).status, 200, 'the whole 128-character password signs in');
  for (const prefix of [72, 127]) {
    const res = await login(request, u2.email, p128.slice(0, prefix));
    t.equal(res.status, 401, `the first ${prefix} characters are not enough (no truncation)`);
    t.equal(res.body.code, 'invalid_credentials');
  }
  const changedLast = await login(request, u2.email, `${p128.slice(0, 127)}#`);
  t.equal(changedLast.body.code, 'invalid_credentials', 'the 128th character counts');

  // 1024 astral code points (4 KiB of UTF-8, 2048 UTF-16 units): the maximum, accepted whole.
  const { token: t3, user: u3 } = await inviteUser(app);
  const astral = [...'🐙🦑🐠🐡🦐🦀🐚🐳'].join('').repeat(128);
  t.equal([...astral].length, 1024);
  t.equal((await request({ url: '/v1/activation', body: { token: t3, password: `${astral}x` } })).body.code, 'password_too_long', '1025 refused');
  t.equal((await request({ url: '/v1/activation', body: { token: t3, password: astral } })).status, 200, '1024 code points accepted');
  t.equal((await login(request, u3.email, astral)).status, 200);
  const lastSwapped = `${[...astral].slice(0, 1023).join('')}🐋`;
  t.equal((await login(request, u3.email, lastSwapped)).body.code, 'invalid_credentials', 'the 1024th code point counts');

  // Long passwords through reset and change as well.
  const { user: u4, password: old4 } = await createUser(app.ctx.db, app);
  const p200 = filler(200);
  await request({ url: '/v1/password/forgot', body: { email: u4.email } });
  const mail = await lastMail(app, { toAddress: u4.email, template: 'password_reset' });
  const reset = await request({ url: '/v1/password/reset', body: { token: tokenFromLink(mail.textBody, '/reset-password'), password: p200 } });
  t.equal(reset.status, 204, '200 characters accepted by reset');
  t.equal((await login(request, u4.email, p200.slice(0, 128))).body.code, 'invalid_credentials', 'reset: not truncated at 128');
  t.equal((await login(request, u4.email, p200)).status, 200);
  t.not(old4, p200);

  const { user: u5, password: old5 } = await createUser(app.ctx.db, app);
  const session = await signIn(app, u5);
  const p300 = filler(300);
  const change = await request({ method: 'PUT', url: '/v1/me/password', token: session.accessToken, body: { currentPassword: old5!, newPassword: p300 } });
  t.equal(change.status, 204, '300 characters accepted by change');
  t.equal((await login(request, u5.email, p300.slice(0, 299))).body.code, 'invalid_credentials', 'change: not truncated');
  t.equal((await login(request, u5.email, p300)).status, 200);
});

t.test('a password set with compatibility characters is stored NFKC-normalised; spaces, Unicode, no composition rules', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);

  // "ﬁ" (U+FB01) is NFKC "fi", full-width digits are ASCII digits: set one way, sign in the other.
  const { token, user } = await inviteUser(app);
  const typedAtActivation = 'ﬁne wine ２０２６ club';
  t.equal((await request({ url: '/v1/activation', body: { token, password: typedAtActivation } })).status, 200);
  t.equal((await login(request, user.email, 'fine wine 2026 club')).status, 200, 'NFKC form signs in');
  t.equal((await login(request, user.email, typedAtActivation)).status, 200, 'and so does the form typed at activation');

  // Combining accent: "e" + U+0301 composes to "é", both spellings are the same password.
  const { user: u2, password: old2 } = await createUser(app.ctx.db, app);
  const session = await signIn(app, u2);
  const decomposed = 'Cafe\u0301 noir au lait 42';
  t.equal((await request({ method: 'PUT', url: '/v1/me/password', token: session.accessToken, body: { currentPassword: old2!, newPassword: decomposed } })).status, 204);
  t.equal((await login(request, u2.email, 'Café noir au lait 42')).status, 200, 'precomposed spelling signs in');

  // No composition rules: lower-case only, spaces only between words, emoji, other scripts.
  for (const password of ['just some lower case words here', '  spaces at both ends  ', 'Grüße aus Köln 🌧 heute', '東京タワーの夜景がきれい', '🐙🦑🐠🐡🦐🦀🐚🐳🐋🦈🐊🐢']) {
    const invited = await inviteUser(app);
    const res = await request({ url: '/v1/activation', body: { token: invited.token, password } });
    t.equal(res.status, 200, `accepted as it is: ${JSON.stringify(password)}`);
    t.equal((await login(request, invited.user.email, password)).status, 200, `signs in: ${JSON.stringify(password)}`);
    t.equal((await login(request, invited.user.email, password.trim() === password ? `${password} ` : password.trim())).body.code, 'invalid_credentials', 'spaces are significant');
  }
});

t.test('blocklist and context words apply on reset and change too (e-mail local part, organisation, shop)', async (t) => {
  // TEST_ENV: SHOP_NAME "ALSO Webshop".
  const { app } = await buildTestApp(t);
  const request = api(app);
  const org = await createOrganization(app.ctx.db, { name: 'Kessler Elektro' });
  const { user } = await createUser(app.ctx.db, app, { organizationId: org.id, email: 'marta.lindqvist@example.test' });

  const refused: [string, string][] = [
    ['password123456', 'password_common'],
    ['Sunshine2024!!', 'password_common'],
    ['marta lindqvist 2026!', 'password_contains_context'],
    ['kessler power tools', 'password_contains_context'],
    ['my webshop account 77', 'password_contains_context'],
    ['short one', 'password_too_short'],
  ];

  await request({ url: '/v1/password/forgot', body: { email: user.email } });
  const mail = await lastMail(app, { toAddress: user.email, template: 'password_reset' });
  const token = tokenFromLink(mail.textBody, '/reset-password');
  for (const [password, code] of refused) {
    const res = await request({ url: '/v1/password/reset', body: { token, password } });
    t.equal(res.status, 422, `reset: ${password}`);
    t.equal(res.body.code, code, `reset: ${password} → ${code}`);
  }

  const { user: other, password } = await createUser(app.ctx.db, app, { organizationId: org.id, email: 'marta.lindqvist2@example.test' });
  const session = await signIn(app, other);
  for (const [newPassword, code] of refused) {
    const res = await request({ method: 'PUT', url: '/v1/me/password', token: session.accessToken, body: { currentPassword: password!, newPassword } });
    t.equal(res.status, 422, `change: ${newPassword}`);
    t.equal(res.body.code, code, `change: ${newPassword} → ${code}`);
  }

  // The link survived every refusal and takes a good password; nothing was changed by the refusals.
  t.equal((await request({ url: '/v1/password/reset', body: { token, password: GOOD_PASSWORD } })).status, 204);
  t.equal((await login(request, other.email, password!)).status, 200, 'the refused changes left the password alone');
});

t.test('no periodic expiry: a password set years ago still signs in and nothing asks to change it', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { token, user } = await inviteUser(app);
  t.equal((await request({ url: '/v1/activation', body: { token, password: GOOD_PASSWORD } })).status, 200);

  clock.advance(3 * 366 * 24 * 3600);
  const res = await login(request, user.email, GOOD_PASSWORD);
  t.equal(res.status, 200, 'three years later the same password still works');
  t.equal(res.body.next, 'mfa_enrollment', 'and leads on to the second factor, not to a password change');
  const session = await signIn(app, user);
  t.notOk(session.requiredActions.some((a: string) => /password/i.test(a)), `no password action required (${session.requiredActions.join(', ')})`);
});

t.test('argon2id: m=19456 KiB, t=2, p=1 by default; production refuses less; hashes carry the configured parameters', async (t) => {
  const defaults = loadConfig({});
  t.same(defaults.argon2, { memoryCost: 19456, timeCost: 2, parallelism: 1 });
  const hash = await createPasswordHasher({ ...defaults.argon2, maxConcurrent: 1, maxQueued: 0 }).hash('correct horse battery staple');
  t.same(parseArgon2Hash(hash), { algorithm: 'argon2id', version: 19, memoryCost: 19456, timeCost: 2, parallelism: 1 }, 'the default hash');

  const prod = PRODUCTION_ENV;
  t.same(loadConfig(prod).argon2, { memoryCost: 19456, timeCost: 2, parallelism: 1 });
  t.throws(() => loadConfig({ ...prod, ARGON2_MEMORY_KIB: '19455' }), { name: 'ConfigError', message: /ARGON2/ }, 'm below 19456 refused');
  t.throws(() => loadConfig({ ...prod, ARGON2_TIME_COST: '1' }), { name: 'ConfigError', message: /ARGON2/ }, 't below 2 refused');
  t.throws(() => loadConfig({ ...prod, ARGON2_PARALLELISM: '0' }), { name: 'ConfigError', message: /ARGON2_PARALLELISM/ }, 'p below 1 refused');

  // Through the API: what activation stores is argon2id with exactly the configured parameters.
  const { app } = await buildTestApp(t, { ARGON2_MEMORY_KIB: '2048', ARGON2_TIME_COST: '2', ARGON2_PARALLELISM: '1' });
  const { token, user } = await inviteUser(app);
  t.equal((await api(app)({ url: '/v1/activation', body: { token, password: GOOD_PASSWORD } })).status, 200);
  const stored = (await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } })).passwordHash!;
  t.same(parseArgon2Hash(stored), { algorithm: 'argon2id', version: 19, memoryCost: 2048, timeCost: 2, parallelism: 1 });
});

t.test('re-hash at login when the memory cost was raised; no re-hash when equal or stronger', async (t) => {
  const { app } = await buildTestApp(t, { ARGON2_MEMORY_KIB: '2048', ARGON2_TIME_COST: '1' });
  const request = api(app);
  const hashWith = (memoryCost: number, timeCost: number) =>
    argon2.hash(GOOD_PASSWORD, { type: argon2.argon2id, memoryCost, timeCost, parallelism: 1 });
  const userWith = async (hash: string) => {
    const { user } = await createUser(app.ctx.db, app, { password: null });
    await app.ctx.db.user.update({ where: { id: user.id }, data: { passwordHash: hash } });
    return user;
  };
  const storedHash = async (id: string) => (await app.ctx.db.user.findUniqueOrThrow({ where: { id } })).passwordHash!;

  // Weaker (m=1024 < configured 2048): re-hashed with the configured parameters on a correct login.
  const weak = await hashWith(1024, 1);
  const u1 = await userWith(weak);
  const wrong = await login(request, u1.email, `${GOOD_PASSWORD}x`);
  t.equal(wrong.body.code, 'invalid_credentials');
  t.equal(await storedHash(u1.id), weak, 'a wrong password re-hashes nothing');
  t.equal((await login(request, u1.email, GOOD_PASSWORD)).status, 200);
  const rehashed = await storedHash(u1.id);
  t.same(parseArgon2Hash(rehashed), { algorithm: 'argon2id', version: 19, memoryCost: 2048, timeCost: 1, parallelism: 1 }, 'stored again at m=2048');
  t.equal((await login(request, u1.email, GOOD_PASSWORD)).status, 200, 'the new hash verifies');
  t.equal(await storedHash(u1.id), rehashed, 'and is not re-hashed again');

  // argon2i (not argon2id) is re-hashed too.
  const legacy = await argon2.hash(GOOD_PASSWORD, { type: argon2.argon2i, memoryCost: 4096, timeCost: 3, parallelism: 1 });
  const u2 = await userWith(legacy);
  t.equal((await login(request, u2.email, GOOD_PASSWORD)).status, 200);
  t.equal(parseArgon2Hash(await storedHash(u2.id))?.algorithm, 'argon2id', 'argon2i replaced by argon2id');

  // Stronger than configured (a lowered configuration): left alone, never downgraded.
  const strong = await hashWith(4096, 2);
  const u3 = await userWith(strong);
  t.equal((await login(request, u3.email, GOOD_PASSWORD)).status, 200);
  t.equal(await storedHash(u3.id), strong, 'no downgrade');
});
