import { defineErrors } from '../../errors.js';

/**
 * Error codes of the MFA module (login second step, enrolment, self-service MFA management).
 * Extras the client may rely on:
 *  - mfa_code_invalid: `hint: "clock_drift"` + `offsetSeconds` when the code matched a step 2..10
 *    away from server time; `attemptsRemaining` on login challenges.
 *  - mfa_code_reused / recovery_code_invalid: `attemptsRemaining` on login challenges.
 *  - mfa_locked, mfa_enrollment_in_progress: `retryAfter` (seconds), also sent as the Retry-After header.
 * A blocked user gets the accounts module's account_blocked (with whom to contact).
 */
export const mfaErrors = defineErrors({
  challenge_invalid: { status: 401, title: 'The login challenge is not valid; log in again' },
  challenge_expired: { status: 410, title: 'The login challenge has expired; log in again' },
  challenge_used: { status: 410, title: 'The login challenge was already used or replaced by a newer login' },
  challenge_exhausted: { status: 410, title: 'Too many wrong codes for this login challenge; log in again' },
  challenge_step_mismatch: { status: 409, title: 'This login challenge expects a different step' },
  challenge_in_use: { status: 409, title: 'Another request with this login challenge is in progress' },
  mfa_code_invalid: { status: 400, title: 'The one-time code is not valid' },
  mfa_code_reused: { status: 400, title: 'This one-time code was already used; wait for the next one' },
  recovery_code_invalid: { status: 400, title: 'The recovery code is unknown or was already used' },
  mfa_locked: { status: 423, title: 'Too many wrong codes; code entry is temporarily locked' },
  mfa_already_enrolled: { status: 409, title: 'MFA is already set up for this account' },
  mfa_not_enrolled: { status: 409, title: 'MFA is not set up for this account' },
  mfa_enrollment_not_started: { status: 409, title: 'Start the MFA enrolment first' },
  mfa_enrollment_in_progress: { status: 409, title: 'Two-step login is being set up in a signed-in session of this account' },
  reauthentication_failed: { status: 403, title: 'The password is not correct' },
});
