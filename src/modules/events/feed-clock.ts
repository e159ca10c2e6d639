import type pg from 'pg';
import { FEED_EVENT_TYPES } from './event-feed.js';

type Log = { warn(message: string): void };

/**
 * How far past the restored events a restore moves the feed's clock: room for the transactions a
 * reader saw on the old cluster after the backup was taken (its cursor is ahead of every restored
 * event). 2^32 transactions, a whole epoch of PostgreSQL's transaction ids: 50 days at 1,000 per second.
 */
export const RESTORE_MARGIN = 2n ** 32n;
const XID8_MAX = 2n ** 64n - 1n;
const BIGINT_MAX = 2n ** 63n - 1n;

const FEED_TYPES_SQL = FEED_EVENT_TYPES.map((t) => `'${t}'`).join(', ');
// The newest event on the feed's index (the same type list as its predicate) and the next
// transaction id this cluster hands out, without taking one.
const STATE_SQL = `
SELECT (SELECT max(txid) FROM audit_events WHERE type IN (${FEED_TYPES_SQL}))::text AS newest,
       pg_snapshot_xmax(pg_current_snapshot())::text AS next_xid`;

/**
 * The event feed orders events by the id of the transaction that wrote them, on the feed's clock
 * (that id plus feed_clock.shift; migration 20261203100000). A logical backup (pg_dump) restored
 * into another cluster keeps the events' ids, and every reader keeps its cursor, but the new cluster
 * counts transactions from the start again: events written there would sort before everything
 * restored, below every reader's cursor, and nobody would get them. Run before the server or a CLI
 * command writes anything (runtime.ts): when the newest event is not older than the next
 * transaction, the database was restored so, and the clock moves ahead of the newest event by
 * RESTORE_MARGIN. Otherwise nothing changes. The clock's row is locked, so instances starting
 * together move it once.
 */
export async function alignFeedClock(pool: pg.Pool, log: Log): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const { rows: clock } = await client.query<{ shift: string }>('SELECT shift::text AS shift FROM feed_clock WHERE id FOR UPDATE');
    // After the lock, in a snapshot of its own: what another instance committed meanwhile counts.
    const { rows: state } = await client.query<{ newest: string | null; next_xid: string }>(STATE_SQL);
    const shift = BigInt(clock[0]!.shift);
    const newest = state[0]!.newest === null ? null : BigInt(state[0]!.newest);
    const next = BigInt(state[0]!.next_xid) + shift;
    if (newest === null || newest < next) {
      await client.query('COMMIT');
      return;
    }
    const moved = newest + RESTORE_MARGIN - BigInt(state[0]!.next_xid);
    if (newest + RESTORE_MARGIN > XID8_MAX || moved > BIGINT_MAX) throw new Error('the event feed clock cannot move further: its transaction ids are exhausted');
    await client.query('UPDATE feed_clock SET shift = $1::bigint WHERE id', [moved.toString()]);
    await client.query('COMMIT');
    log.warn(
      `this database was restored from a logical backup (its newest event feed entry, transaction ${newest}, is not older than ` +
        `the next transaction, ${next}): the event feed's clock moved ahead by ${moved - shift}, so readers and webhooks get the ` +
        'events written from now on (docs/operations.md, "Backups")',
    );
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}
