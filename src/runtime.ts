import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import { ConfigError, type Config } from './config.js';
import { openDatabase, type Database } from './db/client.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from './db/embedded.js';
import { migrate, pendingMigrations } from './db/migrate.js';
import { generateKey, parseKeyring, type Keyring } from './lib/secret-box.js';
import { alignFeedClock } from './modules/events/feed-clock.js';

type Log = Pick<FastifyBaseLogger, 'info' | 'warn'>;

/**
 * Resolves what the server and the CLI need before the app can run: the database (embedded when
 * DATABASE_URL is unset), migrations, and the encryption keyring (dev keys persisted under DATA_DIR).
 */
export type Runtime = { database: Database; keyring: Keyring; databaseUrl: string; close(): Promise<void> };

/**
 * `ownEmbedded` (the server): the embedded database must be this process's own. A second `npm start`
 * on the same DATA_DIR would otherwise serve from the first one's database and fail for good once
 * that one stops; the CLI, beside a running `npm start`, uses its database.
 */
export async function openRuntime(config: Config, log: Log, options: { migrate: boolean; ownEmbedded?: boolean }): Promise<Runtime> {
  let embedded: EmbeddedPostgres | undefined;
  let databaseUrl = config.databaseUrl;
  if (!databaseUrl) {
    embedded = await startEmbeddedPostgres(config.dataDir);
    databaseUrl = embedded.url;
    if (embedded.shared && options.ownEmbedded) {
      throw new ConfigError(
        `The embedded database in ${join(config.dataDir, 'pglite')} is already served by process ${embedded.shared.pid} ` +
          '(another `npm start`, or a CLI command): stop it first, or give this server another DATA_DIR.',
      );
    }
    if (embedded.shared) log.info(`using the embedded PostgreSQL served by process ${embedded.shared.pid} (the running \`npm start\`)`);
    else log.warn(
      `!!! DATABASE_URL is not set: using the EMBEDDED PostgreSQL (PGlite) in ${join(config.dataDir, 'pglite')}. ` +
        'This is for DEVELOPMENT ONLY. Set DATABASE_URL for anything real. !!!',
    );
  }
  if (options.migrate) {
    const { applied, alreadyApplied } = await migrate(databaseUrl, { info: (m) => log.info(m), warn: (m) => log.warn(m) });
    log.info(`the schema is current: ${applied.length} migration(s) applied now, ${alreadyApplied.length} before`);
  } else {
    try {
      const pending = await pendingMigrations(databaseUrl);
      if (pending.length > 0) {
        throw new ConfigError(
          `The database is not migrated for this version (${pending.length} pending, the first ${pending[0]}): ` +
            'run `npm run cli -- migrate` (as a role that may change the schema), or start the server with MIGRATE_ON_START=true.',
        );
      }
    } catch (err) {
      await embedded?.stop();
      throw err;
    }
  }
  // PGlite runs one session underneath; a single pooled connection avoids lock-step waits.
  // PGlite (WASM) can be slow to answer on a busy machine; a dropped connect there is not an outage.
  const database = embedded
    ? openDatabase(databaseUrl, { max: 1, connectTimeoutMs: 15_000, queryTimeoutMs: config.databaseQueryTimeoutMs, preparedStatements: false })
    : openDatabase(databaseUrl, { max: config.databasePoolMax, queryTimeoutMs: config.databaseQueryTimeoutMs });
  try {
    // Before anything is written: after a restore from a logical backup, new events must not sort before the restored ones.
    await alignFeedClock(database.pool, log);
  } catch (err) {
    await database.close();
    await embedded?.stop();
    throw err;
  }
  return {
    database,
    databaseUrl,
    keyring: resolveKeyring(config, log),
    async close() {
      await database.close();
      await embedded?.stop();
    },
  };
}

function resolveKeyring(config: Config, log: Log): Keyring {
  if (config.encryptionKeys) return parseKeyring(config.encryptionKeys, config.encryptionKeyCurrent);
  // Production never gets here (config refuses to start without ENCRYPTION_KEYS).
  const file = join(config.dataDir, 'dev-secrets.json');
  let spec: string;
  if (existsSync(file)) {
    spec = (JSON.parse(readFileSync(file, 'utf8')) as { encryptionKeys: string }).encryptionKeys;
  } else {
    mkdirSync(config.dataDir, { recursive: true });
    spec = `dev-1:${generateKey()}`;
    writeFileSync(file, JSON.stringify({ encryptionKeys: spec }, null, 2), { mode: 0o600 });
  }
  log.warn(`ENCRYPTION_KEYS is not set: using development keys from ${file}. Never do this in production.`);
  return parseKeyring(spec);
}
