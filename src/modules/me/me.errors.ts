import { defineErrors } from '../../errors.js';

export const meErrors = defineErrors({
  terms_version_mismatch: { status: 422, title: 'This is not the current version of the terms' },
  terms_email_mismatch: { status: 422, title: 'The e-mail address does not match your account' },
});
