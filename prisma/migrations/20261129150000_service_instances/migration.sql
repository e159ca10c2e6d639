-- The running server instances and the encryption key ids each holds, written by a heartbeat:
-- rotate-encryption-key refuses to re-seal under a key one of them lacks.
CREATE TABLE "service_instances" (
    "id" UUID NOT NULL,
    "hostname" TEXT NOT NULL,
    "pid" INTEGER NOT NULL,
    "started_at" TIMESTAMPTZ(3) NOT NULL,
    "seen_at" TIMESTAMPTZ(3) NOT NULL,
    "encryption_key_ids" TEXT[],
    "current_encryption_key_id" TEXT NOT NULL,

    CONSTRAINT "service_instances_pkey" PRIMARY KEY ("id")
);

CREATE INDEX "service_instances_seen_at_idx" ON "service_instances"("seen_at");
