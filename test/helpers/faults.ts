import type { Test } from 'tap';
import { openClient } from './row-locks.js';

/**
 * Faults injected in the test's real database: a trigger on `table` raises, the first times its
 * condition holds, either "terminating connection" (57P01, which the service treats as the
 * database being unreachable) or a unique violation of the one-live-login-challenge index. The
 * counter is a sequence, so a failure is not undone by the rollback it causes. One per database.
 */
export type Fault = 'unavailable' | 'challenge_conflict';

export async function injectFaults(
  t: Test,
  databaseUrl: string,
  on: { table: string; event: 'INSERT' | 'UPDATE'; when: string },
  faults: Fault[],
): Promise<{ count: () => Promise<number> }> {
  const client = await openClient(t, databaseUrl);
  const cases = faults
    .map((fault, i) =>
      fault === 'unavailable'
        ? `WHEN ${i + 1} THEN RAISE EXCEPTION 'injected: terminating connection' USING ERRCODE = '57P01';`
        : `WHEN ${i + 1} THEN RAISE EXCEPTION 'injected conflict' USING ERRCODE = 'unique_violation', CONSTRAINT = 'flow_tokens_one_pending_login_challenge';`,
    )
    .join('\n');
  await client.query(`
    CREATE SEQUENCE injected_faults;
    CREATE FUNCTION inject_fault() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF ${on.when} THEN
        CASE nextval('injected_faults') ${cases} ELSE NULL; END CASE;
      END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER inject_fault BEFORE ${on.event} ON ${on.table} FOR EACH ROW EXECUTE FUNCTION inject_fault();`);
  return {
    /** How often the condition held (failures and passes). */
    count: async () => Number((await client.query<{ n: string }>('SELECT last_value AS n FROM injected_faults WHERE is_called')).rows[0]?.n ?? 0),
  };
}

