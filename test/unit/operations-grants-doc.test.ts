import { readdirSync, readFileSync } from 'node:fs';
import t from 'tap';

/**
 * docs/operations.md, "Migrations": with MIGRATE_ON_START=false and no default privileges, the
 * operator grants the service role "the tables that version adds (this one: …)" before starting it.
 * Found by the upgrade review a501cb3 → main: 20261201080000_feed_event_types adds a table the
 * feed and the webhooks read, the paragraph still named only the tables of an earlier release, and
 * an operator following it got 500 internal_error on GET /v1/events ("permission denied for table
 * feed_event_types"), failing webhook passes and a failing `list-webhooks`, while /readyz said ok.
 */
const root = new URL('../..', import.meta.url).pathname;
const operations = readFileSync(`${root}docs/operations.md`, 'utf8');

t.test('the grant paragraph names the tables the newest table-adding migration creates', async (t) => {
  const paragraph = operations.slice(operations.indexOf('With `MIGRATE_ON_START=false` and no default privileges'));
  const named = paragraph.slice(0, paragraph.indexOf('\n\n'));
  t.ok(named.length > 0, 'the paragraph is there');
  const dir = `${root}prisma/migrations`;
  const withTables = readdirSync(dir)
    .filter((name) => /^\d{14}_/.test(name))
    .sort()
    .map((name) => ({ name, tables: [...readFileSync(`${dir}/${name}/migration.sql`, 'utf8').matchAll(/CREATE TABLE "([a-z_]+)"/g)].map(([, table]) => table!) }))
    .filter((m) => m.tables.length > 0);
  const newest = withTables.at(-1)!;
  for (const table of newest.tables) t.match(named, `\`${table}\``, `${newest.name} adds ${table}: the paragraph names it`);
});
