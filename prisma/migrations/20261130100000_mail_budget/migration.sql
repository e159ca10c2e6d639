-- The mail budget per address (src/modules/mail/mail-budget.ts) counts its own rows, not the outbox's:
-- erasing a user deletes their outbox rows, and with them the count (invite, block, erase, invite
-- again mailed an address without limit). One row per mail others sent an address, naming it only by
-- the SHA-256 of its lower-case form; the retention sweep deletes rows an hour old.
CREATE TABLE "mail_budget" (
    "id" UUID NOT NULL,
    "address_hash" TEXT NOT NULL,
    "template" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "mail_budget_pkey" PRIMARY KEY ("id")
);

CREATE INDEX "mail_budget_address_hash_template_created_at_idx" ON "mail_budget"("address_hash", "template", "created_at");

DROP INDEX "mail_outbox_recipient";
