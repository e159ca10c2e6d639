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
/** Each shown type with what it means to the user (the document lists them for the frontend). */
const MEANINGS = {
  'user.activated': 'You activated your account (chose your password)',
  'login.mfa_succeeded': 'A sign-in with password and code (or recovery code)',
  'login.password_failed':
    'A password was refused (details.reason: wrong_password; locked: typed while sign-in was locked, right or wrong; locked_unchecked: not checked during a lock; password_changed: changed meanwhile; not_activated: typed before the account was activated)',
  'login.mfa_failed': 'A code was refused after the right password (details.reason, details.factor: totp or recovery_code)',
  'login.locked': 'Sign-in was locked after wrong passwords in a row (details.until)',
  'mfa.locked': 'Code entry was locked after wrong codes in a row (details.until)',
  'login.lock_lifted': 'A sign-in lock was lifted again (the attempt that set it did not complete)',
  'login.blocked_attempt': 'A sign-in while the account was blocked (details.step: password or code)',
  'user.unlocked': 'A lock was lifted early (details.password, details.code: which, set until when)',
  'password.reset_requested': 'A password-reset mail was asked for (details.mailSent: false when none went out, e.g. too many at once)',
  'password.reset_completed': 'The password was reset with a mailed link',
  'password.changed': 'The password was changed',
  'mfa.enrolled': 'An authenticator app was set up',
  'mfa.removed': 'The authenticator app was removed',
  'mfa.reset_by_admin': 'The two-step login was reset by an administrator',
  'mfa.reset_requested': 'Support asked you by mail to confirm a reset of the two-step login',
  'mfa.reset_confirmed': 'You confirmed that reset with the mailed link; the two-step login was removed',
  'mfa.recovery_code_used': 'A recovery code was used to sign in (details.remaining)',
  'mfa.recovery_codes_regenerated': 'New recovery codes were created (the old ones stopped working)',
  'user.email_change_requested': 'A move to another e-mail address was asked for (details.from, details.to)',
  'user.email_changed': 'The e-mail address was changed (details.from, details.to; details.undone: a move undone from the address it left)',
  'user.roles_changed': 'Your roles were changed (details.from, details.to)',
  'user.blocked': 'The account was blocked',
  'user.unblocked': 'The account was unblocked',
  'user.signed_out': 'You were signed out of every device',
  'session.family_revoked': 'A sign-in was ended because an old refresh token of it was used again (possibly stolen), or because it was refreshed unusually often',
} as const satisfies Partial<Record<AuditEventType, string>>;

type ShownType = keyof typeof MEANINGS;
export const SECURITY_EVENT_TYPES = Object.keys(MEANINGS) as [ShownType, ...ShownType[]];

/** The detail fields shown per type: the user's own data, nothing about others or the service's internals. */
const SHOWN_DETAILS: Partial<Record<ShownType, readonly string[]>> = {
  'login.password_failed': ['reason'],
  'login.mfa_failed': ['reason', 'factor'],
  'login.locked': ['until'],
  'mfa.locked': ['until'],
  'login.blocked_attempt': ['step'],
  'user.unlocked': ['password', 'code'],
  'password.reset_requested': ['mailSent'],
  'mfa.recovery_code_used': ['remaining'],
  'user.email_change_requested': ['from', 'to'],
  'user.email_changed': ['from', 'to', 'undone'],
  'user.roles_changed': ['from', 'to'],
};

/**
 * Sign-in attempts: made before anyone is signed in, whoever the row names as actor (the code step
 * names the account), so `by` is null — the password may be in someone else's hands. Only a
 * password typed in a signed-in session (to change it, or to confirm a sensitive change) is yours.
 */
const SIGN_IN_ATTEMPTS: ReadonlySet<string> = new Set(['login.password_failed', 'login.mfa_failed', 'login.locked', 'mfa.locked', 'login.lock_lifted', 'login.blocked_attempt']);
const SIGNED_IN_FLOWS: ReadonlySet<unknown> = new Set(['change_password', 'reauthentication']);
/** `details.by` / `details.via` as the writers record who acted. */
const RECORDED_BY: Readonly<Record<string, SecurityEvent['by']>> = { self: 'you', admin: 'administrator', support: 'support', cli: 'operator' };

export const SecurityEventSchema = z
  .object({
    id: z.uuid(),
    type: z
      .enum(SECURITY_EVENT_TYPES)
      .describe(`What happened: ${Object.entries(MEANINGS).map(([type, meaning]) => `\`${type}\`: ${meaning}`).join('; ')}`),
    occurredAt: z.iso.datetime(),
    by: z
      .enum(['you', 'administrator', 'support', 'operator'])
      .nullable()
      .describe(
        "Who did it: you (signed in), your organisation's administrator, the shop's support, its operators; null: a sign-in attempt or the system (whoever typed the password or code)",
      ),
    ip: z.string().nullable().describe("Where it came from: shown for what you did and for sign-in attempts; null for an administrator's, support's or the operators' change"),
    userAgent: z.string().nullable().describe('The browser or app, as far as it told (same rule as ip)'),
    details: z.record(z.string(), z.unknown()).describe('More about some types (named in `type`); empty for the others'),
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
  const and: Prisma.AuditEventWhereInput[] = [{ subjectUserId: actor.userId }, { type: { in: SECURITY_EVENT_TYPES } }];
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
  const known = await ctx.db.user.findMany({ where: { id: { in: others } }, select: { id: true, roles: true } });
  const support = new Set(known.filter((u) => u.roles.includes('SUPPORT')).map((u) => u.id));
  const byWhom = (type: ShownType, actorUserId: string | null, details: Record<string, unknown>): SecurityEvent['by'] => {
    if ('cli' in details) return 'operator';
    if (SIGN_IN_ATTEMPTS.has(type)) return actorUserId === actor.userId && SIGNED_IN_FLOWS.has(details.flow) ? 'you' : null;
    if (actorUserId === null) return null;
    if (actorUserId === actor.userId) return 'you';
    // As recorded when it happened (the actor may have been erased since), else by the actor's role.
    const recorded = RECORDED_BY[String(details.by ?? details.via)];
    if (recorded) return recorded;
    return support.has(actorUserId) || type === 'mfa.reset_requested' ? 'support' : 'administrator';
  };
  return {
    nextCursor: result.nextCursor,
    items: result.items.map((r) => {
      const type = r.type as ShownType;
      const details = (r.details ?? {}) as Record<string, unknown>;
      const by = byWhom(type, r.actorUserId, details);
      const shown = by === 'you' || by === null;
      return {
        id: r.id,
        type,
        occurredAt: r.createdAt.toISOString(),
        by,
        ip: shown ? r.ip : null,
        userAgent: shown ? r.userAgent : null,
        details: Object.fromEntries((SHOWN_DETAILS[type] ?? []).filter((key) => key in details).map((key) => [key, details[key]])),
      };
    }),
  };
}
