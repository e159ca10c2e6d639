-- Support suspends a whole organisation (contract ended, fraud): its users are blocked, and
-- unblocked again when it is reinstated (only those the suspension blocked).
ALTER TABLE "organizations" ADD COLUMN     "suspended_at" TIMESTAMPTZ(3),
ADD COLUMN     "suspension_reason" TEXT;

ALTER TABLE "users" ADD COLUMN     "blocked_by_suspension" BOOLEAN NOT NULL DEFAULT false;
