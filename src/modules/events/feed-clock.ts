import type pg from 'pg';
import { FEED_TYPES_SQL } from './event-feed.js';

type Log = { warn(message: string): void };

/**
 * How far past the restored events a restore moves the feed's clock: room for the transactions a
 * reader saw on the old cluster after the backup was taken (its cursor is ahead of every restored
 * event). 2^32 transactions, a whole epoch of PostgreSQL's transaction ids: 50 days at 1,000 per second.
 */
export const RESTORE_MARGIN = 2n ** 32n;
const XID8_MAX = 2n ** 64n - 1n;
const BIGINT_MAX = 2n ** 63n - 1n;

// The newest event on the feed's index (the same type list as its predicate) and the next
// transaction id this cluster hands out, without taking one.
const STATE_SQL = `
SELECT (SELECT max(txid) FROM audit_events WHERE type IN (${FEED_TYPES_SQL}))::text AS newest,
       pg_snapshot_xmax(pg_current_snapshot())::text AS next_xid`;

/**
 * The cluster's system identifier (the same for its physical copies, another for every other
 * cluster), or null where it cannot be read (PGlite; a managed PostgreSQL that hides
 * pg_control_system).
 */
async function clusterIdentity(pool: pg.Pool): Promise<string | null> {
  try {
    const { rows } = await pool.query<{ id: string | null }>('SELECT system_identifier::text AS id FROM pg_control_system()');
    return rows[0]?.id ?? null;
  } catch {
    return null;
  }
}

/**
 * The event feed orders events by the id of the transaction that wrote them, on the feed's clock
 * (that id plus feed_clock.shift; migration 20261203100000). A logical backup (pg_dump) restored
 * into another cluster keeps the events' ids, and every reader keeps its cursor, but the new cluster
 * counts transactions on from wherever its own counter stands: events written there could sort
 * before what readers had read, and nobody would get them. Run before the server or a CLI command
 * writes anything (runtime.ts). The clock moves when the database now lives in another cluster than
 * when the service last started on it (the system identifier it recorded), or when its newest event
 * is not older than the next transaction (a restore from before the identifier was recorded, or where
 * it cannot be read): ahead of both the newest event and the next transaction by RESTORE_MARGIN.
 * Otherwise nothing changes but the identifier recorded. The clock's row is locked, so instances
 * starting together move it once.
 */
export async function alignFeedClock(pool: pg.Pool, log: Log): Promise<void> {
  const identity = await clusterIdentity(pool);
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const { rows: clock } = await client.query<{ shift: string; cluster_id: string | null }>(
      'SELECT shift::text AS shift, cluster_id FROM feed_clock WHERE id FOR UPDATE',
    );
    // After the lock, in a snapshot of its own: what another instance committed meanwhile counts.
    const { rows: state } = await client.query<{ newest: string | null; next_xid: string }>(STATE_SQL);
    const shift = BigInt(clock[0]!.shift);
    const recorded = clock[0]!.cluster_id;
    const newest = state[0]!.newest === null ? null : BigInt(state[0]!.newest);
    const nextXid = BigInt(state[0]!.next_xid);
    const next = nextXid + shift;
    const otherCluster = identity !== null && recorded !== null && recorded !== identity;
    const behind = newest !== null && newest >= next;
    if (!otherCluster && !behind) {
      if (identity !== null && recorded !== identity) await client.query('UPDATE feed_clock SET cluster_id = $1 WHERE id', [identity]);
      await client.query('COMMIT');
      return;
    }
    const target = (newest !== null && newest > next ? newest : next) + RESTORE_MARGIN;
    const moved = target - nextXid;
    if (target > XID8_MAX || moved > BIGINT_MAX) throw new Error('the event feed clock cannot move further: its transaction ids are exhausted');
    await client.query('UPDATE feed_clock SET shift = $1::bigint, cluster_id = coalesce($2, cluster_id) WHERE id', [moved.toString(), identity]);
    await client.query('COMMIT');
    const why = otherCluster
      ? `it now lives in another PostgreSQL cluster (system identifier ${identity}, before ${recorded})`
      : `its newest event feed entry, transaction ${newest}, is not older than the next transaction, ${next}`;
    log.warn(
      `this database was restored from a logical backup or moved to another cluster (${why}): the event feed's clock ` +
        `moved ahead by ${moved - shift}, so readers and webhooks get the events written from now on (docs/operations.md, "Backups")`,
    );
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
