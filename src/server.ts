import closeWithGrace from 'close-with-grace';
import { pino } from 'pino';
import { buildApp } from './app.js';
import { SHUTDOWN, shutDown } from './http/shutdown.js';
import { ConfigError, developmentModeWarning, loadConfig, startupWarnings } from './config.js';
import { lowerThreadpoolPriority } from './lib/threadpool-priority.js';
import { asciiOnlyLocaleWarning } from './db/locale-check.js';
import { loggerOptions } from './logger.js';
import { openRuntime } from './runtime.js';

/** Entry point: config → runtime (database, migrations, keys) → app → listen; graceful shutdown. */
async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const logger = pino(loggerOptions(config) as pino.LoggerOptions);
  // The embedded development database is always migrated: nobody else would.
  const runtime = await openRuntime(config, logger, { migrate: config.migrateOnStart || !config.databaseUrl, ownEmbedded: true });
  const relaxed = developmentModeWarning(config);
  if (relaxed) logger.warn(relaxed);
  for (const warning of startupWarnings(config)) logger.warn(warning);
  const app = await buildApp({ config, database: runtime.database, keyring: runtime.keyring, logger });
  const localeWarning = await asciiOnlyLocaleWarning(runtime.database.pool);
  if (localeWarning) logger.warn(localeWarning);

  // At most 8 s, inside the 10 s a container runtime waits after SIGTERM before it kills (docker
  // stop); the timeline is in http/shutdown.ts. After an error: no /readyz delay, straight to close.
  closeWithGrace({ delay: SHUTDOWN.KILL_MS, logger }, async ({ signal, err }) => {
    if (err) {
      logger.error({ err }, 'shutting down after an error');
      await app.close();
    } else {
      logger.info({ signal }, 'shutting down: /readyz answers 503, then in-flight requests are finished');
      await shutDown(app);
    }
    await runtime.close();
  });

  // Hashing threads yield the CPU to the event loop (see the module); once, before serving.
  const { threadNice, threadpoolSize } = config.hashQueue;
  const lowered = await lowerThreadpoolPriority({ nice: threadNice, poolSize: threadpoolSize });
  if (lowered.length > 0) logger.info({ threads: lowered.length, niceAboveMainThread: threadNice }, 'libuv pool thread priority lowered');
  else if (threadNice > 0 && process.platform === 'linux') {
    logger.warn({ poolSize: threadpoolSize }, 'could not identify or lower the libuv pool threads (or the process already runs at nice 19): their priority is unchanged');
  }

  await app.listen({ host: config.host, port: config.port });
}

main().catch((err: unknown) => {
  // A bad setting, or a database this version cannot run on (not migrated, keys it cannot open):
  // what to do, not a stack trace.
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(78); // EX_CONFIG
  }
  process.stderr.write(`webshop-auth failed to start: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
