-- While an undo link of an e-mail move lasts, the address the account left is held for it: inviting
-- it, or another account's move to it, looks for a pending undo link from it
-- (src/modules/email-change/held-address.ts). The index holds only those few links. On a large
-- installation build it beforehand with CONCURRENTLY (docs/operations.md, "Migrations").
CREATE INDEX IF NOT EXISTS "flow_tokens_email_undo_from" ON "flow_tokens" (lower("data"->>'from'))
WHERE "purpose" = 'EMAIL_UNDO' AND "state" = 'PENDING';
