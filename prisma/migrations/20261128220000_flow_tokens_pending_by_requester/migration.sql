-- Blocking a user withdraws the pending links that user sent to others (invitations, reset mails,
-- support's MFA-reset requests): src/modules/flows/flow-tokens.ts withdrawFlowsRequestedBy. Login
-- challenges have no requester, so the index holds only the few pending links someone sent.
CREATE INDEX "flow_tokens_pending_by_requester" ON "flow_tokens" ("requested_by_id")
WHERE "state" = 'PENDING' AND "requested_by_id" IS NOT NULL;
