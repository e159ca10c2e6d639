/**
 * Per-IP limits of the account routes (security.md item 7), as @fastify/rate-limit route config.
 * Generous enough for a reseller office behind one address, tight enough to make guessing slow;
 * per-account lockout (password-lockout.ts) holds independently of them.
 */
export const ACCOUNT_RATE_LIMITS = {
  login: { max: 30, timeWindow: '1 minute' },
  activationInspect: { max: 30, timeWindow: '1 minute' },
  activation: { max: 10, timeWindow: '1 minute' },
  passwordForgot: { max: 10, timeWindow: '15 minutes' },
  passwordReset: { max: 10, timeWindow: '1 minute' },
  passwordResetInspect: { max: 30, timeWindow: '1 minute' },
  passwordChange: { max: 10, timeWindow: '15 minutes' },
  // Each request mails an address the user chose: few, so nobody is flooded through the shop's mail.
  emailChange: { max: 5, timeWindow: '15 minutes' },
  emailChangeConfirm: { max: 10, timeWindow: '1 minute' },
} as const;
