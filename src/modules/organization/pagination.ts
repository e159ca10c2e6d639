import { z } from 'zod';
import { defineErrors } from '../../errors.js';

/**
 * Keyset (cursor) pagination. A cursor is the opaque base64url encoding of the sort key of the
 * last item of a page; the next page starts strictly after it, so inserts between pages neither
 * duplicate nor skip rows that were already there.
 */

export const paginationErrors = defineErrors({
  invalid_cursor: { status: 400, title: 'The cursor is not valid for this list' },
});

export const DEFAULT_PAGE_SIZE = 25;
export const MAX_PAGE_SIZE = 100;

export const PageQuery = {
  limit: z.coerce.number().int().min(1).max(MAX_PAGE_SIZE).default(DEFAULT_PAGE_SIZE).describe('Items per page (1..100)'),
  cursor: z.string().min(1).max(512).optional().describe('The `nextCursor` of the previous page'),
};

export const NextCursor = z.string().nullable().describe('Pass as `cursor` to get the next page; null on the last page');

export function encodeCursor(key: readonly string[]): string {
  return Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Decodes a cursor made by encodeCursor with `size` string parts; anything else is invalid_cursor.
 * Every list sorts by (key, id), so the last part must be a UUID: it is compared with a uuid column,
 * and a crafted cursor must be a 400, not a database error (500). No part may hold U+0000 either
 * (PostgreSQL text cannot).
 */
export function decodeCursor(cursor: string, size: number): string[] {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (
      Array.isArray(parsed) &&
      parsed.length === size &&
      parsed.every((p) => typeof p === 'string' && p.length <= 400 && !p.includes('\u0000')) &&
      UUID.test(parsed[size - 1] as string)
    ) {
      return parsed as string[];
    }
  } catch {
    // fall through
  }
  throw paginationErrors.invalid_cursor();
}

/**
 * Instants this service stores and filters on: 1970 to 9999 (UTC). JavaScript and RFC 3339 allow
 * years PostgreSQL's timestamptz cannot hold (year 0, before 4713 BC), which must be a 400.
 */
export function isStorableInstant(time: Date): boolean {
  const year = time.getUTCFullYear();
  return year >= 1970 && year <= 9999;
}

/** A cursor part that encodeCursor wrote from a stored instant (its exact ISO form), or invalid_cursor. */
export function cursorInstant(part: string): Date {
  const time = new Date(part);
  if (Number.isNaN(time.getTime()) || !isStorableInstant(time) || time.toISOString() !== part) throw paginationErrors.invalid_cursor();
  return time;
}

/** Takes `limit + 1` rows and splits them into the page and whether there is a next one. */
export function page<T>(rows: T[], limit: number, keyOf: (row: T) => readonly string[]): { items: T[]; nextCursor: string | null } {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return { items, nextCursor: rows.length > limit && last ? encodeCursor(keyOf(last)) : null };
}
