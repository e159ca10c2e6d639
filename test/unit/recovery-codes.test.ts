import t from 'tap';
import {
  RECOVERY_CODE_COUNT,
  generateRecoveryCodes,
  hashRecoveryCode,
  normalizeRecoveryCode,
} from '../../src/lib/recovery-codes.js';
import { sha256Hex } from '../../src/lib/tokens.js';

const ALPHABET = '23456789abcdefghjkmnpqrstuvwxyz';
const FORMAT = /^[23456789abcdefghjkmnpqrstuvwxyz]{4}(?:-[23456789abcdefghjkmnpqrstuvwxyz]{4}){5}$/;

t.test('count and format', async (t) => {
  t.equal(RECOVERY_CODE_COUNT, 10);
  const codes = generateRecoveryCodes();
  t.equal(codes.length, 10);
  for (const code of codes) t.match(code, FORMAT);
  t.equal(generateRecoveryCodes(3).length, 3);
  t.throws(() => generateRecoveryCodes(0), RangeError);
  t.throws(() => generateRecoveryCodes(1.5), RangeError);
  t.throws(() => generateRecoveryCodes(101), RangeError);
});

t.test('uniqueness', async (t) => {
  const codes = generateRecoveryCodes(100);
  t.equal(new Set(codes).size, 100, 'within one set');
  const many = new Set<string>();
  for (let i = 0; i < 200; i++) for (const code of generateRecoveryCodes()) many.add(code);
  t.equal(many.size, 2000, 'across sets');
});

t.test('entropy', async (t) => {
  t.equal(ALPHABET.length, 31);
  for (const ambiguous of '01ilo') t.notOk(ALPHABET.includes(ambiguous), `no "${ambiguous}"`);
  const bits = 24 * Math.log2(ALPHABET.length);
  // ASVS 5.0 6.5.2: a lookup secret stored with a fast hash needs at least 112 bits.
  t.ok(bits >= 112, `${bits.toFixed(1)} bits per code`);
  t.equal(generateRecoveryCodes(1)[0]!.replaceAll('-', '').length, 24);
  // Every alphabet symbol shows up in every position: no fixed or missing characters.
  const codes = generateRecoveryCodes(100).concat(generateRecoveryCodes(100), generateRecoveryCodes(100));
  const seen = new Set(codes.join('').replaceAll('-', ''));
  t.equal(seen.size, ALPHABET.length, 'whole alphabet used');
  for (let position = 0; position < 29; position += 5) {
    t.ok(new Set(codes.map((c) => c[position])).size > 20, `position ${position} varies`);
  }
});

t.test('normalisation', async (t) => {
  const [code] = generateRecoveryCodes(1);
  const plain = code!.replaceAll('-', '');
  const variants = [
    code!,
    plain,
    code!.toUpperCase(),
    ` ${code} `,
    code!.replaceAll('-', ' '),
    code!.replaceAll('-', ' - '),
    code!.replaceAll('-', '\u2013'),
    `${plain.slice(0, 6)} ${plain.slice(6)}`,
    code!.replace(/[a-z2-9]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 0xfee0)),
  ];
  for (const input of variants) t.equal(normalizeRecoveryCode(input), plain, JSON.stringify(input));

  for (const input of [
    '',
    'abcd-efgh-jkm',
    'abcd-efgh-jkmnp',
    `${plain.slice(0, 23)}`,
    `${plain}2`,
    `${plain.slice(0, 18)}`,
    'abcd-efgh-jk0n',
    'abcd-efgh-jkln',
    'abcd_efgh_jkmn',
    '123456',
    `${code}${' '.repeat(60)}`,
    'x'.repeat(10_000),
  ]) {
    t.equal(normalizeRecoveryCode(input), null, JSON.stringify(input.slice(0, 30)));
  }
  t.equal(normalizeRecoveryCode(42 as unknown as string), null, 'non-string');
});

t.test('a code of the 12-character kind issued before session 30 is still read (its user may not have regenerated)', async (t) => {
  t.equal(normalizeRecoveryCode('ABCD-EFGH-JKMN'), 'abcdefghjkmn');
  t.equal(normalizeRecoveryCode(' abcd efgh jkmn '), 'abcdefghjkmn');
  t.equal(normalizeRecoveryCode('abcd-efgh-jkmn-pqrs-tuvw-xyz2'), 'abcdefghjkmnpqrstuvwxyz2');
});

t.test('hash', async (t) => {
  const userA = '0190f5a2-7c1e-7b3a-9d2e-1f2a3b4c5d6e';
  const userB = '0190f5a2-7c1e-7b3a-9d2e-1f2a3b4c5d6f';
  const normalized = normalizeRecoveryCode('ABCD-EFGH-JKMN')!;
  t.equal(normalized, 'abcdefghjkmn');
  t.equal(hashRecoveryCode(normalized, userA), sha256Hex(`recovery-code:${userA}:abcdefghjkmn`));
  t.equal(hashRecoveryCode(normalized, userA), hashRecoveryCode(normalized, userA.toUpperCase()), 'the id in any letter case');
  t.match(hashRecoveryCode(normalized, userA), /^[0-9a-f]{64}$/);
  t.equal(hashRecoveryCode(normalizeRecoveryCode('abcd efgh jkmn')!, userA), hashRecoveryCode(normalized, userA), 'same code, same hash');
  t.not(hashRecoveryCode('abcdefghjkmp', userA), hashRecoveryCode(normalized, userA));
  t.throws(() => hashRecoveryCode('ABCD-EFGH-JKMN', userA), TypeError, 'raw input is refused');
  // Security review: a dumped table must not be attackable for all users at once.
  t.not(hashRecoveryCode(normalized, userA), hashRecoveryCode(normalized, userB), 'bound to the owner: same code, other user, other hash');
  t.not(hashRecoveryCode(normalized, userA), sha256Hex(normalized), 'not the bare SHA-256 of the code');
  t.throws(() => hashRecoveryCode(normalized, ''), TypeError, 'the owner is required');
});

t.test('the hash is bound only to a user id, not to any other owner string (mutation review, session 22)', async (t) => {
  const normalized = normalizeRecoveryCode('ABCD-EFGH-JKMN')!;
  for (const owner of ['jane@example.com', 'not-a-uuid', '0190f5a2-7c1e-7b3a-9d2e-1f2a3b4c5d6', ' 0190f5a2-7c1e-7b3a-9d2e-1f2a3b4c5d6e']) {
    t.throws(() => hashRecoveryCode(normalized, owner), TypeError, JSON.stringify(owner));
  }
});
