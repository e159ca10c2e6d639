/**
 * Which rule a field broke, where one field has several of the service's own and zod's code alone
 * (`invalid`, `invalid_format`) does not say which: a person's name breaks one of six. A 400's
 * FieldError carries it as `reason`, so a frontend can say "Der Name darf keine E-Mail-Adresse
 * enthalten" rather than "Ungültiger Name" (German frontend review, session 30: the rule was in the
 * English `message` only).
 */
export const FIELD_ERROR_REASONS = [
  'control_characters',
  'blank_characters',
  'space_run',
  'stacked_marks',
  'no_letter_or_digit',
  'contains_address',
  'email_domain',
] as const;

export type FieldErrorReason = (typeof FIELD_ERROR_REASONS)[number];

export const FIELD_ERROR_REASONS_DESCRIBED: Record<FieldErrorReason, string> = {
  control_characters: 'line breaks, tabs or invisible formatting characters',
  blank_characters: 'characters that show as blank',
  space_run: 'two or more spaces in a row',
  stacked_marks: 'more than four combining marks on one letter',
  no_letter_or_digit: 'not one letter or digit',
  contains_address: 'a web or e-mail address in a name',
  email_domain: "an e-mail address whose domain is no valid (internationalised) domain name",
};

const byPattern = new Map<string, FieldErrorReason>();

/**
 * A pattern for zod's `.regex()` whose failure is answered with `reason`. zod keeps no parameters of
 * a regex check in its issue, only the pattern's text: the reason is found by that.
 */
export function reasonedPattern(pattern: RegExp, reason: FieldErrorReason): RegExp {
  byPattern.set(String(pattern), reason);
  return pattern;
}

/** The second argument of zod's `.refine()`: the (English) message, and `reason` for the FieldError. */
export const failsWith = (reason: FieldErrorReason, message: string) => ({ message, params: { reason } });

/** The reason of a zod issue, as `.refine(…, failsWith(…))` or `.regex(reasonedPattern(…))` gave it. */
export function reasonOf(issue: { params?: unknown; pattern?: unknown }): FieldErrorReason | undefined {
  const given = (issue.params as { reason?: unknown } | undefined)?.reason;
  if (typeof given === 'string' && (FIELD_ERROR_REASONS as readonly string[]).includes(given)) return given as FieldErrorReason;
  return typeof issue.pattern === 'string' ? byPattern.get(issue.pattern) : undefined;
}
