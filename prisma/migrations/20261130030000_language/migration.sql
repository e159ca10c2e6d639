-- Mails in the user's language: each user may have one (null: the deployment's DEFAULT_LANGUAGE),
-- and an organisation one for the users invited into it.
CREATE TYPE "Language" AS ENUM ('en', 'de');

ALTER TABLE "organizations" ADD COLUMN     "language" "Language";

ALTER TABLE "users" ADD COLUMN     "language" "Language";
