import type { Tx } from '../../db/client.js';
import type { Clock } from '../../lib/clock.js';

/** Where a request came from, recorded with every audit event. */
export type RequestMeta = { ip: string | null; userAgent: string | null };

export type AuditInput = {
  type: AuditEventType;
  actorUserId?: string | null;
  subjectUserId?: string | null;
  organizationId?: string | null;
  meta: RequestMeta;
  details?: Record<string, unknown>;
};

/**
 * Audit event types. Adding one is a deliberate act: consumers (admins, support, SIEM exports)
 * filter by these names, so they never change once released.
 */
export const AUDIT_EVENT_TYPES = [
  'user.invited',
  'user.activated',
  'user.activation_resent',
  'user.blocked',
  'user.unblocked',
  'user.roles_changed',
  'user.terms_accepted',
  'user.preferences_changed',
  'login.password_succeeded',
  'login.password_failed',
  'login.mfa_succeeded',
  'login.mfa_failed',
  'login.locked',
  'login.blocked_attempt',
  'password.reset_requested',
  'password.reset_completed',
  'password.changed',
  'mfa.enrolled',
  'mfa.removed',
  'mfa.reset_by_admin',
  'mfa.reset_requested',
  'mfa.reset_confirmed',
  'mfa.locked',
  'mfa.recovery_code_used',
  'mfa.recovery_codes_regenerated',
  'session.created',
  'session.refreshed',
  'session.revoked',
  'session.family_revoked',
  'organization.created',
  'organization.administrator_appointed',
] as const;

export type AuditEventType = (typeof AUDIT_EVENT_TYPES)[number];

type AuditListener = (type: AuditEventType) => void;
const auditListeners = new Set<AuditListener>();

/**
 * Observes every audit event written (the metrics plugin counts them by type). Listeners run
 * after the row is written, inside the caller's transaction, and must not throw. Returns an
 * unsubscribe function.
 */
export function onAuditEvent(listener: AuditListener): () => void {
  auditListeners.add(listener);
  return () => auditListeners.delete(listener);
}

export async function recordAudit(tx: Tx, clock: Clock, input: AuditInput): Promise<void> {
  await recordAuditRow(tx, clock, input);
  for (const listener of auditListeners) listener(input.type);
}

async function recordAuditRow(tx: Tx, clock: Clock, input: AuditInput): Promise<void> {
  await tx.auditEvent.create({
    data: {
      type: input.type,
      actorUserId: input.actorUserId ?? null,
      subjectUserId: input.subjectUserId ?? null,
      organizationId: input.organizationId ?? null,
      ip: input.meta.ip,
      userAgent: input.meta.userAgent?.slice(0, 512) ?? null,
      details: (input.details ?? {}) as object,
      createdAt: clock.now(),
    },
  });
}
