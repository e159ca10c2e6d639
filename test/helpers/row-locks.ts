import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Test } from 'tap';

/**
 * Races made deterministic: a second connection holds rows in an open transaction while the request
 * under test reaches them, then commits. The request must decide on what is committed by then.
 */

/** A connection of its own to the test's database, closed when the test ends. */
export async function openClient(t: Test, url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  t.teardown(() => client.end());
  return client;
}

/**
 * Waits until at least `count` backends of this database wait for a lock (the requests under test).
 * `client` may be the one holding the rows: inside its open transaction pg_stat_activity would keep
 * showing the first snapshot taken, so each check clears it.
 */
export async function waitForLockWaiters(client: pg.Client, count = 1, timeoutMs = 4_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; ; i++) {
    if ((await lockWaiterCount(client)) >= count) return;
    if (Date.now() > deadline) throw new Error(`fewer than ${count} request(s) ever waited for a lock`);
    await sleep(i < 50 ? 2 : 20);
  }
}

/** How many backends of this database wait for a lock now (see waitForLockWaiters on `client`). */
export async function lockWaiterCount(client: pg.Client): Promise<number> {
  await client.query('SELECT pg_stat_clear_snapshot()');
  const { rows } = await client.query<{ n: string }>(
    "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
  );
  return Number(rows[0]?.n);
}
