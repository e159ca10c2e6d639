-- A block by support (fraud, a compromised account) is lifted by support only, not by the
-- organisation's administrators.
ALTER TABLE "users" ADD COLUMN     "blocked_by_support" BOOLEAN NOT NULL DEFAULT false;

-- Blocks support made before this column existed: the newest user.blocked audit row of a blocked
-- user says by whom.
UPDATE "users" u SET "blocked_by_support" = true
WHERE u."status" = 'BLOCKED' AND NOT u."blocked_by_suspension"
  AND (SELECT a."details"->>'by' FROM "audit_events" a
       WHERE a."type" = 'user.blocked' AND a."subject_user_id" = u."id"
       ORDER BY a."created_at" DESC, a."id" DESC LIMIT 1) = 'support';
