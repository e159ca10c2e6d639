import { defineErrors } from '../../errors.js';

/**
 * Error codes of the account lifecycle (login password step, activation, passwords).
 * Extras the client may rely on:
 *  - account_blocked: `contact: { support, administrators: [{ name, email }] }` — whom to ask.
 *  - account_locked: `retryAfter` (seconds), also sent as the Retry-After header.
 *  - password_too_short / password_too_long: `minLength` / `maxLength`.
 *  - password_contains_context: `contextWord: { word, source }` — what to leave out, and whence.
 */
export const accountErrors = defineErrors({
  invalid_credentials: { status: 401, title: 'The e-mail address or the password is not correct' },
  // Same definition as the MFA module's (one code, one meaning).
  account_blocked: { status: 403, title: 'The account is blocked' },
  account_locked: { status: 423, title: 'Too many failed sign-in attempts; the account is temporarily locked' },
});

/** The password policy's verdicts (src/lib/password-policy.ts), answered as 422 with the rule broken. */
export const passwordErrors = defineErrors({
  password_too_short: { status: 422, title: 'The password is too short' },
  password_too_long: { status: 422, title: 'The password is too long' },
  password_common: { status: 422, title: 'The password is too common' },
  password_contains_context: { status: 422, title: 'The password contains a word from the account' },
});
