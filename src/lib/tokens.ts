import { hash, randomBytes, timingSafeEqual } from 'node:crypto';

export function randomToken(bytes = 32): string {
  // 16 bytes is the floor for anything used as a bearer secret (security.md item 14).
  if (!Number.isSafeInteger(bytes) || bytes < 16) {
    throw new RangeError(`randomToken needs at least 16 bytes, got ${bytes}`);
  }
  return randomBytes(bytes).toString('base64url');
}

/**
 * One-shot crypto.hash: no Hash object per call, which matters where it runs on every request
 * (service-client secrets, refresh tokens): each Hash object is native memory that the garbage
 * collector has to finalise.
 */
export function sha256Hex(value: string): string {
  return hash('sha256', value, 'hex');
}

export function safeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a, 'utf8');
  const right = Buffer.from(b, 'utf8');
  // Only the length can leak; callers compare fixed-length values (hashes, codes).
  if (left.length !== right.length) return false;
  return timingSafeEqual(left, right);
}
