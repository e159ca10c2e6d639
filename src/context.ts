import type pg from 'pg';
import type { Config } from './config.js';
import type { Db } from './db/client.js';
import type { Clock } from './lib/clock.js';
import type { Keyring } from './lib/secret-box.js';
import type { PasswordHasher } from './lib/password-hasher.js';

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
};

declare module 'fastify' {
  interface FastifyInstance {
    ctx: AppContext;
  }
}
