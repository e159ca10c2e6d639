import pg from 'pg';
import t from 'tap';
import { readFeed } from '../../src/modules/events/event-feed.js';
import { createTestDatabase } from '../helpers/database.js';

/**
 * Found by the attacker's reads of session 31: the feed clock's first functions (migration
 * 20261203100000) ran as their owner (SECURITY DEFINER) with the migration's search path
 * ("$user", public) and `numeric + bigint` written as is: an operator public.+(numeric, bigint),
 * created by any role that may create objects in public, was chosen over pg_catalog's and ran as
 * the owner (often a superuser); and a function public.feed_horizon(a int DEFAULT 0) made the
 * feed's call of feed_horizon() ambiguous (500s). feed_txid() now runs as its caller with only
 * pg_catalog on its path; the reads name pg_catalog's operators, and call no function of ours.
 */
t.test("the feed clock's function runs as its caller, and neither it nor the feed's reads use an operator planted in public", async (t) => {
  const { url } = await createTestDatabase(t);
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  t.teardown(() => db.end());
  const { rows } = await db.query<{ proname: string; prosecdef: boolean }>(`SELECT proname, prosecdef FROM pg_proc WHERE proname LIKE 'feed\\_%' ORDER BY proname`);
  t.same(rows, [{ proname: 'feed_txid', prosecdef: false }]);
  // Operators someone planted in public, for every pair of types the clock adds.
  for (const [left, right] of [
    ['numeric', 'bigint'],
    ['numeric', 'numeric'],
  ]) {
    const fn = `planted_plus_${left}_${right}`;
    await db.query(`CREATE FUNCTION public.${fn}(${left}, ${right}) RETURNS numeric LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'planted operator ran'; END $$`);
    await db.query(`CREATE OPERATOR public.+ (LEFTARG = ${left}, RIGHTARG = ${right}, FUNCTION = public.${fn})`);
  }
  await db.query(`CREATE FUNCTION public.feed_txid(a int DEFAULT 0) RETURNS xid8 LANGUAGE sql AS $$ SELECT '1'::xid8 $$`);
  const written = await db.query<{ txid: string }>(`INSERT INTO audit_events (id, type) VALUES (gen_random_uuid(), 'user.blocked') RETURNING txid::text AS txid`);
  t.match(written.rows[0]?.txid, /^\d{3,}$/, 'an audit row gets its place in the feed, from the migration\'s function');
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  t.teardown(() => pool.end());
  const page = await readFeed(pool, { limit: 10 });
  t.ok(Array.isArray(page.items), 'the feed reads');
});
