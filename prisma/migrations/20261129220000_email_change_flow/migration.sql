-- A user's own change of e-mail address, confirmed from a link sent to the new address.
ALTER TYPE "FlowPurpose" ADD VALUE 'EMAIL_CHANGE';
