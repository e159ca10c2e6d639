import { randomUUID } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { sha256Hex } from '../lib/tokens.js';

/**
 * Applies prisma/migrations/<name>/migration.sql in order, keeping Prisma's own `_prisma_migrations`
 * bookkeeping (same DDL, checksum, advisory lock), so `prisma migrate deploy` on a machine with
 * Prisma's native engine agrees about what is applied. Unlike Prisma, each migration runs in a
 * transaction: a failure leaves no half-applied schema, and its row says so (rolled back, as
 * `prisma migrate resolve --rolled-back` would mark it), so the next start tries it again — once the
 * cause is fixed (a data conflict, a lock timeout) it applies without a manual step. Only a failed
 * row left by something else (Prisma's own non-transactional deploy) blocks, with the repair named.
 *
 * A migration waits at most `lockTimeoutMs` for any lock: a statement waiting for a table's lock
 * (an index swapped, a trigger added) holds up every statement queued behind it — the running
 * instances' sign-ins among them — for as long as whatever holds the lock runs (a SIEM export, a
 * pg_dump). Past that it is rolled back, gives way, and is tried again after `retryDelayMs`, until
 * `maxWaitMs` have passed; so is one PostgreSQL rolled back to break a deadlock.
 */

export const MIGRATIONS_DIR = fileURLToPath(new URL('../../prisma/migrations', import.meta.url));
const PRISMA_ADVISORY_LOCK = 72707369;

const BOOKKEEPING_DDL = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
)`;

export type MigrationFile = { name: string; sql: string; checksum: string };
export type LockWaits = { lockTimeoutMs: number; retryDelayMs: number; maxWaitMs: number };
export const DEFAULT_LOCK_WAITS: LockWaits = { lockTimeoutMs: 2000, retryDelayMs: 5000, maxWaitMs: 15 * 60_000 };
export type MigrateResult = { applied: string[]; alreadyApplied: string[] };
type Log = { info(msg: string): void; warn(msg: string): void };

export class MigrationError extends Error {
  override name = 'MigrationError';
}

export async function readMigrations(dir = MIGRATIONS_DIR): Promise<MigrationFile[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const names = entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
  return Promise.all(
    names.map(async (name) => {
      const sql = await readFile(join(dir, name, 'migration.sql'), 'utf8');
      return { name, sql, checksum: sha256Hex(sql) };
    }),
  );
}

export async function migrate(databaseUrl: string, log: Log, dir = MIGRATIONS_DIR, lockWaits = DEFAULT_LOCK_WAITS): Promise<MigrateResult> {
  const migrations = await readMigrations(dir);
  return withClient(databaseUrl, async (client) => {
    await client.query('SELECT pg_advisory_lock($1)', [PRISMA_ADVISORY_LOCK]);
    try {
      return await applyPending(client, migrations, log, lockWaits);
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [PRISMA_ADVISORY_LOCK]);
    }
  });
}

/**
 * The migrations of `dir` not yet applied to the database (none may be applied at all): the CLI's
 * commands other than `migrate` refuse to run on a schema older than their code.
 */
export async function pendingMigrations(databaseUrl: string, dir = MIGRATIONS_DIR): Promise<string[]> {
  const names = (await readMigrations(dir)).map((m) => m.name);
  return withClient(databaseUrl, async (client) => {
    const { rows } = await client.query<{ exists: boolean }>(`SELECT to_regclass('"_prisma_migrations"') IS NOT NULL AS exists`);
    if (!rows[0]?.exists) return names;
    const done = await client.query<{ migration_name: string }>('SELECT migration_name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL');
    const applied = new Set(done.rows.map((r) => r.migration_name));
    return names.filter((name) => !applied.has(name));
  });
}

/** One connection of its own for `work` (the advisory lock is per session), closed afterwards. */
async function withClient<T>(databaseUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

async function applyPending(client: pg.Client, migrations: MigrationFile[], log: Log, lockWaits: LockWaits): Promise<MigrateResult> {
  await client.query(BOOKKEEPING_DDL);
  const { rows } = await client.query<{ migration_name: string; checksum: string; finished_at: Date | null; rolled_back_at: Date | null }>(
    'SELECT migration_name, checksum, finished_at, rolled_back_at FROM "_prisma_migrations" ORDER BY started_at',
  );
  const failed = rows.find((r) => r.finished_at === null && r.rolled_back_at === null);
  if (failed) {
    throw new MigrationError(
      `migration ${failed.migration_name} failed earlier outside this service and may be half applied: repair the schema by hand, ` +
        `then mark it rolled back (UPDATE "_prisma_migrations" SET rolled_back_at = now() WHERE migration_name = '${failed.migration_name}' ` +
        'AND finished_at IS NULL) and start again; see docs/operations.md "Migrations"',
    );
  }
  const done = new Map(rows.filter((r) => r.finished_at !== null).map((r) => [r.migration_name, r.checksum]));
  const result: MigrateResult = { applied: [], alreadyApplied: [] };
  for (const m of migrations) {
    const checksum = done.get(m.name);
    if (checksum !== undefined) {
      if (checksum !== m.checksum) log.warn(`migration ${m.name} was modified after it was applied (checksum differs)`);
      result.alreadyApplied.push(m.name);
      continue;
    }
    await applyOne(client, m, log, lockWaits);
    log.info(`applied migration ${m.name}`);
    result.applied.push(m.name);
  }
  return result;
}

/**
 * A lock not granted within lock_timeout (55P03), or a deadlock PostgreSQL broke by rolling the
 * migration back (40P01: a request that took its locks in another order): tried again.
 */
const GIVES_WAY = new Set(['55P03', '40P01']);
const givesWay = (err: unknown): boolean => GIVES_WAY.has(String((err as { code?: unknown } | null)?.code));

async function applyOne(client: pg.Client, m: MigrationFile, log: Log, lockWaits: LockWaits): Promise<void> {
  const id = randomUUID();
  const giveUpAt = Date.now() + lockWaits.maxWaitMs;
  try {
    for (;;) {
      try {
        await runInTransaction(client, id, m, lockWaits.lockTimeoutMs);
        return;
      } catch (err) {
        if (!givesWay(err) || Date.now() + lockWaits.retryDelayMs > giveUpAt) throw err;
        log.warn(
          `migration ${m.name} waited for a lock another transaction holds (a long read of a table, say; see pg_stat_activity) ` +
            `and gave way to the statements queued behind it (${err instanceof Error ? err.message : String(err)}); trying again in ${lockWaits.retryDelayMs / 1000} s`,
        );
        await new Promise((resolve) => setTimeout(resolve, lockWaits.retryDelayMs));
      }
    }
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    // Recorded for the operator (the error in `logs`), as rolled back: the transaction undid it all.
    await client.query(
      'INSERT INTO "_prisma_migrations" (id, checksum, migration_name, logs, started_at, rolled_back_at, applied_steps_count) VALUES ($1, $2, $3, $4, now(), now(), 0)',
      [id, m.checksum, m.name, message],
    );
    throw new MigrationError(`migration ${m.name} failed: ${message}`);
  }
}

async function runInTransaction(client: pg.Client, id: string, m: MigrationFile, lockTimeoutMs: number): Promise<void> {
  try {
    await client.query('BEGIN');
    await client.query(`SET LOCAL lock_timeout = ${Math.max(1, Math.round(lockTimeoutMs))}`);
    await client.query(
      'INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, applied_steps_count) VALUES ($1, $2, $3, now(), 0)',
      [id, m.checksum, m.name],
    );
    await client.query(m.sql);
    await client.query('UPDATE "_prisma_migrations" SET finished_at = now(), applied_steps_count = 1 WHERE id = $1', [id]);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK');
    throw err;
  }
}
