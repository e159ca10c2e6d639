-- The other people a waiting mail names (who reset the authenticator or sent the reset link, the
-- administrators a block notice lists): erasing one of them renders the mail again without them
-- (src/modules/organization/erase-user.ts). Rows written before, and by a release before this one,
-- name nobody here.
ALTER TABLE "mail_outbox" ADD COLUMN     "mentions" UUID[] DEFAULT ARRAY[]::UUID[];
