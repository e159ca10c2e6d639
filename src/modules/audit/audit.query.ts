import type { Actor } from '../../access/actor.js';
import { authorize, policyErrors } from '../../access/policy.js';
import type { AppContext } from '../../context.js';
import type { Tx } from '../../db/client.js';
import type { Prisma } from '../../generated/prisma/client.js';
import { loadActingUser } from '../organization/acting-user.js';
import { cursorInstant, decodeCursor, page } from '../organization/pagination.js';
import type { AuditEventType } from './audit.service.js';

/** Reading the audit log: newest first, keyset-paginated on (createdAt, id). */

export type AuditFilter = {
  /** Restricts to one organisation's events (customer administrators always get theirs). */
  organizationId?: string | undefined;
  /** Events where this user is the subject or the actor. */
  userId?: string | undefined;
  type?: AuditEventType | undefined;
  /** Inclusive lower bound. */
  from?: Date | undefined;
  /** Exclusive upper bound. */
  to?: Date | undefined;
};

type Person = { id: string; name: string | null; email: string | null };

export type AuditEventView = {
  id: string;
  type: string;
  occurredAt: string;
  organizationId: string | null;
  actor: Person | null;
  subject: Person | null;
  ip: string | null;
  userAgent: string | null;
  details: Record<string, unknown>;
};

export async function listAuditEvents(
  tx: Tx,
  filter: AuditFilter,
  pageQuery: { limit: number; cursor?: string | undefined },
  view: { hideSupportOrigin: boolean },
): Promise<{ items: AuditEventView[]; nextCursor: string | null }> {
  const and: Prisma.AuditEventWhereInput[] = [];
  if (filter.organizationId) and.push({ organizationId: filter.organizationId });
  if (filter.userId) and.push({ OR: [{ subjectUserId: filter.userId }, { actorUserId: filter.userId }] });
  if (filter.type) and.push({ type: filter.type });
  if (filter.from) and.push({ createdAt: { gte: filter.from } });
  if (filter.to) and.push({ createdAt: { lt: filter.to } });
  if (pageQuery.cursor) {
    const [at, id] = decodeCursor(pageQuery.cursor, 2) as [string, string];
    const time = cursorInstant(at);
    and.push({ OR: [{ createdAt: { lt: time } }, { createdAt: time, id: { lt: id } }] });
  }
  const rows = await tx.auditEvent.findMany({
    where: { AND: and },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: pageQuery.limit + 1,
  });
  const result = page(rows, pageQuery.limit, (r) => [r.createdAt.toISOString(), r.id]);

  const ids = new Set<string>();
  for (const r of result.items) {
    if (r.actorUserId) ids.add(r.actorUserId);
    if (r.subjectUserId) ids.add(r.subjectUserId);
  }
  const people = new Map(
    (await tx.user.findMany({ where: { id: { in: [...ids] } }, select: { id: true, name: true, email: true, roles: true } })).map((u) => [u.id, u]),
  );
  const isSupport = (id: string | null) => Boolean(id && people.get(id)?.roles.includes('SUPPORT'));
  const person = (id: string | null): Person | null => {
    if (!id) return null;
    const p = people.get(id);
    // A support employee's own address is not the customers' to know (they write to SUPPORT_CONTACT).
    const email = view.hideSupportOrigin && isSupport(id) ? null : (p?.email ?? null);
    return { id, name: p?.name ?? null, email };
  };

  return {
    nextCursor: result.nextCursor,
    items: result.items.map((r) => {
      // Customers see what support did to their users, but not the support desk's network details
      // or addresses, nor the OS account and reason of an operator's CLI command (the shop's internals).
      // An actor no longer there (erased) is hidden too: whoever it was, its traces are not shown.
      const details = (r.details ?? {}) as Record<string, unknown>;
      const actorGone = r.actorUserId !== null && !people.has(r.actorUserId);
      const hide = view.hideSupportOrigin && (isSupport(r.actorUserId) || actorGone || details.by === 'support' || details.via === 'support');
      return {
        id: r.id,
        type: r.type,
        occurredAt: r.createdAt.toISOString(),
        organizationId: r.organizationId,
        actor: person(r.actorUserId),
        subject: person(r.subjectUserId),
        ip: hide ? null : r.ip,
        userAgent: hide ? null : r.userAgent,
        details: view.hideSupportOrigin ? withoutOperator(details) : details,
      };
    }),
  };
}

/** The details without `cli` (the operator's OS account and reason: audit.service.ts RequestMeta). */
function withoutOperator(details: Record<string, unknown>): Record<string, unknown> {
  if (!('cli' in details)) return details;
  const { cli: _cli, ...rest } = details;
  return rest;
}

/** The audit log as the acting user may read it: their organisation's, or (support) any. */
export async function readAuditLog(
  ctx: Pick<AppContext, 'db'>,
  call: { actor: Pick<Actor, 'userId'> },
  scope: 'own' | { organizationId?: string | undefined },
  filter: Omit<AuditFilter, 'organizationId'>,
  pageQuery: { limit: number; cursor?: string | undefined },
) {
  return ctx.db.$transaction(async (tx) => {
    const acting = await loadActingUser(tx, call.actor);
    let organizationId: string | null;
    if (scope === 'own') {
      if (!acting.organizationId) throw policyErrors.forbidden();
      organizationId = acting.organizationId;
    } else {
      organizationId = scope.organizationId ?? null;
    }
    authorize(acting, 'organization.audit.read', { organizationId });
    return listAuditEvents(tx, { ...filter, organizationId: organizationId ?? undefined }, pageQuery, {
      hideSupportOrigin: scope === 'own',
    });
  });
}
