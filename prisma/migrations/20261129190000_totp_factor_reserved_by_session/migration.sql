-- The session that reserved a pending factor (self-service re-enrolment): the reservation ends
-- with that session (logout, revocation, password reset, block, expiry), not only at
-- reserved_until, so a set-up abandoned by signing out no longer blocks the login's enrolment.
ALTER TABLE "totp_factors" ADD COLUMN     "reserved_by_session_id" UUID;

CREATE INDEX "totp_factors_reserved_by_session_id_idx" ON "totp_factors"("reserved_by_session_id");

ALTER TABLE "totp_factors" ADD CONSTRAINT "totp_factors_reserved_by_session_id_fkey" FOREIGN KEY ("reserved_by_session_id") REFERENCES "sessions"("id") ON DELETE SET NULL ON UPDATE CASCADE;
