import pg from 'pg';
import { v7 as uuidv7 } from 'uuid';
import { isStalePreparedStatement } from './errors.js';
import { sha256Hex } from '../lib/tokens.js';
import type { Tx } from './client.js';

/**
 * Raw SQL for the hot paths (password step, code step, session issue): one statement with
 * positional parameters ($1, $2, ...) and explicit casts, run on the pg pool (each statement its
 * own transaction) or inside a Prisma interactive transaction — the same text everywhere.
 *
 * Why not Prisma there: a login went through ~20 Prisma queries, each a round trip plus query
 * interpretation on the event loop; the CPU profile of the login benchmark put a third of the main
 * thread in @prisma/client and another sixth in the per-query socket writes (bench/README.md).
 * Everything else keeps Prisma.
 */
export type Sql = <Row = Record<string, unknown>>(text: string, values: readonly unknown[]) => Promise<Row[]>;

/**
 * The statements run through poolSql are prepared once per connection (pg's
 * named statements), so PostgreSQL parses and plans each hot-path statement once instead of on
 * every login. Their texts never contain values (SqlParams), so there are only a few dozen; past
 * MAX_PREPARED the rest simply run unnamed.
 */
const MAX_PREPARED = 200;
const statementNames = new Map<string, string>();

function statement(text: string, values: readonly unknown[]): pg.QueryConfig {
  let name = statementNames.get(text);
  if (name === undefined && statementNames.size < MAX_PREPARED) {
    name = `hot_${sha256Hex(text).slice(0, 24)}`;
    statementNames.set(text, name);
  }
  return { text, values: values as unknown[], ...(name ? { name } : {}) };
}

/**
 * Runs a statement that may be prepared (named). On the pool, a connection whose prepared plan a
 * migration made stale (isStalePreparedStatement: nothing ran) is closed by the pool and the
 * statement runs again on another; each such failure closes one connection, so within the pool's
 * size plus one a connection that prepares it afresh answers. On one held connection the error
 * stands (503, the error handler).
 */
export async function queryPrepared<Row extends pg.QueryResultRow>(on: pg.Pool | pg.PoolClient, query: pg.QueryConfig): Promise<pg.QueryResult<Row>> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await on.query<Row>(query);
    } catch (err) {
      if (!(on instanceof pg.Pool) || !mayRunAgainElsewhere(err, on, attempt)) throw err;
    }
  }
}

/**
 * A statement refused for a stale plan may run again on another connection of `pool`: each refusal
 * closes the connection that refused, so more attempts than connections would find none stale.
 */
function mayRunAgainElsewhere(err: unknown, pool: pg.Pool, attempt: number): boolean {
  return isStalePreparedStatement(err) && attempt <= (pool.options.max ?? 10);
}

/**
 * Each statement its own (autocommit) transaction: on any free connection of the pool, or on the one
 * connection `onOneConnection` holds.
 */
export function poolSql(on: pg.Pool | pg.PoolClient): Sql {
  return async <Row>(text: string, values: readonly unknown[]) => (await queryPrepared(on, statement(text, values))).rows as Row[];
}

/**
 * Runs `work` on one connection from the pool, each statement its own (autocommit) transaction as
 * with poolSql. The connection is taken BEFORE `work` starts, so a fast path that reads the clock
 * inside `work` compares expiries with the time its statements run, not with a time from before a
 * wait for a free connection (up to the pool's connect timeout under load). `work` must not take a
 * second connection (no Prisma call, which shares the pool): with every connection held by such a
 * `work`, none would ever get one.
 *
 * A first statement refused for a plan a migration made stale (queryPrepared) ran nothing, and
 * nothing ran before it: `work` starts again on another connection (the refusing one is closed).
 * Refused later, the error stands (503, the error handler).
 */
export async function onOneConnection<T>(pool: pg.Pool, work: (sql: Sql) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    let ran = 0;
    try {
      return await onHeldConnection(pool, (sql) =>
        work(async <Row>(text: string, values: readonly unknown[]) => {
          const rows = await sql<Row>(text, values);
          ran++;
          return rows;
        }),
      );
    } catch (err) {
      if (ran > 0 || !mayRunAgainElsewhere(err, pool, attempt)) throw err;
    }
  }
}

async function onHeldConnection<T>(pool: pg.Pool, work: (sql: Sql) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  // While a client is checked out the pool does not listen for its errors: a connection that ends
  // without an error message first (the server killed, a proxy resetting it) would emit 'error'
  // with nobody listening, an uncaught exception that ends the process. The statement in flight
  // fails on its own; the connection is then closed rather than handed out again.
  let lost: Error | undefined;
  const onError = (err: Error) => {
    lost = err;
  };
  client.on('error', onError);
  const release = (err?: unknown) => {
    client.off('error', onError);
    // As pool.query does after a failed query: the connection may have failed mid-statement, so it
    // is closed (also after a failure that was not the database's).
    client.release(lost ?? (err === undefined ? undefined : err instanceof Error ? err : true));
  };
  try {
    const result = await work(poolSql(client));
    release();
    return result;
  } catch (err) {
    release(err);
    throw err;
  }
}

/** Inside a Prisma interactive transaction (the statement joins it). */
export function prismaSql(tx: Tx): Sql {
  return <Row>(text: string, values: readonly unknown[]) => tx.$queryRawUnsafe<Row[]>(text, ...values);
}

/** Primary keys for rows inserted with raw SQL: UUIDv7 like Prisma's @default(uuid(7)), time-ordered within the process. */
export const newId = (): string => uuidv7();
