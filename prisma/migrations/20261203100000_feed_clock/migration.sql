-- The event feed's clock (src/modules/events/feed-clock.ts). The feed orders events by the id of the
-- transaction that wrote them. A logical backup (pg_dump) restored into another cluster keeps the
-- rows' transaction ids, and every reader keeps its cursor, but the new cluster counts transactions
-- from the start again: events written there sorted before everything restored, and no reader got
-- them. The feed's clock is the transaction id plus `shift`, which the service raises once after
-- such a restore (when it starts); zero until then.
-- CreateTable
CREATE TABLE "feed_clock" (
    "id" BOOLEAN NOT NULL DEFAULT true,
    "shift" BIGINT NOT NULL DEFAULT 0,

    CONSTRAINT "feed_clock_pkey" PRIMARY KEY ("id")
);

-- One row, the one with id true (the functions below read that one).
INSERT INTO "feed_clock" DEFAULT VALUES;

-- Both functions run as their owner (SECURITY DEFINER, with the search path fixed): a service role
-- without a grant on feed_clock yet (MIGRATE_ON_START=false, docs/operations.md "Migrations") still
-- writes audit rows, so instances of the previous release go on signing people in after this migration.

-- The current transaction's id on the feed's clock: what a new audit row records.
CREATE FUNCTION feed_txid() RETURNS xid8 LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT
  AS $$ SELECT (pg_current_xact_id()::text::numeric + shift)::text::xid8 FROM feed_clock WHERE id $$;

-- Where a read of the feed stops: before the oldest transaction still running, on the feed's clock.
CREATE FUNCTION feed_horizon() RETURNS xid8 LANGUAGE sql STABLE SECURITY DEFINER SET search_path FROM CURRENT
  AS $$ SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::numeric + shift)::text::xid8 FROM feed_clock WHERE id $$;

ALTER TABLE "audit_events" ALTER COLUMN "txid" SET DEFAULT feed_txid();
