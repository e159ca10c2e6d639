import type pg from 'pg';
import { onOneConnection } from '../../db/sql.js';
import type { Clock } from '../../lib/clock.js';
import type { Language } from '../../lib/languages.js';
import { sha256Hex } from '../../lib/tokens.js';

/**
 * An activation link that works as it stands — pending, unexpired, its account still INVITED — with
 * its account and organisation, in one statement on the pool. Activation inspect is what the page
 * behind every invitation mail calls first, and must answer quickly while logins keep the cores busy
 * (issue #3: p99 < 50 ms): the same read through Prisma (the flow, then the user with its
 * organisation) cost ≈ 1.3 ms of the event loop and two round trips against ≈ 0.1 ms and one.
 * Null for every other link: the caller then takes the Prisma path, which says why it does not work.
 */
export type UsableActivationLink = {
  flow: { id: string; expiresAt: Date; requestedById: string | null };
  user: { id: string; email: string; name: string; language: Language | null; organizationId: string | null; organization: { name: string } | null };
};

const SQL = `
SELECT f.id, f.expires_at, f.requested_by_id,
       u.id AS user_id, u.email, u.name, u.language, u.organization_id, o.name AS organization_name
  FROM flow_tokens f
  JOIN users u ON u.id = f.user_id
  LEFT JOIN organizations o ON o.id = u.organization_id
 WHERE f.token_hash = $1 AND f.purpose = 'ACTIVATION' AND f.state = 'PENDING' AND f.expires_at > $2::timestamptz
   AND u.status = 'INVITED'`;

type Row = {
  id: string;
  expires_at: Date;
  requested_by_id: string | null;
  user_id: string;
  email: string;
  name: string;
  language: Language | null;
  organization_id: string | null;
  organization_name: string | null;
};

/** The clock is read once a connection is held: the expiry is compared with the time the statement runs. */
export async function findUsableActivationLink(pool: pg.Pool, clock: Clock, token: string): Promise<UsableActivationLink | null> {
  const [row] = await onOneConnection(pool, (sql) => sql<Row>(SQL, [sha256Hex(token), clock.now()]));
  if (!row) return null;
  return {
    flow: { id: row.id, expiresAt: row.expires_at, requestedById: row.requested_by_id },
    user: {
      id: row.user_id,
      email: row.email,
      name: row.name,
      language: row.language,
      organizationId: row.organization_id,
      organization: row.organization_name === null ? null : { name: row.organization_name },
    },
  };
}
