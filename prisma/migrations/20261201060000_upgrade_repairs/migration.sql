-- Repairs of what a rolling upgrade across 20261201030000 and 20261201040000 could leave behind
-- (session 27's upgrade review). Cheap where there is nothing to repair.

-- 1. The indexes docs/operations.md tells large installations to prebuild with CREATE INDEX
--    CONCURRENTLY: an interrupted build leaves its index marked invalid, which the migration then
--    found (IF NOT EXISTS) and kept — 20261201030000 even put it in the event feed's place, dropping
--    the valid one. An invalid one is built again here, as its migration defines it (blocking
--    inserts while it builds; docs/operations.md tells how to check a prebuild first).
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass('"audit_events_feed"') AND NOT indisvalid) THEN
    DROP INDEX "audit_events_feed";
    CREATE INDEX "audit_events_feed" ON "audit_events" ("txid", "id")
    WHERE "type" IN ('user.invited', 'user.activated', 'user.invitation_withdrawn', 'user.erased', 'user.blocked', 'user.unblocked',
      'user.roles_changed', 'user.renamed', 'user.email_changed', 'user.preferences_changed', 'user.signed_out', 'password.reset_completed',
      'password.changed', 'mfa.enrolled', 'mfa.removed', 'mfa.reset_by_admin', 'mfa.reset_confirmed', 'session.family_revoked',
      'organization.created', 'organization.updated', 'organization.suspended', 'organization.reinstated');
  END IF;
  IF EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass('"audit_events_security"') AND NOT indisvalid) THEN
    DROP INDEX "audit_events_security";
    CREATE INDEX "audit_events_security" ON "audit_events" ("subject_user_id", "created_at" DESC, "id" DESC)
    WHERE "type" IN ('user.activated', 'login.mfa_succeeded', 'login.password_failed', 'login.mfa_failed', 'login.locked', 'mfa.locked',
      'login.lock_lifted', 'login.blocked_attempt', 'user.unlocked', 'password.reset_requested', 'password.reset_completed', 'password.changed',
      'mfa.enrolled', 'mfa.removed', 'mfa.reset_by_admin', 'mfa.reset_requested', 'mfa.reset_confirmed', 'mfa.recovery_code_used',
      'mfa.recovery_codes_regenerated', 'user.email_change_requested', 'user.email_changed', 'user.roles_changed', 'user.blocked', 'user.unblocked',
      'user.signed_out', 'session.family_revoked');
  END IF;
  IF EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass('"audit_events_actor_user_id_created_at_idx"') AND NOT indisvalid) THEN
    DROP INDEX "audit_events_actor_user_id_created_at_idx";
    CREATE INDEX "audit_events_actor_user_id_created_at_idx" ON "audit_events"("actor_user_id", "created_at");
  END IF;
END $$;

-- 2. The audit rows 20261201040000 wrote got random ids, which the sweep, walking ids up to its
--    cutoff, never reaches. New ids would move events the event feed may have handed out already
--    (it orders by transaction and id): they are listed here instead, and the sweep deletes them by
--    this list (a read of audit_events: inserts go on meanwhile).
CREATE TABLE "audit_events_unordered_ids" (
    "id" UUID NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "audit_events_unordered_ids_pkey" PRIMARY KEY ("id")
);
INSERT INTO "audit_events_unordered_ids" ("id", "created_at")
SELECT "id", "created_at" FROM "audit_events"
 WHERE "details"->>'by' = 'migration' AND "type" IN ('user.renamed', 'organization.updated') AND substr("id"::text, 15, 1) <> '7';

-- 3. Names in NFC whoever writes them: an instance of a release before 20261201040000, still serving
--    during the upgrade, stored names as typed, which the search (composing what is typed) then
--    missed. The database composes every name written from now on, and those written since are
--    composed and audited as 20261201040000 did.
--    The triggers name no column (no `UPDATE OF "name"`, no WHEN): a column a trigger names cannot
--    change its type, and a later migration may need to (test/fault/prepared-statements-after-migration.test.ts).
CREATE FUNCTION "names_nfc"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW."name" IS NOT NFC NORMALIZED THEN
    NEW."name" := normalize(NEW."name", NFC);
  END IF;
  RETURN NEW;
END;
$$;
CREATE TRIGGER "users_name_nfc" BEFORE INSERT OR UPDATE ON "users" FOR EACH ROW EXECUTE FUNCTION "names_nfc"();
CREATE TRIGGER "organizations_name_nfc" BEFORE INSERT OR UPDATE ON "organizations" FOR EACH ROW EXECUTE FUNCTION "names_nfc"();

-- Their audit rows get time-ordered ids (UUIDv7) of the moment, as the service makes them (the
-- retention sweep walks ids: src/modules/retention/retention.ts firstIdAt).
CREATE FUNCTION pg_temp.uuid_v7_at(at timestamptz) RETURNS uuid LANGUAGE sql VOLATILE AS $$
  SELECT (substr(t, 1, 8) || '-' || substr(t, 9, 4) || '-7' || substr(r, 14, 3) || '-' || substr(r, 17, 4) || '-' || substr(r, 21, 12))::uuid
    FROM (SELECT lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0') AS t,
                 replace(gen_random_uuid()::text, '-', '') AS r) AS parts
$$;

INSERT INTO "audit_events" ("id", "type", "subject_user_id", "organization_id", "details")
SELECT pg_temp.uuid_v7_at(clock_timestamp()), 'user.renamed', "id", "organization_id",
       jsonb_build_object('by', 'migration', 'name', jsonb_build_object('from', "name", 'to', normalize("name", NFC)))
  FROM "users" WHERE "name" IS NOT NFC NORMALIZED;
UPDATE "users" SET "name" = "name" WHERE "name" IS NOT NFC NORMALIZED;

INSERT INTO "audit_events" ("id", "type", "organization_id", "details")
SELECT pg_temp.uuid_v7_at(clock_timestamp()), 'organization.updated', "id",
       jsonb_build_object('by', 'migration', 'name', jsonb_build_object('from', "name", 'to', normalize("name", NFC)))
  FROM "organizations" WHERE "name" IS NOT NFC NORMALIZED;
UPDATE "organizations" SET "name" = "name" WHERE "name" IS NOT NFC NORMALIZED;
