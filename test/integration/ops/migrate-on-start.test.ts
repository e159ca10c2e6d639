import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import t, { type Test } from 'tap';
import { readyzAfterStart, spawnServer, watchServer } from '../../helpers/server-process.js';
import { createTestDatabase, urlFor } from '../../helpers/database.js';
import { withAdmin } from '../../../scripts/pg-admin.js';

/**
 * Found by session 15's operator review: the server migrated at every start, with no way to skip it,
 * so a role with only the rights to read and write the tables (least privilege, the schema owned
 * by another role) could not run it even on a current schema. MIGRATE_ON_START=false checks the
 * schema instead and refuses to start on an older one.
 */

type Started = { code: number | null; stderr: string; readyz?: number };

/**
 * Starts `src/server.ts` as the image does; once it listens, asks /readyz as a load balancer would
 * (readyzAfterStart: a loaded CI machine once saw one 503 right at the start), then stops it.
 */
async function startServer(t: Test, env: Record<string, string>): Promise<Started> {
  const child = spawnServer(t, env);
  const server = watchServer(child);
  const base = await server.listening;
  let readyz: number | undefined;
  if (base) {
    readyz = await readyzAfterStart(base);
    child.kill('SIGTERM');
  }
  const code = await server.closed;
  return { code, stderr: server.output(), ...(readyz !== undefined ? { readyz } : {}) };
}

t.test('MIGRATE_ON_START=false: a role that may only read and write the tables runs the server on a current schema; an older schema is refused with what to do', async (t) => {
  const { name, url } = await createTestDatabase(t);
  const role = `webshop_app_${randomBytes(4).toString('hex')}`;
  const password = randomBytes(12).toString('hex');
  await withAdmin((admin) => admin.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`));
  const owner = new pg.Client({ connectionString: url });
  await owner.connect();
  await owner.query(`REVOKE CREATE ON SCHEMA public FROM PUBLIC`);
  await owner.query(`GRANT USAGE ON SCHEMA public TO ${role}`);
  await owner.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role}`);
  await owner.end();
  t.teardown(async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query(`DROP OWNED BY ${role}`);
    await c.end();
    await withAdmin((admin) => admin.query(`DROP ROLE IF EXISTS ${role}`));
  });
  const dataDir = await mkdtemp(join(tmpdir(), 'migrate-on-start-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const asApp = new URL(urlFor(name));
  asApp.username = role;
  asApp.password = password;

  const refused = await startServer(t, { DATABASE_URL: asApp.toString(), DATA_DIR: dataDir });
  t.equal(refused.code, 1, 'by default it migrates at start, which this role may not');
  t.match(refused.stderr, /permission denied for schema public/);

  const started = await startServer(t, { DATABASE_URL: asApp.toString(), DATA_DIR: dataDir, MIGRATE_ON_START: 'false' });
  t.equal(started.readyz, 200, 'with MIGRATE_ON_START=false it serves, and is ready');
  t.equal(started.code, 0, 'and stops cleanly');

  // A version's new table before the operator's grant (operations.md, "Migrations"): the event
  // feed's clock (20261203100000). Instances of the previous release, still running, go on writing
  // audit rows (every sign-in writes one; every role may read the clock); this
  // release's start stops, naming the table.
  const ownerAgain = new pg.Client({ connectionString: url });
  await ownerAgain.connect();
  await ownerAgain.query(`REVOKE ALL ON feed_clock FROM ${role}`);
  await ownerAgain.end();
  const previousRelease = new pg.Client({ connectionString: asApp.toString() });
  await previousRelease.connect();
  const written = await previousRelease.query<{ txid: string | null }>(
    `INSERT INTO audit_events (id, type) VALUES (gen_random_uuid(), 'user.blocked') RETURNING txid::text AS txid`,
  );
  await previousRelease.end();
  t.match(written.rows[0]?.txid, /^\d+$/, 'an audit row without the grant, with its place in the feed');
  const ungranted = await startServer(t, { DATABASE_URL: asApp.toString(), DATA_DIR: dataDir, MIGRATE_ON_START: 'false' });
  t.equal(ungranted.code, 1);
  t.match(ungranted.stderr, /permission denied for table feed_clock/);
  t.notOk(ungranted.readyz, 'never listened');

  // A database no migration has touched: refused, saying how to migrate.
  const empty = `webshop_auth_test_${randomBytes(6).toString('hex')}`;
  await withAdmin((admin) => admin.query(`CREATE DATABASE "${empty}"`));
  t.teardown(() => withAdmin((admin) => admin.query(`DROP DATABASE IF EXISTS "${empty}" WITH (FORCE)`)));
  const old = await startServer(t, { DATABASE_URL: urlFor(empty), DATA_DIR: dataDir, MIGRATE_ON_START: 'false' });
  t.equal(old.code, 78, 'a configuration error (EX_CONFIG), as the CLI says it (newcomer review, session 25)');
  t.match(old.stderr, /not migrated for this version .*npm run cli -- migrate/);
  t.notMatch(old.stderr, /\n\s+at /, 'the message, not a stack trace');
  t.notOk(old.readyz, 'never listened');
});
