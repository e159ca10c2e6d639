import { z } from 'zod';

/**
 * Text people type that other people read — names of people and organisations (in mails, lists,
 * audit rows) and the operator's --reason: trimmed, one line, and nothing that reads differently
 * from what it stores. Refused: control characters (line breaks, tabs), format characters (bidi
 * overrides, zero-width spaces), line and paragraph separators, private-use and unassigned code
 * points — except the zero-width (non-)joiner, which some scripts' names need (Persian, Indic).
 * A name that starts a second paragraph in an official mail ("Dora\n\nPlease reply with your
 * password") is a phishing text the service would send in its own name.
 */
const VISIBLE_ON_ONE_LINE = /^(?:[^\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cn}]|\u200C|\u200D)*$/u;

export function displayText(maxLength: number) {
  return z
    .string()
    .trim()
    .min(1)
    .max(maxLength)
    .regex(VISIBLE_ON_ONE_LINE, 'no control characters (line breaks, tabs, bidi overrides, zero-width, ...)')
    .regex(/[\p{L}\p{N}]/u, 'at least one letter or digit');
}
