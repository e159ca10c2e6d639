import type { Tx } from '../../db/client.js';
import type { Clock } from '../../lib/clock.js';

/**
 * Ends sessions at once: their refresh tokens stop working and introspection reports them inactive,
 * because both check the session row. Used by logout, blocking, password reset and MFA resets.
 */
export async function revokeUserSessions(
  tx: Tx,
  clock: Clock,
  userId: string,
  reason: string,
  options: { exceptSessionId?: string } = {},
): Promise<number> {
  const { count } = await tx.session.updateMany({
    where: {
      userId,
      revokedAt: null,
      ...(options.exceptSessionId ? { id: { not: options.exceptSessionId } } : {}),
    },
    data: { revokedAt: clock.now(), revokedReason: reason },
  });
  return count;
}
