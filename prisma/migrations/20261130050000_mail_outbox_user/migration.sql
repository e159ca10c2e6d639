-- Each mail names the account it is about, so erasing the account deletes its mails whatever
-- address they went to (an address it had before, one it asked to move to). Rows written before
-- have none; erasure matches them by the account's address.
ALTER TABLE "mail_outbox" ADD COLUMN     "user_id" UUID;

CREATE INDEX "mail_outbox_user_id_idx" ON "mail_outbox"("user_id");

ALTER TABLE "mail_outbox" ADD CONSTRAINT "mail_outbox_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- The retention sweep's cutoff is at least a day old (AUDIT_RETENTION_DAYS >= 1): a cutoff any
-- later (a session-level setting naming 'infinity', say) lets nothing through.
CREATE OR REPLACE FUNCTION "audit_events_append_only"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  cutoff text := current_setting('webshop_auth.audit_cutoff', true);
BEGIN
  IF TG_OP = 'DELETE' AND cutoff IS NOT NULL AND cutoff <> '' AND cutoff::timestamptz <= now() - interval '1 day'
     AND OLD.created_at < cutoff::timestamptz THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'audit_events is append-only';
END;
$$;
