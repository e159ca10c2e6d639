import type { KeyObject } from 'node:crypto';
import type { VerifiedAccessToken } from './access-token.js';

/**
 * Access tokens that passed every check of verifyAccessToken, by the exact token string, so a
 * token presented again skips the signature verification. verifyAccessToken decides what a hit is
 * worth (see the comment there); this is only the bounded store: least recently used first out.
 * About 3 KiB of heap per entry (the token string and its claims), so ~30 MiB when full.
 */
export const VERIFIED_TOKEN_CACHE_CAPACITY = 10_000;

export type VerifiedTokenEntry = {
  /** The header's kid and the key object that verified the signature. */
  kid: string;
  key: KeyObject;
  claims: VerifiedAccessToken;
  nbf: number | undefined;
};

export type VerifiedTokenCache = {
  readonly capacity: number;
  readonly size: number;
  /** The entry for exactly this token string (and marks it as recently used). */
  get(token: string): VerifiedTokenEntry | undefined;
  set(token: string, entry: VerifiedTokenEntry): void;
  delete(token: string): void;
};

export function createVerifiedTokenCache(capacity = VERIFIED_TOKEN_CACHE_CAPACITY): VerifiedTokenCache {
  // A Map iterates in insertion order: re-inserting on every hit keeps the least recently used first.
  const entries = new Map<string, VerifiedTokenEntry>();
  return {
    capacity,
    get size() {
      return entries.size;
    },
    get(token) {
      const entry = entries.get(token);
      if (entry) {
        entries.delete(token);
        entries.set(token, entry);
      }
      return entry;
    },
    set(token, entry) {
      entries.delete(token);
      entries.set(token, entry);
      if (entries.size > capacity) entries.delete(entries.keys().next().value!);
    },
    delete(token) {
      entries.delete(token);
    },
  };
}
