-- The event feed's types, in the database (src/modules/events/event-feed.ts, FEED_EVENT_TYPES): a
-- later release that adds a type lists it here in its migration, and an instance of an earlier
-- release, still serving GET /v1/events or delivering webhooks during a rolling upgrade, stops
-- before the first event of a type it does not know instead of moving its cursor past it.
-- CreateTable
CREATE TABLE "feed_event_types" (
    "type" TEXT NOT NULL,

    CONSTRAINT "feed_event_types_pkey" PRIMARY KEY ("type")
);

INSERT INTO "feed_event_types" ("type") VALUES
  ('user.invited'),
  ('user.activated'),
  ('user.invitation_withdrawn'),
  ('user.erased'),
  ('user.blocked'),
  ('user.unblocked'),
  ('user.roles_changed'),
  ('user.renamed'),
  ('user.email_changed'),
  ('user.preferences_changed'),
  ('user.signed_out'),
  ('password.reset_completed'),
  ('password.changed'),
  ('mfa.enrolled'),
  ('mfa.removed'),
  ('mfa.reset_by_admin'),
  ('mfa.reset_confirmed'),
  ('session.family_revoked'),
  ('organization.created'),
  ('organization.updated'),
  ('organization.suspended'),
  ('organization.reinstated');
