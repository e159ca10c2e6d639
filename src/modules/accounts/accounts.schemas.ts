import { z } from 'zod';
import { ContactSchema, PROBLEM_CONTENT_TYPE, ProblemSchema, problemHeaders } from '../../http/problem.js';
import { asciiDomain } from '../../lib/email-address.js';
import { PASSWORD_MAX_LENGTH } from '../../lib/password-policy.js';

/**
 * Request and problem schemas shared by the login, activation and password routes.
 */

/** Loose on purpose: the lookup decides, and any string the admin could register must be accepted. */
export const LoginEmailSchema = z
  .string()
  .trim()
  .overwrite(asciiDomain)
  .min(3)
  .max(320)
  .regex(/^[^\s@]+@[^\s@]+$/, 'must be an e-mail address')
  .describe('E-mail address (case-insensitive; an internationalised domain in either form, müller.de or xn--mller-kva.de)');

// The policy counts NFKC code points (≤ 1024); what a client may send before normalising is
// bounded generously here and by the 16 KiB body limit. Never truncated.
const PASSWORD_INPUT_MAX = PASSWORD_MAX_LENGTH * 16;

export const PasswordInputSchema = z.string().min(1).max(PASSWORD_INPUT_MAX).describe('The password as typed (never truncated)');

export const NewPasswordSchema = z
  .string()
  .min(1)
  .max(PASSWORD_INPUT_MAX)
  .describe(
    'New password: at least 12 characters (Unicode code points, both as typed and after NFKC normalisation), at most 1024, no composition rules; ' +
      'rejected (422) when common or containing the e-mail local part, the organisation or the shop name',
  );

export const FlowTokenInputSchema = z.string().min(1).max(512).describe('The token from the e-mail link');

/** What a link's page needs before it asks for a new password (activation, reset): until when, and the rules. */
export const PasswordPageSchema = z.object({
  expiresAt: z.iso.datetime().describe('When the link expires'),
  passwordPolicy: z.object({ minLength: z.number().int(), maxLength: z.number().int() }).describe('For the password form'),
});

export const AccountBlockedProblemSchema = ProblemSchema.extend({
  code: z.literal('account_blocked'),
  contact: ContactSchema.describe('Whom the user can ask to unblock the account'),
}).meta({ id: 'AccountBlockedProblem' });

export const MfaLockedProblemSchema = ProblemSchema.extend({
  code: z.literal('mfa_locked'),
  retryAfter: z.number().int().describe('Seconds until code entry is possible again (also the Retry-After header)'),
  contact: ContactSchema.describe('Whom the user can ask to reset the two-step login when the authenticator is lost'),
}).meta({ id: 'MfaLockedProblem' });

export const AccountLockedProblemSchema = ProblemSchema.extend({
  code: z.literal('account_locked'),
  retryAfter: z.number().int().describe('Seconds until the lock ends (also the Retry-After header)'),
}).meta({ id: 'AccountLockedProblem' });

const problemEntry = (description: string, schema: z.ZodType) => ({
  description,
  content: { [PROBLEM_CONTENT_TYPE]: { schema } },
});

export const accountBlockedResponse = {
  403: problemEntry('account_blocked: the account is blocked (only told after a correct password or a valid link); `contact` says whom to ask', AccountBlockedProblemSchema),
};

/** The login code steps' 423: code entry locked after 10 wrong codes on the account. */
export const mfaLockedResponse = {
  423: {
    ...problemEntry('mfa_locked: 10 wrong codes in a row on the account; try again after Retry-After seconds. `contact` says whom to ask to reset the two-step login when the authenticator is lost', MfaLockedProblemSchema),
    headers: problemHeaders[423],
  },
};

/**
 * The password step's 423: the password locked, or — told only after a correct password — code
 * entry locked, so that no challenge is handed out whose every code would be refused.
 */
export const passwordStepLockedResponse = {
  423: {
    ...problemEntry(
      'account_locked: too many failed password attempts; try again after Retry-After seconds (or reset the password). ' +
        'mfa_locked (only after a correct password): 10 wrong codes in a row; code entry is locked for Retry-After seconds, `contact` says whom to ask to reset the two-step login',
      z.discriminatedUnion('code', [AccountLockedProblemSchema, MfaLockedProblemSchema]),
    ),
    headers: problemHeaders[423],
  },
};

export const accountLockedResponse = {
  423: {
    ...problemEntry('account_locked: too many failed password attempts; try again after Retry-After seconds (or reset the password)', AccountLockedProblemSchema),
    headers: problemHeaders[423],
  },
};
