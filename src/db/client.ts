import pg from 'pg';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../generated/prisma/client.js';

export type Db = PrismaClient;
/** The client handed to code running inside db.$transaction(async (tx) => ...). */
export type Tx = Omit<PrismaClient, '$connect' | '$disconnect' | '$on' | '$transaction' | '$extends'>;

export type Database = {
  db: Db;
  /** Raw pool, for readiness checks and pool metrics. */
  pool: pg.Pool;
  close(): Promise<void>;
};

/** pg's error for a round trip past query_timeout (db/errors.ts counts it as "unavailable"). */
const QUERY_TIMEOUT_MESSAGE = 'Query read timeout';

/**
 * A connection that closes itself when a round trip times out (query_timeout). pg only fails the
 * call: the statement goes on in the server, the connection stays open, and a ROLLBACK queued
 * behind it that times out as well is never sent. Prisma's adapter then hands the connection back
 * to the pool without an error, still inside the failed transaction, and the next transaction on
 * it would commit that one's writes (a change answered 503, committed later without its audit row
 * or mail). Closed, the connection is dropped by the pool at its release, and PostgreSQL rolls the
 * transaction back.
 */
class TimeoutClosingClient extends pg.Client {
  override query(...args: unknown[]): never {
    const closeOnTimeout = (err: unknown) => {
      // end(), not a bare socket destroy: with a statement in flight it destroys the socket too, but
      // as an intended end, so the client emits no 'error' that nobody might be listening for.
      if (err instanceof Error && err.message === QUERY_TIMEOUT_MESSAGE) this.end().catch(() => undefined);
    };
    const callback = args.at(-1);
    if (typeof callback === 'function') {
      args[args.length - 1] = (err: unknown, result: unknown) => {
        closeOnTimeout(err);
        (callback as (e: unknown, r: unknown) => void)(err, result);
      };
    }
    const result = (super.query as (...a: unknown[]) => unknown)(...args);
    if (result instanceof Promise) result.catch(closeOnTimeout);
    return result as never;
  }
}

/**
 * A connection that runs every statement unnamed (not prepared). For the embedded database:
 * PGlite's socket server runs all connections in ONE session, so the statements a connection
 * prepared outlive it, and after the pool dropped a connection (it does after any failed query)
 * the next one could not prepare them again ("prepared statement … already exists"): every hot
 * path answered 500 until a restart.
 */
class UnpreparedClient extends TimeoutClosingClient {
  override query(...args: unknown[]): never {
    const [config] = args;
    // Only a plain query config: a pg.Query (or a cursor) is submitted as it is.
    if (config && typeof config === 'object' && 'name' in config && typeof (config as { submit?: unknown }).submit !== 'function') {
      const { name: _prepared, ...unnamed } = config as pg.QueryConfig;
      args[0] = unnamed;
    }
    return (super.query as (...a: unknown[]) => never)(...args);
  }
}

const DEFAULT_QUERY_TIMEOUT_MS = 10_000;

/**
 * Opens a Prisma client on the pg driver adapter. Connections are lazy; nothing is queried here.
 *
 * `queryTimeoutMs` bounds every round trip: a database that stops answering without closing the
 * connections (a network partition, a frozen or failed-over primary) would otherwise hold each
 * request, and every pooled connection, until TCP gives up (about 15 minutes on Linux). The query
 * fails after it (503, db/errors.ts), the connection is closed (TimeoutClosingClient) instead of
 * pooled again, and once the database answers the pool opens fresh ones: recovery without a restart. (No
 * statement_timeout is sent as a startup parameter: PgBouncer refuses unknown ones. To have
 * PostgreSQL stop a statement the service gave up on, set it on the role: docs/operations.md.)
 * TCP keepalive finds dead idle connections.
 */
export function openDatabase(
  url: string,
  options: { max?: number; connectTimeoutMs?: number; queryTimeoutMs?: number; preparedStatements?: boolean } = {},
): Database {
  const queryTimeoutMs = options.queryTimeoutMs ?? DEFAULT_QUERY_TIMEOUT_MS;
  const pool = new pg.Pool({
    Client: options.preparedStatements === false ? UnpreparedClient : TimeoutClosingClient,
    connectionString: url,
    max: options.max ?? 10,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 3000,
    idleTimeoutMillis: 30_000,
    query_timeout: queryTimeoutMs,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    // Every session in UTC before the pool hands it out, whatever the server's, database's or role's
    // TimeZone (initdb copies the host's: Europe/Berlin on a German server). node-postgres sends and
    // reads Dates with their offset, but @prisma/adapter-pg sends them as zone-less UTC digits and
    // reads timestamptz with the offset replaced by +00:00: in any other zone an expiry written by one
    // path and checked by the other moves by the offset (a code lock an hour short, a fresh session
    // dead, an idle one alive). pg-pool runs this once its error listener is on the client (a socket
    // dying meanwhile fails the checkout, not the process) and drops the client if it fails; the
    // SET is bounded by query_timeout. A SET (unlike a startup parameter) passes PgBouncer.
    onConnect: async (client) => {
      await client.query("SET TIME ZONE 'UTC'");
    },
  });
  // A dropped server connection must not crash the process; the next query reports it as 503.
  pool.on('error', () => undefined);
  const db = new PrismaClient({ adapter: new PrismaPg(pool) });
  return {
    db,
    pool,
    async close() {
      await db.$disconnect();
      await pool.end().catch(() => undefined);
    },
  };
}
