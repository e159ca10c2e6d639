import { randomBytes } from 'node:crypto';

/** A complete, valid production environment: tests remove or weaken one variable at a time. */
export const PRODUCTION_ENV: Readonly<Record<string, string>> = Object.freeze({
  NODE_ENV: 'production',
  DATABASE_URL: 'postgresql://db.internal/auth?sslmode=verify-full',
  SMTP_URL: 'smtp://mail.internal:587?requireTLS=true',
  ENCRYPTION_KEYS: 'k1:' + randomBytes(32).toString('base64'),
  APP_BASE_URL: 'https://shop.example.com',
  JWT_ISSUER: 'https://auth.example.com',
  METRICS_TOKEN: 'metrics-token-of-enough-length',
});
