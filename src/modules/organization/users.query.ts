import type { Tx } from '../../db/client.js';
import type { Prisma } from '../../generated/prisma/client.js';
import type { Role, UserStatus } from '../../generated/prisma/enums.js';
import type { ManagedUser } from './organization.schemas.js';
import { asciiSearchTerm } from '../../lib/email-address.js';
import { decodeCursor, page } from './pagination.js';

/** The only columns a user representation is ever built from. */
export const managedUserSelect = {
  id: true,
  email: true,
  name: true,
  status: true,
  roles: true,
  organizationId: true,
  language: true,
  lastLoginAt: true,
  blockedAt: true,
  createdAt: true,
  passwordChangedAt: true,
  failedPasswordCount: true,
  passwordLockedUntil: true,
  failedMfaCount: true,
  mfaLockedUntil: true,
  blockedBySupport: true,
  blockedBySuspension: true,
  totpFactors: { select: { status: true, activatedAt: true, createdAt: true } },
  // The activation link pending now (one at most: a resent link voids the older one).
  flowTokens: { where: { purpose: 'ACTIVATION', state: 'PENDING' }, orderBy: { createdAt: 'desc' }, take: 1, select: { createdAt: true, expiresAt: true } },
} satisfies Prisma.UserSelect;

export type ManagedUserRow = Prisma.UserGetPayload<{ select: typeof managedUserSelect }>;

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export function toManagedUser(row: ManagedUserRow): ManagedUser {
  const factor = row.totpFactors.find((f) => f.status === 'ACTIVE');
  const link = row.flowTokens[0];
  return {
    id: row.id,
    email: row.email,
    name: row.name,
    status: row.status,
    roles: [...row.roles],
    organizationId: row.organizationId,
    language: row.language,
    mfa: {
      enrolled: Boolean(factor),
      enrolledAt: factor ? iso(factor.activatedAt ?? factor.createdAt) : null,
      pending: !factor && row.totpFactors.some((f) => f.status === 'PENDING'),
    },
    invitation: row.status === 'INVITED' && link ? { sentAt: link.createdAt.toISOString(), expiresAt: link.expiresAt.toISOString() } : null,
    passwordSet: row.passwordChangedAt !== null,
    // Support staff are the operator's to administer (support_staff_protected): not shown to colleagues.
    signInLock: row.roles.includes('SUPPORT')
      ? null
      : {
          failedPasswordAttempts: row.failedPasswordCount,
          passwordLockedUntil: iso(row.passwordLockedUntil),
          failedCodeAttempts: row.failedMfaCount,
          codeLockedUntil: iso(row.mfaLockedUntil),
        },
    lastLoginAt: iso(row.lastLoginAt),
    blockedAt: iso(row.blockedAt),
    blockedBySupport: row.status === 'BLOCKED' && row.blockedBySupport,
    blockedBySuspension: row.status === 'BLOCKED' && row.blockedBySuspension,
    createdAt: row.createdAt.toISOString(),
  };
}

export type UserFilter = {
  organizationId?: string;
  status?: UserStatus;
  mfa?: 'enrolled' | 'not_enrolled';
  role?: Role;
  /** Substring of name or e-mail, case-insensitive. */
  q?: string;
  /** Exact e-mail, case-insensitive (citext). */
  email?: string;
  /** With `email`: accounts that also match it (those it is held for: held-address.ts). */
  heldFor?: string[];
};

/**
 * Prisma passes `contains` through to LIKE/ILIKE without escaping its wildcards; a search for "%"
 * or "_" must match those characters, not everything.
 */
export function likeLiteral(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

export function userWhere(filter: UserFilter): Prisma.UserWhereInput {
  const and: Prisma.UserWhereInput[] = [];
  if (filter.organizationId) and.push({ organizationId: filter.organizationId });
  if (filter.status) and.push({ status: filter.status });
  if (filter.role) and.push({ roles: { has: filter.role } });
  if (filter.mfa === 'enrolled') and.push({ totpFactors: { some: { status: 'ACTIVE' } } });
  if (filter.mfa === 'not_enrolled') and.push({ totpFactors: { none: { status: 'ACTIVE' } } });
  if (filter.email) and.push({ OR: [{ email: { equals: filter.email } }, { id: { in: filter.heldFor ?? [] } }] });
  if (filter.q) {
    const q = likeLiteral(filter.q);
    // A domain typed as written (müller-gmbh.de) finds the addresses stored in its ASCII form too.
    const ascii = asciiSearchTerm(filter.q);
    const inEmail = [q, ...(ascii ? [likeLiteral(ascii)] : [])].map((term) => ({ email: { contains: term, mode: 'insensitive' as const } }));
    and.push({ OR: [{ name: { contains: q, mode: 'insensitive' } }, ...inEmail] });
  }
  return { AND: and };
}

/** Users sorted by name (then id), one page after `cursor`. */
export async function listUsers(
  tx: Tx,
  filter: UserFilter,
  pageQuery: { limit: number; cursor?: string | undefined },
): Promise<{ items: ManagedUser[]; nextCursor: string | null }> {
  const where = userWhere(filter);
  if (pageQuery.cursor) {
    const [name, id] = decodeCursor(pageQuery.cursor, 2) as [string, string];
    (where.AND as Prisma.UserWhereInput[]).push({ OR: [{ name: { gt: name } }, { name, id: { gt: id } }] });
  }
  const rows = await tx.user.findMany({
    where,
    select: managedUserSelect,
    orderBy: [{ name: 'asc' }, { id: 'asc' }],
    take: pageQuery.limit + 1,
  });
  const result = page(rows, pageQuery.limit, (r) => [r.name, r.id]);
  return { items: result.items.map(toManagedUser), nextCursor: result.nextCursor };
}

export async function findManagedUser(tx: Tx, id: string): Promise<ManagedUserRow | null> {
  return tx.user.findUnique({ where: { id }, select: managedUserSelect });
}
