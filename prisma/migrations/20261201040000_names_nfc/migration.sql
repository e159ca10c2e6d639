-- Names are stored in Unicode's composed form (NFC) from this version on (src/lib/display-text.ts),
-- so the search box finds "Mü" + "ller" whichever way it was typed or pasted. Names stored before
-- in another form are composed once here. Data only: a release before this one reads them as well.
UPDATE "users" SET "name" = normalize("name", NFC) WHERE "name" IS NOT NFC NORMALIZED;
UPDATE "organizations" SET "name" = normalize("name", NFC) WHERE "name" IS NOT NFC NORMALIZED;
