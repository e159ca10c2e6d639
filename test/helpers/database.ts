import { randomBytes } from 'node:crypto';
import type { Test } from 'tap';
import { migrate, readMigrations } from '../../src/db/migrate.js';
import { withAdmin, urlFor } from '../../scripts/pg-admin.js';

/**
 * Each test file gets its own database, cloned from a migrated template (fast), dropped at the end.
 * The template's name carries a hash of the migrations, so changing a migration builds a new one.
 * Points at the machine's PostgreSQL; override with TEST_DATABASE_URL (any database on the server).
 */
export { ADMIN_URL, urlFor } from '../../scripts/pg-admin.js';

const quiet = { info: () => undefined, warn: () => undefined };

async function ensureTemplate(): Promise<string> {
  const migrations = await readMigrations();
  const { createHash } = await import('node:crypto');
  const digest = createHash('sha256').update(migrations.map((m) => `${m.name}:${m.checksum}`).join('\n')).digest('hex');
  const template = `webshop_auth_tpl_${digest.slice(0, 16)}`;
  await withAdmin(async (admin) => {
    // Test files run in parallel: one of them builds the template, the others wait here.
    await admin.query('SELECT pg_advisory_lock(8675309)');
    try {
      const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [template]);
      if (exists.rowCount) return;
      const building = `${template}_build`;
      await admin.query(`DROP DATABASE IF EXISTS "${building}"`);
      await admin.query(`CREATE DATABASE "${building}"`);
      await migrate(urlFor(building), quiet);
      await admin.query(`ALTER DATABASE "${building}" RENAME TO "${template}"`);
    } finally {
      await admin.query('SELECT pg_advisory_unlock(8675309)');
    }
  });
  return template;
}

/** Creates a fresh, migrated database for this test file and drops it when the file ends. */
export async function createTestDatabase(t: Test): Promise<{ name: string; url: string }> {
  const template = await ensureTemplate();
  const name = `webshop_auth_test_${randomBytes(6).toString('hex')}`;
  await withAdmin((admin) => admin.query(`CREATE DATABASE "${name}" TEMPLATE "${template}"`));
  t.teardown(() => withAdmin((admin) => admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)));
  return { name, url: urlFor(name) };
}

/** Creates an empty database (no migrations) for this test and drops it when the test ends. */
export async function createEmptyDatabase(t: Test): Promise<string> {
  const name = `webshop_auth_empty_${randomBytes(6).toString('hex')}`;
  await withAdmin((admin) => admin.query(`CREATE DATABASE "${name}"`));
  t.teardown(() => withAdmin((admin) => admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)));
  return urlFor(name);
}
