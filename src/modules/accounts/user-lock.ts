import type { Tx } from '../../db/client.js';

/**
 * The lock order of every transaction that changes a user's sign-in state: the user row FIRST,
 * then that user's flow rows (login challenges, e-mail links), factors and sessions.
 *
 * Login (password step success), blocking, password reset/change and MFA removal already take the
 * user row first (their first write is an UPDATE of it); the MFA step and removeMfa take it
 * explicitly with this function. With one order there is no deadlock between, e.g., the 10th
 * wrong code voiding the user's other challenges and a concurrent code attempt holding one of
 * them, and every decision taken under the lock (code lock, password lock, status) sees each
 * earlier attempt's committed outcome.
 */
export async function lockUserRow(tx: Tx, userId: string): Promise<void> {
  await tx.$queryRaw`SELECT 1 FROM users WHERE id = ${userId}::uuid FOR UPDATE`;
}

export type LockedLoginState = {
  status: 'INVITED' | 'ACTIVE' | 'BLOCKED';
  /** The address as committed now: an e-mail change may have moved the account since it was looked up. */
  email: string;
  /** Changes only when the password is set (activation, reset, change), not on a re-hash. */
  passwordChangedAt: Date | null;
  passwordLockedUntil: Date | null;
};

/** Locks the user row (see above) and reads the fields a password decision depends on, as committed now. */
export async function lockLoginState(tx: Tx, userId: string): Promise<LockedLoginState | null> {
  const rows = await tx.$queryRaw<{ status: LockedLoginState['status']; email: string; password_changed_at: Date | null; password_locked_until: Date | null }[]>`
    SELECT status::text AS status, email::text AS email, password_changed_at, password_locked_until FROM users WHERE id = ${userId}::uuid FOR UPDATE`;
  const row = rows[0];
  return row
    ? { status: row.status, email: row.email, passwordChangedAt: row.password_changed_at, passwordLockedUntil: row.password_locked_until }
    : null;
}
