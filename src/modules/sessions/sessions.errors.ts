import { defineErrors } from '../../errors.js';

/** Error codes of sessions, tokens and authentication (stable: clients switch on them). */
export const sessionErrors = defineErrors({
  mfa_enrollment_required: { status: 403, title: 'Set up two-step login first' },
  token_in_query: { status: 401, title: 'Tokens must not be sent in the URL' },
  invalid_client: { status: 401, title: 'Client authentication failed' },
  refresh_token_invalid: { status: 401, title: 'The refresh token is not valid' },
  refresh_token_expired: { status: 401, title: 'The session has expired' },
  refresh_token_reused: { status: 401, title: 'The refresh token was already used; the session has been ended' },
  refresh_conflict: { status: 409, title: 'This refresh token was just used by a concurrent request' },
});
