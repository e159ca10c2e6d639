/**
 * Temporary lockout after consecutive failures (NIST 800-63B 3.2.2: never more than 100 failures
 * without a lock; never a permanent lock an attacker can trigger). Passwords and codes each have
 * their own counter; the same schedule applies to both.
 */
export const LOCKOUT_THRESHOLD = 10;
const BASE_LOCK_SECONDS = 15 * 60;
const MAX_LOCK_SECONDS = 24 * 3600;

/** Lock length for the (n+1)-th lock: 15 min, doubling each time, capped at 24 h. */
export function lockoutSeconds(previousLockouts: number): number {
  return Math.min(BASE_LOCK_SECONDS * 2 ** Math.max(0, Math.min(previousLockouts, 16)), MAX_LOCK_SECONDS);
}

export function secondsUntil(until: Date, now: Date): number {
  return Math.max(1, Math.ceil((until.getTime() - now.getTime()) / 1000));
}
