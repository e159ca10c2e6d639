import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type pg from 'pg';
import { poolSql, type Sql } from '../../db/sql.js';
import { startPeriodicTask } from '../../lib/periodic-task.js';
import type { Keyring } from '../../lib/secret-box.js';

/**
 * Which server instances run, and which ENCRYPTION_KEYS key ids each holds: every instance writes
 * its row at start and every HEARTBEAT_SECONDS, and removes it when it shuts down cleanly. An
 * operator command that seals under a key (rotate-encryption-key) asks first whether every
 * instance seen within ALIVE_SECONDS seals under that key too (`currentEncryptionKeyId`; one that
 * does not may not even hold it): re-sealing everything under a key the servers lack (a step of the
 * rotation skipped, a wrong env file) makes every TOTP login fail and the signing key unloadable
 * until they get it; an instance that holds it but still seals under the old one goes on writing
 * secrets the old key's removal makes unreadable. Times are the database's (`now()`), so the
 * clocks of the servers and of the operator's machine do not matter. Rows of instances that died
 * without shutting down are ignored after ALIVE_SECONDS and deleted after a day.
 */

export const HEARTBEAT_SECONDS = 30;
/** A row not written for this long belongs to an instance that is gone (three heartbeats missed). */
export const ALIVE_SECONDS = 3 * HEARTBEAT_SECONDS + 10;

type Log = { warn(obj: object, msg: string): void };

export type RunningInstance = {
  id: string;
  hostname: string;
  pid: number;
  startedAt: Date;
  seenAt: Date;
  encryptionKeyIds: string[];
  currentEncryptionKeyId: string;
};

/**
 * `localRateLimits`: this instance counts rate limits in its own memory (RATE_LIMIT_ENABLED without
 * REDIS_URL). Each beat then counts the other live instances and, when there are some, warns (once
 * until they are gone again): every instance grants the limits in full, so N instances let N times
 * as many requests through (docs/operations.md "Where the counters live").
 */
export function startInstanceHeartbeat(pool: pg.Pool, keyring: Keyring, log: Log, options: { localRateLimits?: boolean } = {}): { stop(): Promise<void> } {
  const id = randomUUID();
  let warnedOthers = false;
  const startedAt = new Date();
  const keyIds = [...keyring.keys.keys()];
  const sql = poolSql(pool);
  const beat = async () => {
    await sql(
      `INSERT INTO service_instances (id, hostname, pid, started_at, seen_at, encryption_key_ids, current_encryption_key_id)
       VALUES ($1::uuid, $2, $3::int, $4::timestamptz, now(), $5::text[], $6)
       ON CONFLICT (id) DO UPDATE SET seen_at = now()`,
      [id, hostname(), process.pid, startedAt, keyIds, keyring.currentKeyId],
    );
    await sql(`DELETE FROM service_instances WHERE seen_at < now() - interval '1 day'`, []);
    if (options.localRateLimits) {
      const others = (await runningInstances(sql)).filter((instance) => instance.id !== id).length;
      if (others > 0 && !warnedOthers) {
        log.warn(
          { otherInstances: others },
          'rate limits are counted in this instance\'s memory (REDIS_URL is unset) while other instances share this database: each grants every limit in full; set REDIS_URL on all of them',
        );
      }
      warnedOthers = others > 0;
    }
    return HEARTBEAT_SECONDS * 1000;
  };
  const task = startPeriodicTask({
    firstDelayMs: 0,
    pass: beat,
    failed(err) {
      log.warn({ err: err instanceof Error ? err.message : String(err) }, 'instance heartbeat failed; retrying');
      return HEARTBEAT_SECONDS * 1000;
    },
  });
  return {
    async stop() {
      await task.stop();
      await sql('DELETE FROM service_instances WHERE id = $1::uuid', [id]).catch(() => undefined);
    },
  };
}

/** The instances seen within ALIVE_SECONDS, oldest first. */
export async function runningInstances(sql: Sql): Promise<RunningInstance[]> {
  const rows = await sql<{
    id: string;
    hostname: string;
    pid: number;
    started_at: Date;
    seen_at: Date;
    encryption_key_ids: string[];
    current_encryption_key_id: string;
  }>(
    `SELECT id, hostname, pid, started_at, seen_at, encryption_key_ids, current_encryption_key_id FROM service_instances
     WHERE seen_at > now() - make_interval(secs => $1::int)
     ORDER BY started_at`,
    [ALIVE_SECONDS],
  );
  return rows.map((r) => ({
    id: r.id,
    hostname: r.hostname,
    pid: r.pid,
    startedAt: r.started_at,
    seenAt: r.seen_at,
    encryptionKeyIds: r.encryption_key_ids,
    currentEncryptionKeyId: r.current_encryption_key_id,
  }));
}
