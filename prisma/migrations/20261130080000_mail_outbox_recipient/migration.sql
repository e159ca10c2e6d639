-- The mail budget per address (src/modules/mail/mail-budget.ts): an invitation, "resend activation"
-- or "send a password reset" looks up the mails of the last hour to the address, whatever its
-- letter case, without reading the whole outbox.
CREATE INDEX "mail_outbox_recipient" ON "mail_outbox" (lower("to_address"), "created_at");
