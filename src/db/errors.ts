/** Error codes that mean "the database is not reachable right now" rather than "the query is wrong". */
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN',
  '57P01', '57P02', '57P03', '57014', '53300', '08000', '08001', '08003', '08004', '08006',
  'P1001', 'P1002', 'P1017', 'P2024', 'P2028',
]);
const UNAVAILABLE_KINDS = new Set(['DatabaseNotReachable', 'ConnectionClosed', 'SocketTimeout', 'TooManyConnections', 'postgres']);
const UNAVAILABLE_MESSAGE = /Connection terminated|connect ECONNREFUSED|timeout exceeded when trying to connect|Client has encountered a connection error|terminating connection|the database system is (starting up|shutting down)|Can't reach database server|Connection ended unexpectedly|Query read timeout/i;

/** True when an error (or any of its causes) says the database is unreachable. */
export function isDatabaseUnavailable(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 6) return false;
  const e = err as { code?: unknown; kind?: unknown; message?: unknown; cause?: unknown; meta?: { driverAdapterError?: unknown } };
  if (typeof e.code === 'string' && UNAVAILABLE_CODES.has(e.code)) return true;
  if (typeof e.kind === 'string' && UNAVAILABLE_KINDS.has(e.kind) && e.kind !== 'postgres') return true;
  if (typeof e.message === 'string' && UNAVAILABLE_MESSAGE.test(e.message)) return true;
  return isDatabaseUnavailable(e.cause, depth + 1) || isDatabaseUnavailable(e.meta?.driverAdapterError, depth + 1);
}

/**
 * True when PostgreSQL refuses a statement prepared on this connection because a migration (another
 * instance's, in a rolling deploy) changed the type of a column it returns since: nothing ran, and
 * the same statement succeeds on a connection that has not prepared it (db/sql.ts queryPrepared).
 */
export function isStalePreparedStatement(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  return typeof e === 'object' && e !== null && e.code === '0A000' && typeof e.message === 'string' && /cached plan must not change result type/.test(e.message);
}

/** True for PostgreSQL's unique violation (23505) of the named constraint or index, as raised by pg. */
export function isUniqueViolation(err: unknown, constraint: string): boolean {
  const e = err as { code?: unknown; constraint?: unknown } | null;
  return typeof e === 'object' && e !== null && e.code === '23505' && e.constraint === constraint;
}
