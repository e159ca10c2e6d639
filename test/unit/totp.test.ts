import { execFileSync } from 'node:child_process';
import t from 'tap';
import { generateSync } from 'otplib';
import {
  TOTP_DIGITS,
  TOTP_PERIOD_SECONDS,
  buildOtpauthUri,
  checkTotp,
  decodeTotpSecret,
  generateTotpSecret,
  hintedStep,
  hotp,
  timeStep,
  totpCode,
} from '../../src/lib/totp.js';

// ASCII "12345678901234567890", the RFC 4226 / RFC 6238 SHA-1 seed.
const RFC_SEED = Buffer.from('12345678901234567890', 'ascii');
const RFC_SEED_BASE32 = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ';

t.test('constants', async (t) => {
  t.equal(TOTP_PERIOD_SECONDS, 30);
  t.equal(TOTP_DIGITS, 6);
});

t.test('RFC 4226 Appendix D', async (t) => {
  const expected = ['755224', '287082', '359152', '969429', '338314', '254676', '287922', '162583', '399871', '520489'];
  expected.forEach((code, counter) => t.equal(hotp(RFC_SEED, counter), code, `counter ${counter}`));
  t.throws(() => hotp(RFC_SEED, -1), RangeError);
  t.throws(() => hotp(RFC_SEED, 0, 5), RangeError);
});

t.test('RFC 6238 Appendix B, SHA-1 rows', async (t) => {
  t.equal(decodeTotpSecret(RFC_SEED_BASE32).toString('ascii'), '12345678901234567890');
  const rows: Array<[number, string]> = [
    [59, '94287082'],
    [1111111109, '07081804'],
    [1111111111, '14050471'],
    [1234567890, '89005924'],
    [2000000000, '69279037'],
    [20000000000, '65353130'],
  ];
  for (const [time, code] of rows) t.equal(totpCode(RFC_SEED_BASE32, time, 8), code, `T=${time}`);
});

t.test('timeStep', async (t) => {
  t.equal(timeStep(0), 0);
  t.equal(timeStep(29), 0);
  t.equal(timeStep(30), 1);
  t.equal(timeStep(59), 1);
  t.equal(timeStep(1111111109), 37037036);
});

t.test('agrees with otplib', async (t) => {
  const secret = generateTotpSecret();
  for (const epoch of [0, 59, 1_700_000_000, 2_000_000_000]) {
    t.equal(totpCode(secret, epoch), generateSync({ secret, epoch }), `epoch ${epoch}`);
  }
});

t.test('agrees with oathtool (CI installs it; missing tool is a failure)', async (t) => {
  const secret = generateTotpSecret();
  for (const epoch of [59, 1111111109, 1_700_000_015, 2_000_000_000]) {
    const out = execFileSync('oathtool', ['--totp', '-b', secret, '--now', `@${epoch}`], { encoding: 'utf8' });
    t.equal(totpCode(secret, epoch), out.trim(), `epoch ${epoch}`);
  }
});

t.test('generateTotpSecret', async (t) => {
  const secret = generateTotpSecret();
  t.match(secret, /^[A-Z2-7]{32}$/, '32 base32 chars (RFC 4648 alphabet)');
  t.notMatch(secret, /=/, 'no padding');
  t.equal(decodeTotpSecret(secret).length, 20, '160 bits');
  t.not(generateTotpSecret(), secret);
});

t.test('buildOtpauthUri', async (t) => {
  const secret = generateTotpSecret();
  const uri = buildOtpauthUri({ issuer: 'ACME Shop', accountName: 'jane.doe+b2b@example.com', secret });
  t.equal(
    uri,
    `otpauth://totp/ACME%20Shop:jane.doe%2Bb2b%40example.com?secret=${secret}&issuer=ACME%20Shop&algorithm=SHA1&digits=6&period=30`,
  );
  const url = new URL(uri);
  t.equal(url.protocol, 'otpauth:');
  t.equal(url.searchParams.get('issuer'), 'ACME Shop');
  t.equal(url.searchParams.get('secret'), secret);
  t.notMatch(uri, /=$|%3D/i, 'secret carries no padding');
  const label = decodeURIComponent(url.pathname.replace(/^\/\/totp\/|^\//, ''));
  t.equal(label.split(':').length, 2, 'exactly one issuer separator');

  const umlaut = buildOtpauthUri({ issuer: 'Händler & Co', accountName: 'a@b.de', secret });
  t.match(umlaut, /^otpauth:\/\/totp\/H%C3%A4ndler%20%26%20Co:a%40b\.de\?/);
  t.match(umlaut, /&issuer=H%C3%A4ndler%20%26%20Co&/, '& in the issuer cannot start a new parameter');

  t.throws(() => buildOtpauthUri({ issuer: 'ACME:Shop', accountName: 'a@b.de', secret }), /issuer must not contain ':'/);
  t.throws(() => buildOtpauthUri({ issuer: 'ACME', accountName: 'x:y@b.de', secret }), /accountName must not contain ':'/);
  t.throws(() => buildOtpauthUri({ issuer: '', accountName: 'a@b.de', secret }), TypeError);
  t.throws(() => buildOtpauthUri({ issuer: 'ACME', accountName: 'a@b.de', secret: `${secret}====` }), TypeError);
});

t.test('checkTotp', async (t) => {
  const secret = RFC_SEED_BASE32;
  // Mid-step so that ±n steps are unambiguous.
  const nowSeconds = 1_700_000_015;
  const nowMs = nowSeconds * 1000 + 123;
  const current = timeStep(nowSeconds);
  const codeAt = (delta: number) => hotp(RFC_SEED, current + delta);

  t.same(checkTotp({ secret, code: codeAt(0), nowMs }), { result: 'valid', step: current });
  t.same(checkTotp({ secret, code: codeAt(-1), nowMs }), { result: 'valid', step: current - 1 });
  t.same(checkTotp({ secret, code: codeAt(1), nowMs }), { result: 'valid', step: current + 1 });
  t.same(checkTotp({ secret, code: codeAt(0), nowMs, lastUsedStep: null }), { result: 'valid', step: current });
  t.same(checkTotp({ secret, code: codeAt(1), nowMs, lastUsedStep: current }), { result: 'valid', step: current + 1 });

  t.same(checkTotp({ secret, code: codeAt(2), nowMs }), { result: 'clock_drift', offsetSeconds: 60, step: current + 2 });
  t.same(checkTotp({ secret, code: codeAt(-2), nowMs }), { result: 'clock_drift', offsetSeconds: -60, step: current - 2 });
  t.same(checkTotp({ secret, code: codeAt(10), nowMs }), { result: 'clock_drift', offsetSeconds: 300, step: current + 10 });
  t.same(checkTotp({ secret, code: codeAt(-10), nowMs }), { result: 'clock_drift', offsetSeconds: -300, step: current - 10 });
  // The code last accepted, sent again 3 steps later: a replay (session 13's review: it was answered
  // as clock drift and counted towards the code lock). An older code that was never accepted is what
  // a slow device shows: drift, so the user is told how to fix the device.
  t.same(checkTotp({ secret, code: codeAt(-3), nowMs, lastUsedStep: current - 3 }), { result: 'replayed', step: current - 3 });
  t.same(checkTotp({ secret, code: codeAt(-10), nowMs, lastUsedStep: current - 10 }), { result: 'replayed', step: current - 10 });
  t.same(checkTotp({ secret, code: codeAt(-3), nowMs, lastUsedStep: current }), {
    result: 'clock_drift',
    offsetSeconds: -90,
    step: current - 3,
  });
  t.same(checkTotp({ secret, code: codeAt(-3), nowMs, lastUsedStep: current - 4 }), {
    result: 'clock_drift',
    offsetSeconds: -90,
    step: current - 3,
  });

  // A code two steps share (RFC seed, steps 2386 and 2394): the closest step wins, so a match in
  // the accepted window is never answered as drift; on a tie the later step.
  t.equal(hotp(RFC_SEED, 2386), hotp(RFC_SEED, 2394), 'fixture: steps 2386 and 2394 share a code');
  const shared = hotp(RFC_SEED, 2386);
  const atStep = (step: number) => (step * 30 + 15) * 1000;
  t.same(checkTotp({ secret, code: shared, nowMs: atStep(2387) }), { result: 'valid', step: 2386 });
  t.same(checkTotp({ secret, code: shared, nowMs: atStep(2393) }), { result: 'valid', step: 2394 });
  t.same(checkTotp({ secret, code: shared, nowMs: atStep(2390) }), { result: 'clock_drift', offsetSeconds: 120, step: 2394 });
  t.same(checkTotp({ secret, code: shared, nowMs: atStep(2387), lastUsedStep: 2386 }), { result: 'replayed', step: 2386 });

  for (const delta of [11, -11]) {
    const code = codeAt(delta);
    const collides = [...Array(21).keys()].some((i) => hotp(RFC_SEED, current - 10 + i) === code);
    t.equal(collides, false, `fixture: step ${delta} code is unique in the window`);
    t.same(checkTotp({ secret, code, nowMs }), { result: 'invalid' }, `step ${delta}`);
  }

  t.same(checkTotp({ secret, code: codeAt(0), nowMs, lastUsedStep: current }), { result: 'replayed', step: current });
  t.same(checkTotp({ secret, code: codeAt(-1), nowMs, lastUsedStep: current }), { result: 'replayed', step: current - 1 });
  t.same(checkTotp({ secret, code: codeAt(0), nowMs, lastUsedStep: current + 1 }), { result: 'replayed', step: current });

  t.same(checkTotp({ secret, code: codeAt(0), nowMs: nowMs + 30_000 }), { result: 'valid', step: current }, 'fixed clock, not Date.now()');
});

t.test('refusedSteps: a code of a step once refused with the hint for the future is spent, also inside the window (ASVS V6 review, session 30)', async (t) => {
  const secret = RFC_SEED_BASE32;
  const nowSeconds = 1_700_000_015;
  const current = timeStep(nowSeconds);
  const at = (step: number) => ((step * 30) + 15) * 1000;
  const code = hotp(RFC_SEED, current + 3);
  const hinted = checkTotp({ secret, code, nowMs: at(current) });
  t.same(hinted, { result: 'clock_drift', offsetSeconds: 90, step: current + 3 });
  t.equal(hintedStep(hinted), current + 3, 'a future step is remembered');
  // Later, its step inside the window (now, and as the step before and after the current one).
  for (const now of [current + 2, current + 3, current + 4]) {
    t.same(checkTotp({ secret, code, nowMs: at(now) }), { result: 'valid', step: current + 3 }, 'without the memory: valid');
    t.same(checkTotp({ secret, code, nowMs: at(now), refusedSteps: [current + 3] }), { result: 'replayed', step: current + 3 }, `spent at step ${now - current}`);
  }
  // Still future: spent too, not hinted again (nothing new to remember).
  t.same(checkTotp({ secret, code, nowMs: at(current + 1), refusedSteps: [current + 3] }), { result: 'replayed', step: current + 3 });
  // Only that step: the codes of the others still work, and are still hinted.
  t.same(checkTotp({ secret, code: hotp(RFC_SEED, current), nowMs: at(current), refusedSteps: [current + 3] }), { result: 'valid', step: current });
  t.same(checkTotp({ secret, code: hotp(RFC_SEED, current + 4), nowMs: at(current), refusedSteps: [current + 3] }), {
    result: 'clock_drift',
    offsetSeconds: 120,
    step: current + 4,
  });
  // A past step's hint (a slow device) cannot become valid later: nothing to remember.
  t.equal(hintedStep(checkTotp({ secret, code: hotp(RFC_SEED, current - 3), nowMs: at(current) })), null);
  t.equal(hintedStep(checkTotp({ secret, code: hotp(RFC_SEED, current), nowMs: at(current) })), null);
  t.equal(hintedStep({ result: 'invalid' }), null);
});

t.test('checkTotp on garbage never throws', async (t) => {
  const secret = RFC_SEED_BASE32;
  const nowMs = 1_700_000_015_000;
  const code = totpCode(secret, nowMs / 1000);
  const cases: Array<[string, unknown]> = [
    ['empty code', { secret, code: '', nowMs }],
    ['5 digits', { secret, code: code.slice(1), nowMs }],
    ['7 digits', { secret, code: `${code}0`, nowMs }],
    ['letters', { secret, code: 'abcdef', nowMs }],
    ['spaced', { secret, code: `${code.slice(0, 3)} ${code.slice(3)}`, nowMs }],
    ['full-width digits', { secret, code: '１２３４５６', nowMs }],
    ['number code', { secret, code: Number(code), nowMs }],
    ['undefined code', { secret, nowMs }],
    ['bad base32 secret', { secret: 'not base32!', code, nowMs }],
    ['empty secret', { secret: '', code, nowMs }],
    ['short secret', { secret: 'GEZDGNBV', code, nowMs }],
    ['secret object', { secret: {}, code, nowMs }],
    ['NaN clock', { secret, code, nowMs: Number.NaN }],
    ['negative clock', { secret, code, nowMs: -1 }],
    ['NaN lastUsedStep', { secret, code, nowMs, lastUsedStep: Number.NaN }],
    ['string lastUsedStep', { secret, code, nowMs, lastUsedStep: '5' }],
    ['null input', null],
  ];
  for (const [name, input] of cases) {
    t.same(checkTotp(input as Parameters<typeof checkTotp>[0]), { result: 'invalid' }, name);
  }
  t.same(checkTotp({ secret, code: hotp(RFC_SEED, 0), nowMs: 5_000 }), { result: 'valid', step: 0 }, 'near epoch 0, negative steps are skipped');
});

t.test('a secret below 128 bits is refused even with its own current code (mutation review, session 22)', async (t) => {
  const nowSeconds = 1_700_000_015;
  const nowMs = nowSeconds * 1000;
  // 80 bits: a well-formed base32 secret, and the code it really produces now.
  const short = 'GEZDGNBVGY3TQOJQ';
  t.equal(decodeTotpSecret(short).length, 10, 'fixture: 10-byte secret');
  t.same(checkTotp({ secret: short, code: totpCode(short, nowSeconds), nowMs }), { result: 'invalid' }, '80 bits');
  const almost = 'GEZDGNBVGY3TQOJQGEZDGNA'; // 14 bytes
  t.equal(decodeTotpSecret(almost).length, 14, 'fixture: 14-byte secret');
  t.same(checkTotp({ secret: almost, code: totpCode(almost, nowSeconds), nowMs }), { result: 'invalid' }, '112 bits');
  const floor = 'GEZDGNBVGY3TQOJQGEZDGNBVGY'; // 16 bytes
  t.equal(decodeTotpSecret(floor).length, 16, 'fixture: 16-byte secret');
  t.same(checkTotp({ secret: floor, code: totpCode(floor, nowSeconds), nowMs }), { result: 'valid', step: timeStep(nowSeconds) }, '128 bits is enough');
});

t.test('a negative clock is refused even for a code of a step near epoch 0 (mutation review, session 22)', async (t) => {
  t.same(checkTotp({ secret: RFC_SEED_BASE32, code: hotp(RFC_SEED, 0), nowMs: -1 }), { result: 'invalid' });
  t.same(checkTotp({ secret: RFC_SEED_BASE32, code: hotp(RFC_SEED, 0), nowMs: -29_000 }), { result: 'invalid' });
});
