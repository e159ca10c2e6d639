-- The notice to the address an account left carries a link that undoes the move
-- (src/modules/email-change/email-change.service.ts). A release before this one cannot read such a
-- link's row (Prisma refuses an enum value it does not know): while it still serves, an undo token
-- posted to one of its link endpoints (password reset, activation, ...) answers 500 there instead
-- of link_invalid. Nothing else of it reads these rows.
ALTER TYPE "FlowPurpose" ADD VALUE 'EMAIL_UNDO';
