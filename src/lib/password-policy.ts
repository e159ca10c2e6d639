import unhomoglyph from 'unhomoglyph';
import { createRequire } from 'node:module';

// security.md item 1: 12 code points (NIST allows 8 only with MFA everywhere; we choose 12).
export const PASSWORD_MIN_LENGTH = 12;
// Far above anything a password manager generates; bounds normalisation and hashing work.
export const PASSWORD_MAX_LENGTH = 1024;
/** What a page asking for a new password shows the user (activation, reset). */
export const PASSWORD_POLICY = { minLength: PASSWORD_MIN_LENGTH, maxLength: PASSWORD_MAX_LENGTH } as const;

export type PasswordContext = { email?: string; organizationName?: string; shopName?: string };

/** Where a word the password must not contain comes from: the e-mail address, the organisation or the shop name. */
export type ContextSource = 'email' | 'organization' | 'shop';
const SOURCE_TEXT: Record<ContextSource, string> = { email: 'your e-mail address', organization: 'the organisation name', shop: 'the shop name' };

export type PasswordCheck =
  | { ok: true; normalized: string }
  | {
      ok: false;
      code: 'password_too_short' | 'password_too_long' | 'password_common' | 'password_contains_context';
      detail: string;
      minLength?: number;
      maxLength?: number;
      /** password_contains_context: the word found, so a translated message can name it too. */
      contextWord?: { word: string; source: ContextSource };
    };

type CommonPasswordsPackage = typeof import('@zxcvbn-ts/language-common');

let blocklist: ReadonlySet<string> | undefined;

// The list is the 49k most frequent passwords of Mark Burnett's 10-million-password dump, as
// curated and shipped (MIT) by zxcvbn-ts; loaded synchronously on first use so checkPassword
// stays synchronous and processes that never check a password never pay for it.
export function commonPasswords(): ReadonlySet<string> {
  if (!blocklist) {
    const require = createRequire(import.meta.url);
    const { dictionary } = require('@zxcvbn-ts/language-common') as CommonPasswordsPackage;
    blocklist = new Set(dictionary['passwords-common'].map((p) => p.toLowerCase()));
  }
  return blocklist;
}

export function blocklistSize(): number {
  return commonPasswords().size;
}

const codePoints = (s: string): number => [...s].length;

// "password12345!" is as weak as "password": appending digits or symbols is the most common
// way users satisfy a length rule, so the list is also matched with that suffix removed, once
// keeping digits ("trustno1!!!!" → trustno1) and once without them ("password12345!" → password).
const TRAILING_SYMBOLS = /[\p{P}\p{S}\s]+$/u;
const TRAILING_DECORATION = /[\p{N}\p{P}\p{S}\s]+$/u;

// zxcvbn-ts dropped from its list whatever its pattern matchers already catch (repeats,
// sequences), so "aaaaaaaaaaaa" or "abcdefghijkl" would otherwise pass.
function isTrivialPattern(s: string): boolean {
  const cps = [...s].map((c) => c.codePointAt(0) ?? 0);
  for (let period = 1; period <= 4; period++) {
    if (cps.every((c, i) => i < period || c === cps[i - period])) return true;
  }
  const step = (cps[1] ?? 0) - (cps[0] ?? 0);
  return (step === 1 || step === -1) && cps.every((c, i) => i === 0 || c - (cps[i - 1] ?? 0) === step);
}

function isCommon(lowered: string): boolean {
  const list = commonPasswords();
  if (list.has(lowered) || isTrivialPattern(lowered)) return true;
  return [TRAILING_SYMBOLS, TRAILING_DECORATION].some((suffix) => {
    const base = lowered.replace(suffix, '');
    return base.length > 0 && list.has(base);
  });
}

/** Unicode case folding for comparisons: "GROSSHANDEL" and "Großhandel" are the same word. */
const fold = (s: string): string => s.toUpperCase().toLowerCase();

const lettersAndDigits = (s: string): string => s.replace(/[^\p{L}\p{N}]/gu, '');
/** A word as the user is told it: NFKC, case folded, letters and digits only. */
const readable = (s: string): string => lettersAndDigits(fold(s.normalize('NFKC')));
/** German umlauts as they are spelt without them ("Jörg" is "Joerg" in every e-mail address); ß is "ss" by fold. */
const UMLAUTS: Readonly<Record<string, string>> = { ä: 'ae', ö: 'oe', ü: 'ue' };
const transliterated = (s: string): string => s.replace(/[äöü]/g, (c) => UMLAUTS[c]!);
/**
 * The form in which a password and the account's words are compared: NFKC, case folded, umlauts
 * spelt out, with look-alike characters mapped to one (Unicode's confusables, UTS #39: a Cyrillic
 * "А" is an "A"), letters and digits only.
 */
const compact = (s: string): string => lettersAndDigits(fold(unhomoglyph(transliterated(fold(s.normalize('NFKC'))))));

/**
 * A word of the account's: as the user is told it and compared without look-alike mapping
 * (`word`), and with it (`key`). `key` is null when the mapping shrinks the word below the
 * minimum: some digits' look-alikes are punctuation (Arabic-Indic "٠" → "."), so "٠٠٠٠" would
 * become "" and be found in every password.
 */
type ContextWord = { word: string; key: string | null; source: ContextSource };

// Names are split into words too ("Acme Tools GmbH" → acme, tools, gmbh); words under 4
// characters are skipped because they occur by chance in good passphrases ("AG", "max").
function wordsOf(value: string | undefined, source: ContextSource, minWhole: number): ContextWord[] {
  if (!value) return [];
  const candidates = [value, ...value.split(/[^\p{L}\p{N}]+/u)];
  return candidates.flatMap((candidate, i) => {
    const min = i === 0 ? minWhole : 4;
    const word = readable(candidate);
    const key = compact(candidate);
    return codePoints(word) >= min ? [{ word, key: codePoints(key) >= min ? key : null, source }] : [];
  });
}

function contextWords(context: PasswordContext): ContextWord[] {
  const email = context.email;
  const localPart = email && email.includes('@') ? email.slice(0, email.lastIndexOf('@')) : email;
  return [
    ...wordsOf(localPart, 'email', 3),
    ...wordsOf(context.organizationName, 'organization', 4),
    ...wordsOf(context.shopName, 'shop', 4),
  ];
}

export function checkPassword(password: string, context: PasswordContext): PasswordCheck {
  const tooLong = {
    ok: false,
    code: 'password_too_long',
    detail: `The password must be at most ${PASSWORD_MAX_LENGTH} characters long.`,
    maxLength: PASSWORD_MAX_LENGTH,
  } as const;
  // NFKC shrinks at most ~4 code points into one, so anything this long cannot end up within
  // the limit: reject before spending work on normalising it.
  if (password.length > 16 * PASSWORD_MAX_LENGTH) return tooLong;

  const normalized = password.normalize('NFKC');
  const length = codePoints(normalized);
  // Counted both ways: NFKC composes ("e" + U+0301 is one), and it expands (the one character
  // U+FDFA is 18), so either count alone would let a short password through.
  if (Math.min(length, codePoints(password)) < PASSWORD_MIN_LENGTH) {
    return {
      ok: false,
      code: 'password_too_short',
      detail: `The password must be at least ${PASSWORD_MIN_LENGTH} characters long.`,
      minLength: PASSWORD_MIN_LENGTH,
    };
  }
  if (length > PASSWORD_MAX_LENGTH) return tooLong;

  if (isCommon(fold(normalized))) {
    return {
      ok: false,
      code: 'password_common',
      detail: 'The password is too common or too easy to guess.',
    };
  }

  const plain = readable(normalized);
  const compacted = compact(normalized);
  const hit = contextWords(context).find(({ word, key }) => plain.includes(word) || (key !== null && compacted.includes(key)));
  if (hit) {
    return {
      ok: false,
      code: 'password_contains_context',
      // The word itself, so the user sees what to leave out ("admin" of admin@…, not the whole address).
      detail: `The password must not contain "${hit.word}", which is part of ${SOURCE_TEXT[hit.source]}.`,
      contextWord: { word: hit.word, source: hit.source },
    };
  }
  return { ok: true, normalized };
}
