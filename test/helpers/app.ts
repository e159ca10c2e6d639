import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import type { Test } from 'tap';
import { KEY_RELOAD_INTERVAL_SECONDS } from '../../src/modules/sessions/signing-keys.js';
import { buildApp } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config.js';
import { openDatabase, type Database } from '../../src/db/client.js';
import { parseKeyring } from '../../src/lib/secret-box.js';
import { loggerOptions } from '../../src/logger.js';
import { fakeClock, type FakeClock } from './clock.js';
import { createTestDatabase } from './database.js';
import { TEST_ENCRYPTION_KEYS } from './keys.js';

/** The environment every test app starts from: cheap argon2 (never a mock), quiet, no workers. */
export const TEST_ENV: Record<string, string> = {
  NODE_ENV: 'test',
  LOG_LEVEL: 'info',
  APP_BASE_URL: 'https://shop.example.test',
  JWT_ISSUER: 'https://auth.example.test',
  ARGON2_MEMORY_KIB: '1024',
  ARGON2_TIME_COST: '1',
  ARGON2_PARALLELISM: '1',
  RATE_LIMIT_ENABLED: 'false',
  // Load shedding reacts to the whole machine's load (parallel test files): on only in its own test.
  LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: '0',
  MAIL_WORKER_ENABLED: 'false',
  // The fake clocks of tests jump days ahead; a sweep in the middle of a test would delete its rows.
  RETENTION_SWEEP_INTERVAL_SECONDS: '0',
  SHOP_NAME: 'ALSO Webshop',
};

export type TestApp = {
  app: FastifyInstance;
  config: Config;
  database: Database;
  databaseUrl: string;
  clock: FakeClock;
  /** Every log line the app wrote, as raw JSON text. */
  logs: string[];
};

export type TestAppOptions = {
  /** Runs after buildApp and before ready: e.g. register a tiny route that exercises a plugin. */
  beforeReady?: (app: FastifyInstance) => unknown;
  /** Changes the logger's options (e.g. a deliberately leaky serializer); `logs` still collects its lines. */
  loggerOptions?: (options: pino.LoggerOptions) => pino.LoggerOptions;
};

/** Builds the real app on a fresh database of its own; closes both when the test ends. */
export async function buildTestApp(t: Test, env: Record<string, string> = {}, options: TestAppOptions = {}): Promise<TestApp> {
  const { url } = await createTestDatabase(t);
  const config = loadConfig({ ...TEST_ENV, ...env, DATABASE_URL: url });
  const database = openDatabase(url, { max: 5, queryTimeoutMs: config.databaseQueryTimeoutMs });
  const clock = fakeClock(Date.now());
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const base = loggerOptions(config) as pino.LoggerOptions;
  const logger = pino(options.loggerOptions ? options.loggerOptions(base) : base, sink);
  const keyring = parseKeyring(TEST_ENCRYPTION_KEYS);
  // Key changes are picked up at the reload interval, as before the 5-s check: tests that rotate keys
  // decide themselves when an instance reloads (test/integration/sessions/tokens.test.ts tests the check).
  const app = await buildApp({ config, database, keyring, clock, logger, keyChangeCheckIntervalMs: KEY_RELOAD_INTERVAL_SECONDS * 1000 });
  await options.beforeReady?.(app);
  await app.ready();
  t.teardown(async () => {
    await app.close();
    await database.close();
  });
  return { app, config, database, databaseUrl: url, clock, logs };
}
