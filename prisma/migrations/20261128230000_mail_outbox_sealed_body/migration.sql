-- Mail bodies carry e-mail link tokens: from now on they are stored sealed (AES-256-GCM under the
-- keyring, src/modules/mail/mail.service.ts) and removed once the mail is sent or given up.
ALTER TABLE "mail_outbox" ADD COLUMN     "body_ciphertext" TEXT,
ADD COLUMN     "encryption_key_id" TEXT,
ALTER COLUMN "text_body" DROP NOT NULL,
ALTER COLUMN "html_body" DROP NOT NULL;

-- Rows written before this change hold their bodies in plain text. Those already sent or given up
-- need them no more; the ones still queued are delivered from them and scrubbed by the worker.
UPDATE "mail_outbox" SET "text_body" = NULL, "html_body" = NULL
WHERE ("sent_at" IS NOT NULL OR "failed_at" IS NOT NULL) AND ("text_body" IS NOT NULL OR "html_body" IS NOT NULL);
