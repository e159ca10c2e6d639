import t from 'tap';
import { buildTestApp } from '../helpers/app.js';
import { api } from '../helpers/http.js';
import { createUser, currentTotp } from '../helpers/factories.js';
import { hashRecoveryCode, normalizeRecoveryCode } from '../../src/lib/recovery-codes.js';
import { sha256Hex } from '../../src/lib/tokens.js';
import { challengeFor, enrolAtLogin } from '../integration/mfa/helpers.js';

/**
 * ASVS 5.0 review (V6 / V9 / V11, level 2), helper v6v9v11.
 */

t.test('ASVS 6.5.2: recovery codes below 112 bits are stored with a password hash and a random salt', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app, { withTotp: false });
  const { tokens } = await enrolAtLogin(t, app, request, await challengeFor(app, user.id, 'mfa_enrollment'));
  const codes = tokens.recoveryCodes as string[];
  const stored = new Set((await app.ctx.db.recoveryCode.findMany({ where: { userId: user.id } })).map((r) => r.codeHash));

  const bits = normalizeRecoveryCode(codes[0]!)!.length * Math.log2(31);
  if (bits >= 112) {
    t.pass(`codes carry ${bits.toFixed(1)} bits: a plain hash is allowed`);
    return;
  }
  for (const code of codes) {
    // Anyone holding the table and the (non-secret) user id can recompute this with one SHA-256 per guess.
    const recomputable = sha256Hex(`recovery-code:${user.id.toLowerCase()}:${normalizeRecoveryCode(code)}`);
    t.notOk(stored.has(recomputable), `a ${bits.toFixed(1)}-bit code is not stored as a salt-free fast hash`);
  }
  for (const hash of stored) t.match(hash, /^\$argon2id\$/, 'stored with an approved password hash (its own random salt)');
});

t.test('a 12-character recovery code issued before session 30 still signs in, once', async (t) => {
  const { app } = await buildTestApp(t);
  const request = api(app);
  const { user } = await createUser(app.ctx.db, app);
  // As an older release stored it.
  await app.ctx.db.recoveryCode.create({ data: { userId: user.id, codeHash: hashRecoveryCode('k7m2xq9p4hzt', user.id) } });
  const used = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), recoveryCode: 'K7M2-XQ9P-4HZT' } });
  t.equal(used.status, 200);
  t.equal(await app.ctx.db.recoveryCode.count({ where: { userId: user.id, usedAt: null } }), 0, 'used');
  const again = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), recoveryCode: 'k7m2xq9p4hzt' } });
  t.equal(again.body.code, 'recovery_code_invalid');
});

t.test('a code refused with the clock_drift hint does not become valid later on the same challenge', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user, totpSecret } = await createUser(app.ctx.db, app);
  const challengeToken = await challengeFor(app, user.id, 'mfa');

  // A guess that happens to match step +3 is refused — and told exactly when it will be valid.
  const guess = currentTotp(app, totpSecret!, 3);
  const hinted = await request({ url: '/v1/auth/login/mfa', body: { challengeToken, code: guess } });
  t.equal(hinted.status, 400);
  t.equal(hinted.body.hint, 'clock_drift');
  t.equal(hinted.body.offsetSeconds, 90);

  // 60 s later the very same refused code lets the guesser in: the accepted window is -1..+10 steps, not ±1.
  clock.advance(60);
  const later = await request({ url: '/v1/auth/login/mfa', body: { challengeToken, code: guess } });
  t.not(later.status, 200, 'the refused (hinted) code must not be accepted afterwards');
});

t.test('the hinted step stays refused on a new challenge; the current code still signs in; the remembered steps do not pile up', async (t) => {
  const { app, clock } = await buildTestApp(t);
  const request = api(app);
  const { user, totpSecret } = await createUser(app.ctx.db, app);
  const factorSteps = async () => (await app.ctx.db.totpFactor.findFirstOrThrow({ where: { userId: user.id, status: 'ACTIVE' } })).hintedSteps;

  const guess = currentTotp(app, totpSecret!, 4);
  const hinted = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), code: guess } });
  t.equal(hinted.body.hint, 'clock_drift');
  t.equal(hinted.body.offsetSeconds, 120);
  t.equal((await factorSteps()).length, 1, 'remembered');

  // A slow device's hint (a past step) is not remembered: that step never comes.
  const slow = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), code: currentTotp(app, totpSecret!, -4) } });
  t.equal(slow.body.hint, 'clock_drift');
  t.equal((await factorSteps()).length, 1, 'a past step is not remembered');

  clock.advance(120);
  const later = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), code: guess } });
  t.equal(later.status, 400, 'not on a fresh challenge either');
  t.equal(later.body.code, 'mfa_code_reused', 'spent: the device whose clock was ahead waits for its next code');
  t.notOk(later.body.hint, 'no hint');
  t.equal((await app.ctx.db.user.findUniqueOrThrow({ where: { id: user.id } })).failedMfaCount, 2, 'not counted towards the code lock (the two hints were)');

  // The owner's device, its clock right, still signs in with the code of the moment.
  clock.advance(30);
  const owner = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), code: currentTotp(app, totpSecret!) } });
  t.equal(owner.status, 200);

  // Steps the window has left behind are forgotten when the next hint is remembered.
  clock.advance(300);
  const next = await request({ url: '/v1/auth/login/mfa', body: { challengeToken: await challengeFor(app, user.id, 'mfa'), code: currentTotp(app, totpSecret!, 5) } });
  t.equal(next.body.hint, 'clock_drift');
  const steps = await factorSteps();
  t.equal(steps.length, 1, 'only the new one');
  t.equal(steps[0], Math.floor(app.ctx.clock.now().getTime() / 30_000) + 5);
});
