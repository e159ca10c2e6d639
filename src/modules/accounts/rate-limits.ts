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
  passwordChange: { max: 10, timeWindow: '15 minutes' },
} as const;
