-- AlterTable
ALTER TABLE "mail_outbox" ADD COLUMN     "failed_at" TIMESTAMPTZ(3);
