-- The event feed for service clients (GET /v1/events): each audit row records the transaction that
-- wrote it, so the feed hands out rows in commit-safe order — only rows of transactions older than
-- every one still running (pg_snapshot_xmin), ordered by (txid, id) — and a reader never skips a row
-- that commits late. No rewrite: rows written before have none (the feed starts with this version).
ALTER TABLE "audit_events" ADD COLUMN "txid" xid8;
ALTER TABLE "audit_events" ALTER COLUMN "txid" SET DEFAULT pg_current_xact_id();

-- Only the feed's event types are indexed (src/modules/events/event-feed.ts FEED_EVENT_TYPES): the
-- sign-in path's rows cost the index nothing.
CREATE INDEX "audit_events_feed" ON "audit_events" ("txid", "id")
WHERE "type" IN ('user.invited', 'user.activated', 'user.invitation_withdrawn', 'user.erased', 'user.blocked', 'user.unblocked',
  'user.roles_changed', 'user.renamed', 'user.email_changed', 'user.signed_out', 'password.reset_completed', 'password.changed',
  'mfa.removed', 'mfa.reset_by_admin', 'mfa.reset_confirmed', 'session.family_revoked', 'organization.created', 'organization.updated',
  'organization.suspended', 'organization.reinstated');
