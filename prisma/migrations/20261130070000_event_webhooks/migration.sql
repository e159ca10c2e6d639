-- Push delivery of the event feed (EVENT_WEBHOOKS; src/modules/events/webhook-delivery.ts): one row
-- per configured webhook, holding how far it got (the feed cursor of the last event it accepted),
-- its consecutive failures and when to try next, and the lease of the instance delivering to it.
CREATE TABLE "event_webhooks" (
    "name" TEXT NOT NULL,
    "cursor" TEXT NOT NULL,
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "next_attempt_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "locked_until" TIMESTAMPTZ(3),
    "claim_token" UUID,
    "last_error" TEXT,
    "last_delivered_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "event_webhooks_pkey" PRIMARY KEY ("name")
);
