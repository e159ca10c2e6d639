import { z } from 'zod';
import { failsWith, reasonedPattern } from './field-reasons.js';

/**
 * Text people type that other people read — names of people and organisations (in mails, lists,
 * audit rows) and the operator's --reason: trimmed, one line, and nothing that reads differently
 * from what it stores. A name that starts a second paragraph in an official mail ("Dora\n\nPlease
 * reply with your password") is a phishing text the service would send in its own name.
 *
 * Refused: control characters (line breaks, tabs), format characters (bidi overrides, zero-width
 * spaces), line and paragraph separators, private-use and unassigned code points, letters that
 * show as blank, and runs of spaces (of any width). Kept: the zero-width (non-)joiner, which some
 * scripts' names need (Persian, Indic), and the direction marks that names pasted from Hebrew or
 * Arabic text carry (LRM, RLM, ALM). Stored in Unicode's composed form (NFC), in which no script's
 * letter carries more than a few combining marks (Tibetan stacks three): more is "zalgo" text,
 * drawn over the lines above and below it.
 */
/** The format characters kept, as regex escapes (so the published pattern shows them): the zero-width (non-)joiner, LRM, RLM, ALM. */
const KEPT_FORMAT = String.raw`\u200C\u200D\u200E\u200F\u061C`;
const VISIBLE_ON_ONE_LINE = reasonedPattern(new RegExp(`^(?:[^\\p{Cc}\\p{Cf}\\p{Zl}\\p{Zp}\\p{Co}\\p{Cn}]|[${KEPT_FORMAT}])*$`, 'u'), 'control_characters');
const LETTER_OR_DIGIT = reasonedPattern(/[\p{L}\p{N}]/u, 'no_letter_or_digit');
/** Letters that show as blank (Hangul fillers, the braille blank): a "name" of them looks empty. */
const BLANK_LETTERS = /[\u115F\u1160\u3164\uFFA0\u2800]/u;
/** A run of spaces (any width) pushes text to where it reads as a line of its own. */
const SPACE_RUN = /\p{Zs}{2}/u;
/** More combining marks in a row than any composed letter carries (a kept format character ends no letter). */
const STACKED_MARKS = /\p{M}{5}/u;
const KEPT_FORMAT_CHARS = new RegExp(`[${KEPT_FORMAT}]`, 'gu');

/**
 * The text with every character that shows as nothing replaced (Unicode's default-ignorable ones:
 * the kept joiners and direction marks, variation selectors, the combining grapheme joiner, …): a
 * reader sees the text around them joined, and domain names drop them (UTS 46).
 */
export const replaceInvisible = (text: string, by: string): string => text.replace(/\p{Default_Ignorable_Code_Point}/gu, by);

export function displayText(maxLength: number) {
  return z
    .string()
    .trim()
    // One spelling for what reads the same: "Mu" + U+0308 (pasted from a PDF or a macOS file name)
    // is stored as "Mü", so the search box finds it as everyone types it.
    .normalize('NFC')
    .min(1)
    .max(maxLength)
    .regex(VISIBLE_ON_ONE_LINE, 'no control characters (line breaks, tabs, bidi overrides, zero-width, ...)')
    .refine((text) => !BLANK_LETTERS.test(text), failsWith('blank_characters', 'no characters that show as blank'))
    .refine((text) => !SPACE_RUN.test(text), failsWith('space_run', 'no runs of spaces'))
    .refine((text) => !STACKED_MARKS.test(text.replace(KEPT_FORMAT_CHARS, '')), failsWith('stacked_marks', 'no more than four combining marks on one letter'))
    .regex(LETTER_OR_DIGIT, 'at least one letter or digit')
    .describe('One line of visible text: no line breaks, tabs or invisible formatting characters');
}
