-- IF NOT EXISTS: on a large audit log, build both first with CREATE INDEX CONCURRENTLY (docs/operations.md,
-- "Migrations"); a plain CREATE INDEX holds back every audit insert, and so every sign-in, while it runs.
-- The audit views' filter "by or about this user" (organisation and support audit logs, ?userId=)
-- reads the actor's rows by index too, instead of the whole table.
CREATE INDEX IF NOT EXISTS "audit_events_actor_user_id_created_at_idx" ON "audit_events"("actor_user_id", "created_at");

-- GET /v1/me/security-events: the newest of a user's security events without reading the other
-- rows about them (however many preference saves or renames there are), in the view's order. The
-- types are those of src/modules/me/security-events.ts SECURITY_EVENT_TYPES (a test compares them).
CREATE INDEX IF NOT EXISTS "audit_events_security" ON "audit_events" ("subject_user_id", "created_at" DESC, "id" DESC)
WHERE "type" IN ('user.activated', 'login.mfa_succeeded', 'login.password_failed', 'login.mfa_failed', 'login.locked', 'mfa.locked',
  'login.lock_lifted', 'login.blocked_attempt', 'user.unlocked', 'password.reset_requested', 'password.reset_completed', 'password.changed',
  'mfa.enrolled', 'mfa.removed', 'mfa.reset_by_admin', 'mfa.reset_requested', 'mfa.reset_confirmed', 'mfa.recovery_code_used',
  'mfa.recovery_codes_regenerated', 'user.email_change_requested', 'user.email_changed', 'user.roles_changed', 'user.blocked', 'user.unblocked',
  'user.signed_out', 'session.family_revoked');
