import type { Actor } from '../../access/actor.js';
import type { PolicyActor, UserTarget } from '../../access/policy.js';
import type { Tx } from '../../db/client.js';
import type { Prisma } from '../../generated/prisma/client.js';
import type { Language } from '../../lib/languages.js';
import { commonErrors } from '../../errors.js';
import { lockUserRow } from '../accounts/user-lock.js';

/**
 * The acting user as the database knows them *now*. The access token's roles may be up to one
 * token lifetime old (a demoted admin's token still says CUSTOMER_ADMIN), so every administrative
 * decision is made on the stored roles and status, read inside the deciding transaction.
 */
export type ActingUser = PolicyActor & { name: string; email: string };

export async function loadActingUser(tx: Tx, actor: Pick<Actor, 'userId'>): Promise<ActingUser> {
  const row = await tx.user.findUnique({
    where: { id: actor.userId },
    select: { id: true, organizationId: true, roles: true, status: true, name: true, email: true },
  });
  if (!row || row.status !== 'ACTIVE') throw commonErrors.unauthenticated('The signed-in account is no longer active.');
  return { userId: row.id, organizationId: row.organizationId, roles: row.roles, name: row.name, email: row.email };
}

export type TargetUser = UserTarget & {
  blockedBySuspension: boolean;
  blockedBySupport: boolean;
  passwordLockedUntil: Date | null;
  mfaLockedUntil: Date | null;
  email: string;
  name: string;
  language: Language | null;
  passwordHash: string | null;
  organization: { id: string; name: string; suspendedAt: Date | null } | null;
};

const targetSelect = {
  id: true,
  organizationId: true,
  roles: true,
  status: true,
  blockedBySuspension: true,
  blockedBySupport: true,
  passwordLockedUntil: true,
  mfaLockedUntil: true,
  email: true,
  name: true,
  language: true,
  passwordHash: true,
  organization: { select: { id: true, name: true, suspendedAt: true } },
} as const;

/** Reads a user without locking (for reads and for the scope check before locking). */
export async function findTarget(tx: Tx, id: string): Promise<TargetUser | null> {
  return tx.user.findUnique({ where: { id }, select: targetSelect });
}

/** Reads the users matching `where`, in id order, without locking (the caller has locked them). */
export async function findTargets(tx: Tx, where: Prisma.UserWhereInput): Promise<TargetUser[]> {
  return tx.user.findMany({ where, select: targetSelect, orderBy: { id: 'asc' } });
}

/**
 * Reads a user for a change: locks the user's organisation row, then the user row, so that
 * changes to one organisation's administrators are serialised (two admins demoting each other at
 * the same moment cannot both succeed and leave the organisation without one). The lock order is
 * always organisation → user.
 */
export async function lockTarget(tx: Tx, id: string): Promise<TargetUser | null> {
  const first = await tx.user.findUnique({ where: { id }, select: { organizationId: true } });
  if (!first) return null;
  if (first.organizationId) await lockOrganization(tx, first.organizationId);
  await lockUserRow(tx, id);
  return findTarget(tx, id);
}

/**
 * lockTarget for a user who must belong to an organisation whose row the caller has locked
 * already: the user row is locked and read as committed now; a user of another organisation (or
 * none) gives null without anything of theirs being locked.
 */
export async function lockMemberOf(tx: Tx, organizationId: string, id: string): Promise<TargetUser | null> {
  const first = await tx.user.findUnique({ where: { id }, select: { organizationId: true } });
  // The caller's id may come from a path in upper case: the same UUID (the database's is lower case).
  if (!first?.organizationId || first.organizationId !== organizationId.toLowerCase()) return null;
  await lockUserRow(tx, id);
  return findTarget(tx, id);
}

/**
 * FOR NO KEY UPDATE, not FOR UPDATE: administrative changes of one organisation still exclude each
 * other, but rows that merely refer to the organisation (an audit row, a new user: the foreign key
 * takes KEY SHARE) are not held up. Those are written by requests that lock a user row first
 * ("forgot password", the login steps); with FOR UPDATE here the two lock orders deadlocked
 * (test/security/organization-lock-order.test.ts).
 */
export async function lockOrganization(tx: Tx, organizationId: string): Promise<boolean> {
  const rows = await tx.$queryRaw<unknown[]>`SELECT 1 FROM organizations WHERE id = ${organizationId}::uuid FOR NO KEY UPDATE`;
  return rows.length === 1;
}

/** ACTIVE administrators (CUSTOMER_ADMIN) of an organisation, optionally without one user. */
export async function countActiveAdministrators(tx: Tx, organizationId: string, except?: string): Promise<number> {
  return tx.user.count({
    where: { organizationId, roles: { has: 'CUSTOMER_ADMIN' }, status: 'ACTIVE', ...(except ? { id: { not: except } } : {}) },
  });
}

/**
 * The administrators (CUSTOMER_ADMIN) of an organisation besides `except` who count for the
 * last-administrator rule (security bar 25.2) of a change to `except` at `now`: the ACTIVE ones, and
 * the INVITED ones who can still activate — whose activation link is pending and unexpired, and was
 * not sent by `except` (a block or demotion of `except` withdraws the links they sent). An invitee
 * whose link was withdrawn or has expired cannot become an administrator unless somebody sends a
 * new link, and once the organisation has no administrator left who could, only support can.
 */
export async function countOtherAdministrators(tx: Tx, organizationId: string, except: string, now: Date): Promise<number> {
  return tx.user.count({
    where: {
      organizationId,
      roles: { has: 'CUSTOMER_ADMIN' },
      id: { not: except },
      OR: [
        { status: 'ACTIVE' },
        {
          status: 'INVITED',
          flowTokens: {
            some: {
              purpose: 'ACTIVATION',
              state: 'PENDING',
              expiresAt: { gt: now },
              OR: [{ requestedById: null }, { requestedById: { not: except } }],
            },
          },
        },
      ],
    },
  });
}
