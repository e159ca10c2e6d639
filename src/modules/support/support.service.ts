import { authorize, policyErrors } from '../../access/policy.js';
import type { AppContext } from '../../context.js';
import type { Tx } from '../../db/client.js';
import type { Prisma } from '../../generated/prisma/client.js';
import type { Role, UserStatus } from '../../generated/prisma/enums.js';
import type { Language } from '../../lib/languages.js';
import { recordAudit, type RequestMeta } from '../audit/audit.service.js';
import { countActiveAdministrators, loadActingUser, lockMemberOf, lockOrganization, type ActingUser, type TargetUser } from '../organization/acting-user.js';
import { isEmailTaken, organizationErrors, violatedConstraint } from '../organization/organization.errors.js';
import type { ManagedUser } from '../organization/organization.schemas.js';
import { decodeCursor, page } from '../organization/pagination.js';
import {
  blockLockedUser,
  inviteUserInTx,
  normalizeRoles,
  originOf,
  resendActivationInTx,
  type AdminCall,
  type AdminCtx,
} from '../organization/user-admin.service.js';
import { accountsHolding } from '../email-change/held-address.js';
import { findManagedUser, likeLiteral, managedUserSelect, toManagedUser, userWhere } from '../organization/users.query.js';
import { supportErrors } from './support.errors.js';
import { ORGANIZATION_USERS_SHOWN } from './support.schemas.js';

/**
 * The support desk: cross-organisation look-ups, organisations with their first administrator,
 * appointing an administrator where none is left. Block/unblock and password-reset mails are the
 * same services customer administrators use (user-admin.service.ts); the policy gives support
 * the `any organisation` scope for them. Every change is audited with the support user as actor.
 */

type OrganizationRow = {
  id: string;
  customerNumber: string;
  name: string;
  language: Language | null;
  createdAt: Date;
  suspendedAt: Date | null;
  suspensionReason: string | null;
};

export async function summaries(tx: Tx, rows: OrganizationRow[]) {
  const ids = rows.map((r) => r.id);
  const [users, admins] = await Promise.all([
    tx.user.groupBy({ by: ['organizationId'], where: { organizationId: { in: ids } }, _count: { _all: true } }),
    tx.user.groupBy({
      by: ['organizationId'],
      where: { organizationId: { in: ids }, roles: { has: 'CUSTOMER_ADMIN' }, status: 'ACTIVE' },
      _count: { _all: true },
    }),
  ]);
  const count = (list: typeof users, id: string) => list.find((g) => g.organizationId === id)?._count._all ?? 0;
  return rows.map((r) => ({
    id: r.id,
    customerNumber: r.customerNumber,
    name: r.name,
    language: r.language,
    createdAt: r.createdAt.toISOString(),
    suspension: r.suspendedAt ? { at: r.suspendedAt.toISOString(), reason: r.suspensionReason ?? '' } : null,
    userCount: count(users, r.id),
    activeAdministratorCount: count(admins, r.id),
  }));
}

export const organizationSelect = { id: true, customerNumber: true, name: true, language: true, createdAt: true, suspendedAt: true, suspensionReason: true } as const;

export async function searchOrganizations(
  ctx: AdminCtx,
  call: AdminCall,
  query: { q?: string | undefined; suspended?: 'true' | 'false' | undefined; limit: number; cursor?: string | undefined },
) {
  return ctx.db.$transaction(async (tx) => {
    const acting = await loadActingUser(tx, call.actor);
    authorize(acting, 'organization.read', { organizationId: null });
    const and: Prisma.OrganizationWhereInput[] = [];
    if (query.q) {
      const q = likeLiteral(query.q);
      and.push({ OR: [{ name: { contains: q, mode: 'insensitive' } }, { customerNumber: { contains: q, mode: 'insensitive' } }] });
    }
    if (query.suspended) and.push({ suspendedAt: query.suspended === 'true' ? { not: null } : null });
    if (query.cursor) {
      const [name, id] = decodeCursor(query.cursor, 2) as [string, string];
      and.push({ OR: [{ name: { gt: name } }, { name, id: { gt: id } }] });
    }
    const rows = await tx.organization.findMany({
      where: { AND: and },
      select: organizationSelect,
      orderBy: [{ name: 'asc' }, { id: 'asc' }],
      take: query.limit + 1,
    });
    const result = page(rows, query.limit, (r) => [r.name, r.id]);
    return { items: await summaries(tx, result.items), nextCursor: result.nextCursor };
  });
}

export async function getOrganization(ctx: AdminCtx, call: AdminCall, organizationId: string) {
  return ctx.db.$transaction(async (tx) => {
    const acting = await loadActingUser(tx, call.actor);
    authorize(acting, 'organization.read', { organizationId });
    const row = await tx.organization.findUnique({ where: { id: organizationId }, select: organizationSelect });
    if (!row) throw policyErrors.organization_not_found();
    const users = await tx.user.findMany({
      where: { organizationId },
      select: managedUserSelect,
      orderBy: [{ name: 'asc' }, { id: 'asc' }],
      // Bounded (found by session 19's review: 20,000 users made an 11 MB answer); the rest by search.
      take: ORGANIZATION_USERS_SHOWN,
    });
    const [summary] = await summaries(tx, [row]);
    return { ...summary!, users: users.map(toManagedUser) };
  });
}

export type CreateOrganizationInput = {
  customerNumber: string;
  name: string;
  /** The language of its users' mails unless an invitation names another (unset: DEFAULT_LANGUAGE). */
  language?: Language | undefined;
  administrator: { email: string; name: string; language?: Language | undefined };
};

/**
 * Creates an organisation and invites its first administrator, in the caller's transaction (the
 * API route and the operator CLI share it). Returns the activation link for the CLI to print;
 * the API never returns it (the administrator gets it by e-mail).
 */
export async function createOrganizationInTx(
  tx: Tx,
  ctx: Pick<AppContext, 'clock' | 'config' | 'keyring'>,
  input: CreateOrganizationInput,
  origin: { actorUserId: string | null; meta: RequestMeta; via: 'support' | 'cli' },
) {
  const now = ctx.clock.now();
  const organization = await tx.organization.create({
    data: { customerNumber: input.customerNumber, name: input.name, language: input.language ?? null, createdAt: now },
    select: organizationSelect,
  });
  await recordAudit(tx, ctx.clock, {
    type: 'organization.created',
    actorUserId: origin.actorUserId,
    organizationId: organization.id,
    meta: origin.meta,
    details: { customerNumber: organization.customerNumber, name: organization.name, language: organization.language, via: origin.via },
  });
  const { user, activation } = await inviteUserInTx(tx, ctx, {
    email: input.administrator.email,
    name: input.administrator.name,
    language: input.administrator.language,
    roles: ['CUSTOMER_ADMIN'],
    organization,
    actorUserId: origin.actorUserId,
    meta: origin.meta,
    via: origin.via,
  });
  await recordAudit(tx, ctx.clock, {
    type: 'organization.administrator_appointed',
    actorUserId: origin.actorUserId,
    subjectUserId: user.id,
    organizationId: organization.id,
    meta: origin.meta,
    details: { invited: true, via: origin.via },
  });
  const [summary] = await summaries(tx, [organization]);
  return { organization: summary!, administrator: user, activationLink: activation.link };
}

/** Maps the unique constraints of an organisation's creation to their 409 codes. */
export function creationConflict(err: unknown): Error | null {
  if (isEmailTaken(err)) return organizationErrors.email_taken();
  const constraint = violatedConstraint(err);
  if (constraint && /customer_number/.test(constraint)) return supportErrors.customer_number_taken();
  return null;
}

export async function createOrganization(ctx: AdminCtx, call: AdminCall, input: CreateOrganizationInput) {
  try {
    return await ctx.db.$transaction(async (tx) => {
      const acting = await loadActingUser(tx, call.actor);
      authorize(acting, 'organization.create', { organizationId: null });
      const { organization, administrator } = await createOrganizationInTx(tx, ctx, input, {
        actorUserId: acting.userId,
        meta: call.meta,
        via: 'support',
      });
      return { organization, administrator };
    });
  } catch (err) {
    throw creationConflict(err) ?? err;
  }
}

/**
 * Corrects an organisation's name or customer number (a typo at creation, a company renamed, a
 * merged customer account). Under the organisation-row lock; `organization.updated` audits what
 * changed (from → to), and nothing when nothing did. Names in mails already queued, and the
 * organisation name that passwords set before were checked against, stay as they were.
 */
export async function updateOrganization(
  ctx: AdminCtx,
  call: AdminCall,
  organizationId: string,
  input: { customerNumber?: string | undefined; name?: string | undefined; language?: Language | null | undefined },
) {
  try {
    return await ctx.db.$transaction(async (tx) => {
      const acting = await loadActingUser(tx, call.actor);
      authorize(acting, 'organization.update', { organizationId });
      if (!(await lockOrganization(tx, organizationId))) throw policyErrors.organization_not_found();
      const before = await tx.organization.findUniqueOrThrow({ where: { id: organizationId }, select: organizationSelect });
      const changes: Record<string, { from: string | null; to: string | null }> = {};
      // The customer number is citext: a change of case alone is a change (it is shown as typed).
      if (input.customerNumber !== undefined && input.customerNumber !== before.customerNumber) {
        changes.customerNumber = { from: before.customerNumber, to: input.customerNumber };
      }
      if (input.name !== undefined && input.name !== before.name) changes.name = { from: before.name, to: input.name };
      if (input.language !== undefined && input.language !== before.language) changes.language = { from: before.language, to: input.language };
      let after = before;
      if (Object.keys(changes).length) {
        after = await tx.organization.update({
          where: { id: organizationId },
          data: { customerNumber: input.customerNumber, name: input.name, language: input.language },
          select: organizationSelect,
        });
        await recordAudit(tx, ctx.clock, { type: 'organization.updated', actorUserId: acting.userId, organizationId, meta: call.meta, details: changes });
      }
      const [summary] = await summaries(tx, [after]);
      return summary!;
    });
  } catch (err) {
    throw creationConflict(err) ?? err;
  }
}

type OrgRef = { id: string; customerNumber: string; name: string } | null;

export async function searchUsers(
  ctx: AdminCtx,
  call: AdminCall,
  query: {
    email?: string | undefined;
    q?: string | undefined;
    organizationId?: string | undefined;
    status?: UserStatus | undefined;
    role?: Role | undefined;
    limit: number;
    cursor?: string | undefined;
  },
) {
  return ctx.db.$transaction(async (tx) => {
    const acting = await loadActingUser(tx, call.actor);
    authorize(acting, 'organization.users.list', { organizationId: query.organizationId ?? null });
    const heldFor = query.email === undefined ? [] : await accountsHolding(tx, ctx.clock, query.email);
    const where = userWhere({ ...query, heldFor });
    if (query.cursor) {
      const [name, id] = decodeCursor(query.cursor, 2) as [string, string];
      (where.AND as Prisma.UserWhereInput[]).push({ OR: [{ name: { gt: name } }, { name, id: { gt: id } }] });
    }
    const rows = await tx.user.findMany({
      where,
      select: { ...managedUserSelect, organization: { select: { id: true, customerNumber: true, name: true } } },
      orderBy: [{ name: 'asc' }, { id: 'asc' }],
      take: query.limit + 1,
    });
    const result = page(rows, query.limit, (r) => [r.name, r.id]);
    return {
      items: result.items.map((r) => ({ ...toManagedUser(r), organization: r.organization as OrgRef })),
      nextCursor: result.nextCursor,
    };
  });
}

/**
 * Appoints an administrator where the organisation has no ACTIVE one left (the only administrator
 * left the company, never activated, or is blocked): promote an existing member (`userId`) or
 * invite a new person. While an active administrator exists, the organisation governs itself:
 * 409 administrator_exists (its administrators grant CUSTOMER_ADMIN with PUT .../roles).
 *
 * `replacing` names the organisation's only ACTIVE administrator when that person is still active
 * (left the company, compromised): the appointment goes ahead as if they were not there, and they
 * are then blocked exactly as POST /v1/support/users/{id}/block does it (blockLockedUser). One
 * transaction, so the organisation is never without an administrator (security bar 25). Locks:
 * the organisation row, then the replaced user's row, then the successor's row (lockMemberOf),
 * each user row before anything of that user is written. Every role change, invite and block in
 * the organisation takes the organisation row first, so they all wait for (and see) this one.
 *
 * Appointing a member who has not activated yet (e.g. the first administrator whose link expired)
 * sends them a fresh activation link, voiding older ones: nobody else could (support does not
 * resend activations, and the organisation has no active administrator who could).
 */
export async function appointAdministrator(
  ctx: AdminCtx,
  call: AdminCall,
  organizationId: string,
  { replacing, ...input }: ({ userId: string } | { email: string; name: string; language?: Language | undefined }) & { replacing?: string | undefined },
): Promise<{ user: ManagedUser; invited: boolean }> {
  // UUIDs in either case name the same row.
  if ('userId' in input && input.userId.toLowerCase() === replacing?.toLowerCase()) throw supportErrors.replacing_same_user();
  try {
    return await ctx.db.$transaction(async (tx) => {
      const acting = await loadActingUser(tx, call.actor);
      if (!(await lockOrganization(tx, organizationId))) {
        authorize(acting, 'administrator.appoint', { organizationId });
        throw policyErrors.organization_not_found();
      }
      const replaced = replacing === undefined ? null : await lockReplaced(tx, acting, organizationId, replacing);
      const activeAdministrators = await countActiveAdministrators(tx, organizationId, replaced?.id);
      const organization = await tx.organization.findUniqueOrThrow({ where: { id: organizationId }, select: { id: true, name: true, language: true, suspendedAt: true } });
      if (replaced && activeAdministrators > 0 && organization.suspendedAt === null) {
        // A taken-over administrator may have made accomplices administrators: say what to do instead.
        throw policyErrors.administrator_exists(
          `Besides the administrator to be replaced, ${activeAdministrators} other active administrator${activeAdministrators === 1 ? '' : 's'} remain. ` +
            'Block each one who must go (POST /v1/support/users/{id}/block: allowed while another active administrator remains), ' +
            'then appoint the successor with `replacing` naming the last one.',
        );
      }
      authorize(acting, 'administrator.appoint', { organizationId }, { activeAdministrators, organizationSuspended: organization.suspendedAt !== null });

      const invited = 'email' in input;
      const user = invited
        ? (await inviteUserInTx(tx, ctx, { ...input, roles: ['CUSTOMER_ADMIN'], organization, actorUserId: acting.userId, meta: call.meta, via: 'support' })).user
        : await promoteMember(tx, ctx, { acting, organization, call, activeAdministrators }, input.userId);
      await recordAudit(tx, ctx.clock, {
        type: 'organization.administrator_appointed',
        actorUserId: acting.userId,
        subjectUserId: user.id,
        organizationId,
        meta: call.meta,
        details: { invited, via: 'support', ...(replaced ? { replacing: replaced.id } : {}) },
      });
      // Only now, with the successor counted, does the policy let the replaced administrator go.
      if (replaced) await blockLockedUser(tx, ctx, call, acting, replaced, { via: 'administrator_replaced' });
      return { user, invited };
    });
  } catch (err) {
    if (isEmailTaken(err)) throw organizationErrors.email_taken();
    throw err;
  }
}

/** Locks the administrator an appointment replaces: 404 outside this organisation, 409 unless an ACTIVE administrator. */
async function lockReplaced(tx: Tx, acting: ActingUser, organizationId: string, id: string): Promise<TargetUser> {
  const replaced = await lockMemberOf(tx, organizationId, id);
  if (!replaced) throw policyErrors.user_not_found();
  authorize(acting, 'user.replace_administrator', replaced);
  return replaced;
}

/** Grants a member of the organisation CUSTOMER_ADMIN; one who has not activated yet gets a fresh link. */
async function promoteMember(
  tx: Tx,
  ctx: AdminCtx,
  { acting, organization, call, activeAdministrators }: { acting: ActingUser; organization: { id: string; name: string }; call: AdminCall; activeAdministrators: number },
  userId: string,
): Promise<ManagedUser> {
  const target = await lockMemberOf(tx, organization.id, userId);
  if (!target) throw policyErrors.user_not_found();
  authorize(acting, 'user.appoint_administrator', target, { activeAdministrators });
  if (!target.roles.includes('CUSTOMER_ADMIN')) {
    const roles = normalizeRoles([...target.roles, 'CUSTOMER_ADMIN']);
    await tx.user.update({ where: { id: target.id }, data: { roles } });
    await recordAudit(tx, ctx.clock, {
      type: 'user.roles_changed',
      actorUserId: acting.userId,
      subjectUserId: target.id,
      organizationId: organization.id,
      meta: call.meta,
      details: { from: normalizeRoles(target.roles), to: roles, sessionsRevoked: 0, via: 'support' },
    });
  }
  if (target.status === 'INVITED') await resendActivationInTx(tx, ctx, target, originOf(acting, call), { via: 'administrator_appointed' });
  return toManagedUser((await findManagedUser(tx, target.id))!);
}
