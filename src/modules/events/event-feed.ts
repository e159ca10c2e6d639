import type pg from 'pg';
import { queryPrepared } from '../../db/sql.js';
import { z } from 'zod';
import { decodeCursor, encodeCursor, paginationErrors } from '../organization/pagination.js';
import type { AuditEventType } from '../audit/audit.service.js';
import { defineErrors } from '../../errors.js';

/**
 * The event feed for other services (GET /v1/events): what happened to users and organisations,
 * so CSO 3.0 and others keep their copies in step — a user blocked, erased (delete your copy too),
 * renamed, moved to another address, with new preferences or a new authenticator; sessions ended;
 * an organisation suspended. Ids only: a consumer that needs more reads GET /v1/service/users/{id}
 * or /v1/service/organizations/{id} (directory.routes.ts); an erased user's feed entries name nobody.
 *
 * Read from the audit log in transaction order, without gaps: rows carry the id of the transaction
 * that wrote them (`txid`, migration 20261130060000; on the feed's clock, feed-clock.ts), and the
 * feed hands out only rows of transactions older than every one still running (pg_snapshot_xmin,
 * on that clock: FEED_HORIZON), ordered by (txid, id)
 * numerically (not by the text the cursor carries). A row that commits late cannot fall behind a
 * reader's cursor, which ordering by time or id alone would allow. The order is that in which the
 * transactions began writing, not strictly that of their commits: for a user's current state, ask
 * the API. The cost: a transaction left open anywhere on the database server holds the feed back
 * until it ends. The partial index `audit_events_feed` covers exactly these types, and the table
 * `feed_event_types` lists them (see readFeedEvents for why). Readable by the
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
  'user.preferences_changed',
  'user.signed_out',
  'password.reset_completed',
  'password.changed',
  'mfa.enrolled',
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

/** The feed types as an SQL list, written out where the planner must see the partial index's predicate. */
export const FEED_TYPES_SQL = FEED_EVENT_TYPES.map((t) => `'${t}'`).join(', ');
/**
 * Where a read stops: before the oldest transaction still running, on the feed's clock (feed_clock's
 * shift, as the audit rows' feed_txid() adds it). Operators and functions named with their schema:
 * one someone creates in a schema on the service's path cannot stand in for them.
 */
const FEED_HORIZON = `(pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot())::text::numeric OPERATOR(pg_catalog.+) (SELECT c.shift::numeric FROM feed_clock c WHERE c.id))::text::xid8`;
// The type list is written out (not a parameter), so the planner can use the partial index, whose
// predicate is the same list. $4 is the horizon (FEED_HORIZON when the read began), $5/$6 the
// first event of a type this release does not know (the highest key when there is none).
const AFTER_CURSOR = `
  FROM audit_events
 WHERE type IN (${FEED_TYPES_SQL})
   AND txid < $4::xid8
   AND (txid, id) > ($1::xid8, $2::uuid)`;
const FEED_SQL = `
SELECT id, type, created_at, organization_id, subject_user_id, txid::text AS txid_text ${AFTER_CURSOR}
   AND (txid, id) < ($5::xid8, $6::uuid)
 ORDER BY audit_events.txid, audit_events.id
 LIMIT $3`;
const COUNT_SQL = `SELECT count(*)::int AS n FROM (SELECT 1 ${AFTER_CURSOR} LIMIT $3) waiting`;
/** Where the read stops, and the feed types a later release listed in feed_event_types that this one does not know. */
const HORIZON_SQL = `
SELECT ${FEED_HORIZON}::text AS horizon,
       ARRAY(SELECT type FROM feed_event_types WHERE type <> ALL($1::text[]) ORDER BY type) AS later_types`;
/** The first event of such a type after the cursor, before the horizon. */
const LATER_TYPE_SQL = `
SELECT txid::text AS txid_text, id
  FROM audit_events
 WHERE type = ANY($3::text[]) AND txid < $4::xid8 AND (txid, id) > ($1::xid8, $2::uuid)
 ORDER BY txid, id
 LIMIT 1`;
const LAST_KEY: [string, string] = ['18446744073709551615', 'ffffffff-ffff-ffff-ffff-ffffffffffff'];

const XID8 = /^\d{1,20}$/;

export const feedReadErrors = defineErrors({
  feed_cursor_ahead: { status: 409, title: 'The cursor is ahead of the event feed' },
});

type Row = { id: string; type: (typeof FEED_EVENT_TYPES)[number]; created_at: Date; organization_id: string | null; subject_user_id: string | null; txid_text: string };

export type FeedEvent = z.infer<typeof FeedEventSchema>;

/** The start of the feed: before every event. */
export const FEED_START = encodeCursor(['0', '00000000-0000-0000-0000-000000000000']);

/**
 * Up to `limit` events after `cursor`, each with the cursor that follows it (a consumer that takes
 * them one at a time, like the webhook delivery, moves on event by event). A cursor that is not
 * one encodeCursor made here is invalid_cursor.
 *
 * During a rolling upgrade, a later release may write events of a type it added to the feed (its
 * migration lists the type in feed_event_types). This release cannot describe them, so it hands
 * out nothing from the first such event on: its cursors never move past one, and an instance of
 * the later release hands it out with what follows (nothing to replay after the upgrade).
 */
export async function readFeedEvents(pool: pg.Pool, cursor: string, limit: number): Promise<{ event: FeedEvent; cursor: string }[]> {
  const key = cursorKey(cursor);
  const horizon = await feedHorizon(pool);
  // Every cursor handed out lies before the horizon of its read, and the horizon only grows: one at
  // or past it comes from before the database went back in time (a physical backup or a
  // point-in-time recovery restored; a logical one the feed clock could not tell), and what is
  // written now would sort before it, never to be handed out.
  if (BigInt(key[0]) >= BigInt(horizon.xmin)) {
    throw feedReadErrors.feed_cursor_ahead(
      'The cursor is ahead of the event feed: its database was restored to an earlier point, and what happened after that point is lost. ' +
        'Read the users and organisations you hold again (GET /v1/service/users/{id}, /v1/service/organizations/{id}), then read the feed again without a cursor: events you have come again with the same ids.',
    );
  }
  const stop = horizon.laterTypes.length === 0 ? LAST_KEY : await firstOfLaterType(pool, key, horizon);
  const { rows } = await queryPrepared<Row>(pool, { name: 'event-feed', text: FEED_SQL, values: [...key, limit, horizon.xmin, ...stop] });
  return rows.map((r) => ({
    event: { id: r.id, type: r.type, occurredAt: r.created_at.toISOString(), organizationId: r.organization_id, userId: r.subject_user_id },
    cursor: encodeCursor([r.txid_text, r.id]),
  }));
}

type Horizon = { xmin: string; laterTypes: string[] };

async function feedHorizon(pool: pg.Pool): Promise<Horizon> {
  const { rows } = await queryPrepared<{ horizon: string; later_types: string[] }>(pool, { name: 'event-feed-horizon', text: HORIZON_SQL, values: [FEED_EVENT_TYPES] });
  return { xmin: rows[0]!.horizon, laterTypes: rows[0]!.later_types };
}

async function firstOfLaterType(pool: pg.Pool, key: [string, string], horizon: Horizon): Promise<[string, string]> {
  const { rows } = await pool.query<{ txid_text: string; id: string }>(LATER_TYPE_SQL, [...key, horizon.laterTypes, horizon.xmin]);
  return rows[0] ? [rows[0].txid_text, rows[0].id] : LAST_KEY;
}

/** How many events wait after `cursor`, counting up to `max`. */
export async function countFeedEvents(pool: pg.Pool, cursor: string, max: number): Promise<number> {
  const { xmin } = await feedHorizon(pool);
  const { rows } = await queryPrepared<{ n: number }>(pool, { name: 'event-feed-count', text: COUNT_SQL, values: [...cursorKey(cursor), max, xmin] });
  return rows[0]!.n;
}

function cursorKey(cursor: string): [string, string] {
  const [txid, id] = decodeCursor(cursor, 2);
  if (!XID8.test(txid!) || BigInt(txid!) > 0xffff_ffff_ffff_ffffn) throw paginationErrors.invalid_cursor();
  return [txid!, id!];
}

/**
 * A cursor after every event of the transactions that ended before now (those still running and
 * later ones come after it): where a new webhook starts. A few changes that committed just before
 * (in transactions newer than the oldest one still running) come after it too: harmless.
 */
export async function currentFeedEnd(pool: pg.Pool): Promise<string> {
  const { rows } = await pool.query<{ xmin: string }>(`SELECT ${FEED_HORIZON}::text AS xmin`);
  return encodeCursor([String(BigInt(rows[0]!.xmin) - 1n), 'ffffffff-ffff-ffff-ffff-ffffffffffff']);
}

export async function readFeed(pool: pg.Pool, query: { cursor?: string | undefined; limit: number }) {
  const entries = await readFeedEvents(pool, query.cursor ?? FEED_START, query.limit);
  return { items: entries.map((e) => e.event), nextCursor: entries.at(-1)?.cursor ?? query.cursor ?? null };
}
