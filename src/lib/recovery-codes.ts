import { randomInt } from 'node:crypto';
import { sha256Hex } from './tokens.js';

// No 0/o, 1/l/i: codes are read off paper and typed by hand.
const ALPHABET = '23456789abcdefghjkmnpqrstuvwxyz';
/**
 * 24 characters × log2(31) ≈ 118.9 bits, in six groups of four: at least 112 bits, so a fast hash
 * may store them (ASVS 5.0 6.5.2; with fewer, only a salted password hash may, and a code could
 * then not be looked up by its hash). Until session 30 codes had 12 characters (≈ 59.4 bits); those
 * still work until the user regenerates or uses them (LEGACY_CODE_LENGTH).
 */
const GROUPS = 6;
const GROUP_LENGTH = 4;
const CODE_LENGTH = GROUPS * GROUP_LENGTH;
const LEGACY_CODE_LENGTH = 12;
const NORMALIZED_PATTERN = new RegExp(`^(?:[${ALPHABET}]{${CODE_LENGTH}}|[${ALPHABET}]{${LEGACY_CODE_LENGTH}})$`);
// Longest plausible typed form (spaces around every dash); longer input is not worth normalising.
const MAX_INPUT_LENGTH = 64;
const SEPARATORS = /[\s\-\u2010-\u2015\u2212]/gu;

export const RECOVERY_CODE_COUNT = 10;

export function generateRecoveryCodes(count = RECOVERY_CODE_COUNT): string[] {
  if (!Number.isSafeInteger(count) || count < 1 || count > 100) {
    throw new RangeError(`recovery code count must be 1..100, got ${count}`);
  }
  const codes = new Set<string>();
  while (codes.size < count) codes.add(generateOne());
  return [...codes];
}

export function normalizeRecoveryCode(input: string): string | null {
  if (typeof input !== 'string' || input.length > MAX_INPUT_LENGTH) return null;
  // NFKC folds full-width characters that phone keyboards sometimes produce.
  const normalized = input.normalize('NFKC').toLowerCase().replace(SEPARATORS, '');
  return NORMALIZED_PATTERN.test(normalized) ? normalized : null;
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The stored form of a recovery code: SHA-256 over the code bound to its owner. A code has ~119
 * bits, beyond any brute force of a dumped table (the codes are the one second factor a database
 * dump alone could yield; TOTP secrets are encrypted with a key held outside the database). The
 * binding to the user id dates from the ~59-bit codes still in use (LEGACY_CODE_LENGTH): for them
 * each user's codes must be attacked separately, not every stored code of every user in one pass.
 */
export function hashRecoveryCode(normalized: string, userId: string): string {
  // Hashing raw user input would silently never match a stored hash.
  if (!NORMALIZED_PATTERN.test(normalized)) {
    throw new TypeError('hashRecoveryCode expects the output of normalizeRecoveryCode');
  }
  if (typeof userId !== 'string' || !UUID_PATTERN.test(userId)) throw new TypeError('hashRecoveryCode needs the owner\'s user id');
  return sha256Hex(`recovery-code:${userId.toLowerCase()}:${normalized}`);
}

function generateOne(): string {
  let raw = '';
  // randomInt rejects biased samples, so each character is uniform over the alphabet.
  for (let i = 0; i < CODE_LENGTH; i++) raw += ALPHABET[randomInt(ALPHABET.length)];
  const groups: string[] = [];
  for (let i = 0; i < CODE_LENGTH; i += GROUP_LENGTH) groups.push(raw.slice(i, i + GROUP_LENGTH));
  return groups.join('-');
}
