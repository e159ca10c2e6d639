import type pg from 'pg';
import type { Config } from './config.js';
import type { Db } from './db/client.js';
import type { Clock } from './lib/clock.js';
import type { Keyring } from './lib/secret-box.js';
import type { PasswordHasher } from './lib/password-hasher.js';
import type { MailTransport } from './modules/mail/mail.transport.js';
import type { SigningKeyManager } from './modules/sessions/signing-keys.js';

/**
 * The explicit dependencies every service receives. Services import no Fastify; routes pass
 * `app.ctx` (or parts of it) to them.
 */
export type AppContext = {
  config: Config;
  db: Db;
  pool: pg.Pool;
  clock: Clock;
  keyring: Keyring;
  hasher: PasswordHasher;
  /** Where the mail worker delivers outbox rows (SMTP, or the log without SMTP_URL; tests: an SMTP sink). */
  mailTransport: MailTransport;
  /** JWT signing/verification keys, held in memory (loaded at startup, refreshed in the background). */
  signer: SigningKeyManager;
};

declare module 'fastify' {
  interface FastifyInstance {
    ctx: AppContext;
  }
}
