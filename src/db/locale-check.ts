import type pg from 'pg';

/**
 * A warning when the database classifies characters as the `C` (or POSIX) locale does: only ASCII
 * letters have a case there, so the case-insensitive searches (ILIKE, lower()) miss "Ärger" for
 * "ärger", and names sort by code point. Nothing breaks, so the service starts; the operator learns
 * why a search for an umlaut finds nothing. C.UTF-8, a language's locale and ICU are fine.
 */
export async function asciiOnlyLocaleWarning(pool: pg.Pool): Promise<string | null> {
  const { rows } = await pool.query<{ ctype: string }>('SELECT datctype AS ctype FROM pg_database WHERE datname = current_database()');
  const ctype = rows[0]?.ctype;
  if (ctype !== 'C' && ctype !== 'POSIX') return null;
  return (
    `The database's LC_CTYPE is ${ctype}: case-insensitive search knows only ASCII letters (a search for "ärger" misses "Ärger") ` +
    'and names sort by code point. Create it with a language\'s locale (README: "Running against PostgreSQL").'
  );
}
