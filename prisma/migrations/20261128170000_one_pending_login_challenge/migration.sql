-- At most one live login challenge per user: a newer login replaces the older challenge. Every
-- issuer voids the user's pending challenges before inserting; the index makes that hold even where
-- a statement could not see a challenge committed while it waited for the user row (the password
-- step's single statement, src/modules/login/login-success.ts), which then fails and is retried on
-- the general path. Older duplicates are voided first, keeping each user's newest.
UPDATE "flow_tokens" AS f SET "state" = 'VOIDED'
WHERE f."purpose" = 'LOGIN_CHALLENGE' AND f."state" = 'PENDING'
  AND EXISTS (
    SELECT 1 FROM "flow_tokens" AS n
    WHERE n."user_id" = f."user_id" AND n."purpose" = 'LOGIN_CHALLENGE' AND n."state" = 'PENDING'
      AND (n."created_at", n."id") > (f."created_at", f."id"));

CREATE UNIQUE INDEX "flow_tokens_one_pending_login_challenge" ON "flow_tokens" ("user_id")
WHERE "purpose" = 'LOGIN_CHALLENGE' AND "state" = 'PENDING';
