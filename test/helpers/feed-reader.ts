import type pg from 'pg';
import { FEED_START, readFeed } from '../../src/modules/events/event-feed.js';

/** Spends `count` transaction ids on the pool's cluster (one autocommitted statement each), as other work on it would. */
export async function spendTransactionIds(pool: pg.Pool, count: number): Promise<void> {
  for (let i = 0; i < count; i++) await pool.query('SELECT pg_current_xact_id()');
}

/**
 * Reads the feed from its start, as a consumer polling it, until `count` events of `type` were
 * handed out or `attempts` reads were made (a transaction open elsewhere on the server holds the
 * feed back a while): the cursor after them, and how many were read.
 */
export async function readFeedUntil(pool: pg.Pool, type: string, count: number, attempts: number): Promise<{ cursor: string; read: number }> {
  let cursor = FEED_START;
  let read = 0;
  for (let i = 0; i < attempts && read < count; i++) {
    const page = await readFeed(pool, { cursor, limit: 1000 });
    read += page.items.filter((e) => e.type === type).length;
    cursor = page.nextCursor ?? cursor;
    if (read < count) await new Promise((r) => setTimeout(r, 20));
  }
  return { cursor, read };
}
