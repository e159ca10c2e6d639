import pg from 'pg';
import t from 'tap';
import { createTestDatabase } from '../helpers/database.js';

/**
 * Found by the attacker's read of session 31: the feed clock's functions (migration
 * 20261203100000) ran as their owner (SECURITY DEFINER) with the migration's search path
 * ("$user", public), and `numeric + bigint` written as is: an operator public.+(numeric, bigint),
 * created by any role that may create objects in public, was chosen over pg_catalog's and ran as
 * the owner (often a superuser). They now run as their caller, with only pg_catalog on their path,
 * the operator and the table named with their schemas.
 */
t.test("the feed clock's functions run as their caller and use only pg_catalog's operators", async (t) => {
  const { url } = await createTestDatabase(t);
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  t.teardown(() => db.end());
  const { rows } = await db.query<{ proname: string; prosecdef: boolean }>(
    `SELECT proname, prosecdef FROM pg_proc WHERE proname IN ('feed_txid', 'feed_horizon') ORDER BY proname`,
  );
  t.same(rows, [
    { proname: 'feed_horizon', prosecdef: false },
    { proname: 'feed_txid', prosecdef: false },
  ]);
  // Operators someone planted in public, for every pair of types the functions add.
  for (const [left, right] of [
    ['numeric', 'bigint'],
    ['numeric', 'numeric'],
  ]) {
    const fn = `planted_plus_${left}_${right}`;
    await db.query(`CREATE FUNCTION public.${fn}(${left}, ${right}) RETURNS numeric LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'planted operator ran'; END $$`);
    await db.query(`CREATE OPERATOR public.+ (LEFTARG = ${left}, RIGHTARG = ${right}, FUNCTION = public.${fn})`);
  }
  const written = await db.query<{ txid: string }>(`INSERT INTO audit_events (id, type) VALUES (gen_random_uuid(), 'user.blocked') RETURNING txid::text AS txid`);
  t.match(written.rows[0]?.txid, /^\d+$/, 'an audit row gets its place in the feed');
  const horizon = await db.query<{ h: string }>('SELECT feed_horizon()::text AS h');
  t.match(horizon.rows[0]?.h, /^\d+$/);
});
