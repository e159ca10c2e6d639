-- Names are stored in Unicode's composed form (NFC) from this version on (src/lib/display-text.ts),
-- so the search box finds "Mü" + "ller" whichever way it was typed or pasted. Names stored before
-- in another form are composed once here, each change audited like a correction (`by`:
-- "migration"), so the event feed tells the copies kept by it (user.renamed,
-- organization.updated). Data only: a release before this one reads them as well.
INSERT INTO "audit_events" ("id", "type", "subject_user_id", "organization_id", "details")
SELECT gen_random_uuid(), 'user.renamed', "id", "organization_id",
       jsonb_build_object('by', 'migration', 'name', jsonb_build_object('from', "name", 'to', normalize("name", NFC)))
  FROM "users" WHERE "name" IS NOT NFC NORMALIZED;
UPDATE "users" SET "name" = normalize("name", NFC) WHERE "name" IS NOT NFC NORMALIZED;

INSERT INTO "audit_events" ("id", "type", "organization_id", "details")
SELECT gen_random_uuid(), 'organization.updated', "id",
       jsonb_build_object('by', 'migration', 'name', jsonb_build_object('from', "name", 'to', normalize("name", NFC)))
  FROM "organizations" WHERE "name" IS NOT NFC NORMALIZED;
UPDATE "organizations" SET "name" = normalize("name", NFC) WHERE "name" IS NOT NFC NORMALIZED;
