import { z } from 'zod';
import type { Actor } from '../../access/actor.js';
import type { AppContext } from '../../context.js';
import type { Prisma } from '../../generated/prisma/client.js';
import { cursorInstant, decodeCursor, NextCursor, page } from '../organization/pagination.js';
import type { AuditEventType } from '../audit/audit.service.js';

/**
 * The signed-in user's own security activity (GET /v1/me/security-events), as account pages of
 * Google or GitHub show it: sign-ins, failed attempts on the account (with where they came from),
 * locks, changes of password, authenticator, address and status, and who made them. Read from the
 * audit log, events about the user only, of the types below (not every session refresh or
 * preference save). Others' network details stay hidden: the IP and browser are shown only for
 * what the user did or what was tried on the account without signing in; an administrator's or
 * support's stay theirs.
 */
export const SECURITY_EVENT_TYPES = [
  'user.activated',
  'login.mfa_succeeded',
  'login.password_failed',
  'login.mfa_failed',
  'login.locked',
  'mfa.locked',
  'login.blocked_attempt',
  'user.unlocked',
  'password.reset_requested',
  'password.reset_completed',
  'password.changed',
  'mfa.enrolled',
  'mfa.removed',
  'mfa.reset_by_admin',
  'mfa.reset_requested',
  'mfa.reset_confirmed',
  'mfa.recovery_code_used',
  'mfa.recovery_codes_regenerated',
  'user.email_change_requested',
  'user.email_changed',
  'user.roles_changed',
  'user.blocked',
  'user.unblocked',
  'user.signed_out',
  'session.family_revoked',
] as const satisfies readonly AuditEventType[];

export const SecurityEventSchema = z
  .object({
    id: z.uuid(),
    type: z.enum(SECURITY_EVENT_TYPES).describe('What happened (the audit event type)'),
    occurredAt: z.iso.datetime(),
    by: z
      .enum(['you', 'administrator', 'support', 'operator'])
      .nullable()
      .describe("Who did it: you, your organisation's administrator, the shop's support, its operators; null: nobody signed in (an attempt, the system)"),
    ip: z.string().nullable().describe('Where it came from: shown for what you did and for attempts nobody was signed in for'),
    userAgent: z.string().nullable(),
  })
  .meta({ id: 'SecurityEvent' });

export const SecurityEventPageSchema = z
  .object({ items: z.array(SecurityEventSchema), nextCursor: NextCursor })
  .meta({ id: 'SecurityEventPage' });

type SecurityEvent = z.infer<typeof SecurityEventSchema>;

export async function listSecurityEvents(
  ctx: Pick<AppContext, 'db'>,
  actor: Pick<Actor, 'userId'>,
  pageQuery: { limit: number; cursor?: string | undefined },
): Promise<{ items: SecurityEvent[]; nextCursor: string | null }> {
  const and: Prisma.AuditEventWhereInput[] = [{ subjectUserId: actor.userId }, { type: { in: [...SECURITY_EVENT_TYPES] } }];
  if (pageQuery.cursor) {
    const [at, id] = decodeCursor(pageQuery.cursor, 2) as [string, string];
    const time = cursorInstant(at);
    and.push({ OR: [{ createdAt: { lt: time } }, { createdAt: time, id: { lt: id } }] });
  }
  const rows = await ctx.db.auditEvent.findMany({
    where: { AND: and },
    orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
    take: pageQuery.limit + 1,
    select: { id: true, type: true, createdAt: true, actorUserId: true, ip: true, userAgent: true, details: true },
  });
  const result = page(rows, pageQuery.limit, (r) => [r.createdAt.toISOString(), r.id]);
  const others = [...new Set(result.items.map((r) => r.actorUserId).filter((id): id is string => id !== null && id !== actor.userId))];
  const support = new Set(
    (await ctx.db.user.findMany({ where: { id: { in: others }, roles: { has: 'SUPPORT' } }, select: { id: true } })).map((u) => u.id),
  );
  const byWhom = (actorUserId: string | null, details: unknown): SecurityEvent['by'] => {
    if (actorUserId === actor.userId) return 'you';
    if (actorUserId !== null) return support.has(actorUserId) ? 'support' : 'administrator';
    return typeof details === 'object' && details !== null && 'cli' in details ? 'operator' : null;
  };
  return {
    nextCursor: result.nextCursor,
    items: result.items.map((r) => {
      const by = byWhom(r.actorUserId, r.details);
      const shown = by === 'you' || by === null;
      return {
        id: r.id,
        type: r.type as SecurityEvent['type'],
        occurredAt: r.createdAt.toISOString(),
        by,
        ip: shown ? r.ip : null,
        userAgent: shown ? r.userAgent : null,
      };
    }),
  };
}
