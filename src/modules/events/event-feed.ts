import type pg from 'pg';
import { z } from 'zod';
import { decodeCursor, encodeCursor, paginationErrors } from '../organization/pagination.js';
import type { AuditEventType } from '../audit/audit.service.js';

/**
 * The event feed for other services (GET /v1/events): what happened to users and organisations,
 * so CSO 3.0 and others keep their copies in step — a user blocked, erased (delete your copy too),
 * renamed, moved to another address; sessions ended; an organisation suspended. Ids only: a
 * consumer that needs more asks the API; an erased user's feed entries name nobody.
 *
 * Read from the audit log in transaction order, without gaps: rows carry the id of the transaction
 * that wrote them (`txid`, migration 20261130060000), and the feed hands out only rows of
 * transactions older than every one still running (pg_snapshot_xmin), ordered by (txid, id)
 * numerically (not by the text the cursor carries). A row that commits late cannot fall behind a
 * reader's cursor, which ordering by time or id alone would allow. The order is that in which the
 * transactions began writing, not strictly that of their commits: for a user's current state, ask
 * the API. The cost: a transaction left open anywhere on the database server holds the feed back
 * until it ends. The partial index `audit_events_feed` covers exactly these types. Readable by the
 * clients in EVENT_FEED_CLIENTS only: it spans every organisation.
 */
export const FEED_EVENT_TYPES = [
  'user.invited',
  'user.activated',
  'user.invitation_withdrawn',
  'user.erased',
  'user.blocked',
  'user.unblocked',
  'user.roles_changed',
  'user.renamed',
  'user.email_changed',
  'user.signed_out',
  'password.reset_completed',
  'password.changed',
  'mfa.removed',
  'mfa.reset_by_admin',
  'mfa.reset_confirmed',
  'session.family_revoked',
  'organization.created',
  'organization.updated',
  'organization.suspended',
  'organization.reinstated',
] as const satisfies readonly AuditEventType[];

export const FeedEventSchema = z
  .object({
    id: z.uuid().describe('The audit event id: the same event is never handed out twice with another id'),
    type: z.enum(FEED_EVENT_TYPES),
    occurredAt: z.iso.datetime(),
    organizationId: z.uuid().nullable(),
    userId: z.uuid().nullable().describe('The user it concerns (null for organisation events); for user.erased: delete what you hold on them'),
  })
  .meta({ id: 'FeedEvent' });

export const FeedPageSchema = z
  .object({
    items: z.array(FeedEventSchema),
    nextCursor: z
      .string()
      .nullable()
      .describe('Pass as `cursor` next time, also when `items` is empty (poll with it); null only before the first event'),
  })
  .meta({ id: 'FeedPage' });

const FEED_TYPES_SQL = FEED_EVENT_TYPES.map((t) => `'${t}'`).join(', ');
// The type list is written out (not a parameter), so the planner can use the partial index, whose
// predicate is the same list.
const FEED_SQL = `
SELECT id, type, created_at, organization_id, subject_user_id, txid::text AS txid_text
  FROM audit_events
 WHERE type IN (${FEED_TYPES_SQL})
   AND txid < pg_snapshot_xmin(pg_current_snapshot())
   AND (txid, id) > ($1::xid8, $2::uuid)
 ORDER BY audit_events.txid, audit_events.id
 LIMIT $3`;

const START = ['0', '00000000-0000-0000-0000-000000000000'] as const;
const XID8 = /^\d{1,20}$/;

type Row = { id: string; type: (typeof FEED_EVENT_TYPES)[number]; created_at: Date; organization_id: string | null; subject_user_id: string | null; txid_text: string };

export async function readFeed(pool: pg.Pool, query: { cursor?: string | undefined; limit: number }) {
  const [txid, id] = query.cursor ? decodeCursor(query.cursor, 2) : [...START];
  if (!XID8.test(txid!) || BigInt(txid!) > 0xffff_ffff_ffff_ffffn) throw paginationErrors.invalid_cursor();
  const { rows } = await pool.query<Row>({ name: 'event-feed', text: FEED_SQL, values: [txid, id, query.limit] });
  const last = rows.at(-1);
  return {
    items: rows.map((r) => ({
      id: r.id,
      type: r.type,
      occurredAt: r.created_at.toISOString(),
      organizationId: r.organization_id,
      userId: r.subject_user_id,
    })),
    nextCursor: last ? encodeCursor([last.txid_text, last.id]) : (query.cursor ?? null),
  };
}
