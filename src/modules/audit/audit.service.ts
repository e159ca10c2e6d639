import type { Tx } from '../../db/client.js';
import { newId, prismaSql, type Sql } from '../../db/sql.js';
import { SqlParams } from '../../db/sql-params.js';
import type { Clock } from '../../lib/clock.js';

/**
 * Where a request came from, recorded with every audit event. `cli` is set by the operator CLI only
 * (no IP, no signed-in actor): who ran the command and why, stored as `details.cli` of every audit
 * row written with this meta (apart from the event's own details, which it never overwrites or hides).
 */
export type RequestMeta = { ip: string | null; userAgent: string | null; cli?: CliInvocation };

/** The OS account that ran an operator command (null if unknown) and the --reason given, if any. */
export type CliInvocation = { operator: string | null; reason?: string };

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
  'user.invitation_withdrawn',
  'user.erased',
  'user.blocked',
  'user.unblocked',
  'user.unlocked',
  'user.roles_changed',
  'user.renamed',
  'user.signed_out',
  'user.email_change_requested',
  'user.email_changed',
  'user.terms_accepted',
  'user.preferences_changed',
  'login.password_succeeded',
  'login.password_failed',
  'login.mfa_succeeded',
  'login.mfa_failed',
  'login.locked',
  'login.lock_lifted',
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
  'session.revoked',
  'session.family_revoked',
  'organization.created',
  'organization.updated',
  'organization.suspended',
  'organization.reinstated',
  'organization.administrator_appointed',
  'signing_key.rotated',
  'encryption_key.rotated',
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

/** Tells the listeners that an audit event was written (recordAudits does it; statements with audit CTEs call it after they ran). */
export function announceAudit(type: AuditEventType): void {
  for (const listener of auditListeners) listener(type);
}

/** Writes one audit row in the caller's transaction (the same statement as every audit insert: auditInsertSql). */
export async function recordAudit(tx: Tx, clock: Clock, input: AuditInput): Promise<void> {
  await recordAudits(prismaSql(tx), clock, [input]);
}

const truncateUserAgent = (userAgent: string | null) => userAgent?.slice(0, 512) ?? null;

/**
 * An audit row as an `INSERT ... SELECT` for a raw SQL statement (src/db/sql.ts); ids come from
 * newId(), time-ordered, so the events of one request keep their order.
 * `from` makes the insert conditional on (one row of) an earlier CTE; `details` may add SQL-computed
 * fields (a jsonb expression over `from`) to input.details, and `subject` take the subject user and
 * organisation from it (SQL expressions) instead of input. Call announceAudit after the statement.
 */
export function auditInsertSql(
  p: SqlParams,
  clock: Clock,
  input: AuditInput,
  options: { from?: string; details?: string; subject?: { userId: string; organizationId: string } } = {},
): string {
  const details = p.add(JSON.stringify(input.meta.cli ? { ...input.details, cli: input.meta.cli } : (input.details ?? {})), 'jsonb');
  const subject = options.subject ?? { userId: p.add(input.subjectUserId ?? null, 'uuid'), organizationId: p.add(input.organizationId ?? null, 'uuid') };
  return `INSERT INTO audit_events (id, type, actor_user_id, subject_user_id, organization_id, ip, user_agent, details, created_at)
    SELECT ${p.add(newId(), 'uuid')}, ${p.add(input.type, 'text')}, ${p.add(input.actorUserId ?? null, 'uuid')},
      ${subject.userId}, ${subject.organizationId}, ${p.add(input.meta.ip, 'text')},
      ${p.add(truncateUserAgent(input.meta.userAgent), 'text')}, ${options.details ? `${details} || ${options.details}` : details},
      ${p.add(clock.now(), 'timestamptz')}${options.from ? ` FROM ${options.from}` : ''}`;
}

/** Rows per statement in recordManyAudits (PostgreSQL takes at most 65,535 parameters in one). */
const AUDIT_ROWS_PER_STATEMENT = 500;

/**
 * Writes any number of audit rows in the caller's transaction, in statements of at most
 * AUDIT_ROWS_PER_STATEMENT rows (a block of a whole organisation, the end of many sessions).
 */
export async function recordManyAudits(tx: Tx, clock: Clock, inputs: readonly AuditInput[]): Promise<void> {
  for (let from = 0; from < inputs.length; from += AUDIT_ROWS_PER_STATEMENT) {
    await recordAudits(prismaSql(tx), clock, inputs.slice(from, from + AUDIT_ROWS_PER_STATEMENT));
  }
}

/** Writes audit rows in ONE raw SQL statement (e.g. on the pool: its own commit) and announces them. */
export async function recordAudits(sql: Sql, clock: Clock, inputs: AuditInput[]): Promise<void> {
  const p = new SqlParams();
  const inserts = inputs.map((input, i) => `audit_${i} AS (${auditInsertSql(p, clock, input)})`);
  await sql(`WITH ${inserts.join(', ')} SELECT 1`, p.values);
  for (const input of inputs) announceAudit(input.type);
}
