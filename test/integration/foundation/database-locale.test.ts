import { randomBytes } from 'node:crypto';
import pg from 'pg';
import t from 'tap';
import { urlFor, withAdmin } from '../../../scripts/pg-admin.js';
import { asciiOnlyLocaleWarning } from '../../../src/db/locale-check.js';
import { createTestDatabase } from '../../helpers/database.js';

/**
 * A database created with the C locale knows no case but ASCII's: searches for "ärger" miss
 * "Ärger" (found by session 26's Unicode review). The server warns at start; the test databases
 * (the machine's default, a UTF-8 locale) need no warning.
 */

t.test('the C locale is warned about; a UTF-8 locale is not', async (t) => {
  const name = `webshop_auth_test_c_${randomBytes(6).toString('hex')}`;
  await withAdmin((a) => a.query(`CREATE DATABASE "${name}" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'`));
  t.teardown(() => withAdmin((a) => a.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)));
  const inC = new pg.Pool({ connectionString: urlFor(name), max: 1 });
  t.teardown(() => inC.end());
  const { rows } = await inC.query<{ found: boolean }>(`SELECT 'ärger' ILIKE '%ÄRG%' AS found`);
  t.equal(rows[0]!.found, false, 'the harm: no case for umlauts');
  t.match(await asciiOnlyLocaleWarning(inC), /LC_CTYPE is C: case-insensitive search knows only ASCII letters/);

  const { url } = await createTestDatabase(t);
  const usual = new pg.Pool({ connectionString: url, max: 1 });
  t.teardown(() => usual.end());
  const ctype = (await usual.query<{ c: string }>('SELECT datctype AS c FROM pg_database WHERE datname = current_database()')).rows[0]!.c;
  if (ctype === 'C' || ctype === 'POSIX') t.fail(`the test server's default locale is ${ctype}: create the cluster with a UTF-8 locale`);
  t.equal(await asciiOnlyLocaleWarning(usual), null, `no warning for ${ctype}`);
});
