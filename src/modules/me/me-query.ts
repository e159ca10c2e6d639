import type pg from 'pg';
import { queryPrepared } from '../../db/sql.js';
import type { Role } from '../../generated/prisma/enums.js';
import type { Language } from '../../lib/languages.js';

/**
 * What GET /v1/me shows of the user, in one statement: the user row, the organisation, the ACTIVE
 * TOTP factor (at most one: unique per user and status) and the count of unused recovery codes.
 * Raw SQL on the pool like the session lookup beside it: the same read through Prisma (a relation
 * include and a relation count) cost ≈ 1.1–1.8 ms of the event loop per call against ≈ 0.2 ms for
 * this statement (bench/README.md, session 9), and /me is what a frontend calls on every page.
 */
export type MeRow = {
  id: string;
  email: string;
  name: string;
  roles: Role[];
  termsVersion: string | null;
  termsAcceptedAt: Date | null;
  newsletterOptIn: boolean;
  language: Language | null;
  preferencesUpdatedAt: Date | null;
  lastLoginAt: Date | null;
  organization: { id: string; name: string; customerNumber: string } | null;
  /** The ACTIVE factor's activation time (its creation time for a factor from before activation times were kept); null without one. */
  factorSince: Date | null;
  mfaEnrolled: boolean;
  recoveryCodesLeft: number;
};

const SQL = `
SELECT u.id, u.email, u.name, u.roles::text[] AS roles, u.terms_version, u.terms_accepted_at, u.newsletter_opt_in, u.language,
       u.preferences_updated_at, u.last_login_at,
       o.id AS organization_id, o.name AS organization_name, o.customer_number,
       t.id AS factor_id, COALESCE(t.activated_at, t.created_at) AS factor_since,
       (SELECT count(*)::int FROM recovery_codes r WHERE r.user_id = u.id AND r.used_at IS NULL) AS recovery_codes_left
  FROM users u
  LEFT JOIN organizations o ON o.id = u.organization_id
  LEFT JOIN totp_factors t ON t.user_id = u.id AND t.status = 'ACTIVE'
 WHERE u.id = $1`;

type Row = {
  id: string;
  email: string;
  name: string;
  roles: Role[];
  terms_version: string | null;
  terms_accepted_at: Date | null;
  newsletter_opt_in: boolean;
  language: Language | null;
  preferences_updated_at: Date | null;
  last_login_at: Date | null;
  organization_id: string | null;
  organization_name: string | null;
  customer_number: string | null;
  factor_id: string | null;
  factor_since: Date | null;
  recovery_codes_left: number;
};

/** The user `userId` as /me shows it, or null when there is no such user (the id must be a valid UUID). */
export async function loadMe(pool: pg.Pool, userId: string): Promise<MeRow | null> {
  const { rows } = await queryPrepared<Row>(pool, { name: 'load-me', text: SQL, values: [userId] });
  const row = rows[0];
  if (!row) return null;
  return {
    id: row.id,
    email: row.email,
    name: row.name,
    roles: row.roles,
    termsVersion: row.terms_version,
    termsAcceptedAt: row.terms_accepted_at,
    newsletterOptIn: row.newsletter_opt_in,
    language: row.language,
    preferencesUpdatedAt: row.preferences_updated_at,
    lastLoginAt: row.last_login_at,
    organization:
      row.organization_id !== null && row.organization_name !== null && row.customer_number !== null
        ? { id: row.organization_id, name: row.organization_name, customerNumber: row.customer_number }
        : null,
    factorSince: row.factor_id !== null ? row.factor_since : null,
    mfaEnrolled: row.factor_id !== null,
    recoveryCodesLeft: row.recovery_codes_left,
  };
}
