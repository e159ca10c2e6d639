-- The event feed also tells of changed preferences (language, newsletter) and of an authenticator
-- set up: GET /v1/service/users/{id} answers both, and a copy kept in step by the feed must learn
-- when they change. The partial index covers the feed's types exactly (event-feed.ts
-- FEED_EVENT_TYPES), so it is built again with the two more: beside the old one under another
-- name, then put in its place. Building it blocks inserts into audit_events (every sign-in writes
-- one) for as long as it takes; on a large installation build it beforehand with CREATE INDEX
-- CONCURRENTLY (docs/operations.md, "Upgrading a large installation") and this finds it. The old
-- index is dropped last, so reads are held only for that moment. A release before this one reads
-- its shorter list through the new index (its IN list implies this one).
CREATE INDEX IF NOT EXISTS "audit_events_feed_2" ON "audit_events" ("txid", "id")
WHERE "type" IN ('user.invited', 'user.activated', 'user.invitation_withdrawn', 'user.erased', 'user.blocked', 'user.unblocked',
  'user.roles_changed', 'user.renamed', 'user.email_changed', 'user.preferences_changed', 'user.signed_out', 'password.reset_completed',
  'password.changed', 'mfa.enrolled', 'mfa.removed', 'mfa.reset_by_admin', 'mfa.reset_confirmed', 'session.family_revoked',
  'organization.created', 'organization.updated', 'organization.suspended', 'organization.reinstated');
DROP INDEX "audit_events_feed";
ALTER INDEX "audit_events_feed_2" RENAME TO "audit_events_feed";
