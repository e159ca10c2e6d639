/**
 * What the administration services use from the account, mail and MFA modules, in one place:
 * activation and reset links are issued and mailed exactly as the self-service flows do it.
 */
export { buildLink, enqueueMail, LINK_PATHS } from '../mail/mail.service.js';
export { sendActivation } from '../activation/activation.service.js';
export { sendPasswordResetMail } from '../password/password.service.js';
export { hasMfaToReset, removeMfa } from '../mfa/remove.js';
export { administratorsToAsk } from '../accounts/blocked.js';
