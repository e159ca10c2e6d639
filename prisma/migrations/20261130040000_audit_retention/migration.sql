-- Audit rows stay append-only for the application, with one exception: the retention sweep deletes
-- rows older than AUDIT_RETENTION_DAYS. It names its cutoff in the transaction
-- (set_config('webshop_auth.audit_cutoff', <time>, true)), and only rows created before it go;
-- an UPDATE, or a DELETE without the setting or of a newer row, is refused as before.
CREATE OR REPLACE FUNCTION "audit_events_append_only"() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  cutoff text := current_setting('webshop_auth.audit_cutoff', true);
BEGIN
  IF TG_OP = 'DELETE' AND cutoff IS NOT NULL AND cutoff <> '' AND OLD.created_at < cutoff::timestamptz THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'audit_events is append-only';
END;
$$;
