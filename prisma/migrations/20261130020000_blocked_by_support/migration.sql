-- A block by support (fraud, a compromised account) is lifted by support only, not by the
-- organisation's administrators.
ALTER TABLE "users" ADD COLUMN     "blocked_by_support" BOOLEAN NOT NULL DEFAULT false;
