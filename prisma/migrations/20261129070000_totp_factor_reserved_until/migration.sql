-- A pending factor started by a signed-in session (self-service re-enrolment after removing MFA) is
-- reserved for that session for a while: a login with the password alone cannot replace it with
-- an authenticator of its own.
ALTER TABLE "totp_factors" ADD COLUMN     "reserved_until" TIMESTAMPTZ(3);
