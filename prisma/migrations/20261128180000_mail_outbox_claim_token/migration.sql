-- Each claim of an outbox row writes a new token; the worker that claimed the row updates it only
-- while the token is still its own (src/modules/mail/mail.worker.ts).
ALTER TABLE "mail_outbox" ADD COLUMN     "claim_token" UUID;
