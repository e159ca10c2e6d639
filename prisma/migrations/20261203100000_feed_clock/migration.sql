-- The event feed's clock (src/modules/events/feed-clock.ts). The feed orders events by the id of the
-- transaction that wrote them. A logical backup (pg_dump) restored into another cluster keeps the
-- rows' transaction ids, and every reader keeps its cursor, but the new cluster counts transactions
-- on from wherever its own counter stands: events written there could sort before what readers had
-- read, and no reader got them. The feed's clock is the transaction id plus `shift`, which the
-- service raises when it starts on a database that moved to another cluster (`cluster_id`, the
-- cluster's system identifier as last seen) or whose newest event is not older than the next
-- transaction; zero until then.
-- CreateTable
CREATE TABLE "feed_clock" (
    "id" BOOLEAN NOT NULL DEFAULT true,
    "shift" BIGINT NOT NULL DEFAULT 0,
    "cluster_id" TEXT,

    CONSTRAINT "feed_clock_pkey" PRIMARY KEY ("id")
);

-- One row, the one with id true (the functions below read that one).
INSERT INTO "feed_clock" DEFAULT VALUES;

-- Every role may read the clock (the shift is no secret): a service role without a grant on the new
-- table yet (MIGRATE_ON_START=false, docs/operations.md "Migrations") still writes audit rows, so
-- instances of the previous release go on signing people in after this migration.
GRANT SELECT ON "feed_clock" TO PUBLIC;

-- The current transaction's id on the feed's clock: what a new audit row records. Run as its
-- caller, with nothing but pg_catalog on its search path and the table named with its schema: an
-- operator or table someone creates in a schema on the caller's path cannot stand in for the
-- built-in ones (with `numeric + bigint` written as is, a `public.+(numeric, bigint)` would have
-- been chosen over pg_catalog's). The feed's reads compute their horizon the same way, in
-- src/modules/events/event-feed.ts.
DO $migration$
BEGIN
  EXECUTE format($f$
    CREATE FUNCTION %1$I.feed_txid() RETURNS xid8 LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
      AS 'SELECT (pg_catalog.pg_current_xact_id()::text::numeric OPERATOR(pg_catalog.+) c.shift::numeric)::text::xid8 FROM %1$I.feed_clock c WHERE c.id'
  $f$, current_schema());
END
$migration$;

ALTER TABLE "audit_events" ALTER COLUMN "txid" SET DEFAULT feed_txid();
