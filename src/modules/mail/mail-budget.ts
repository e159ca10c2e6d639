import type { Tx } from '../../db/client.js';
import { newId } from '../../db/sql.js';
import { rateLimitedFor } from '../../errors.js';
import { addSeconds, type Clock } from '../../lib/clock.js';
import { sha256Hex } from '../../lib/tokens.js';
import type { MailTemplateName } from './mail.templates.js';

/** Mails of one template that others may have an address sent within an hour. */
export const MAILS_PER_ADDRESS_PER_HOUR = 5;
export const MAIL_BUDGET_WINDOW_SECONDS = 3600;
const MAIL_BUDGET_LOCK_CLASS = 0x4d42_5547; // "MBUG"

/**
 * Spends one of the address's mails of `template`, or refuses (429 rate_limited with Retry-After,
 * nothing written) when MAILS_PER_ADDRESS_PER_HOUR were spent within the last hour. For what
 * administrators and support have sent to an address of their choosing — invitations, "resend
 * activation", the activation link of an invited user's unblock, "send a password reset": without
 * it, an administrator could mail any address without limit (resend after resend; invite, withdraw
 * or erase, invite again) and fill the outbox that every other mail waits behind. Counted in
 * `mail_budget` (the address only as the SHA-256 of its lower-case form), not in the outbox, whose
 * rows an erasure deletes. Serialised per address (an advisory lock until the transaction ends).
 */
export async function spendMailBudget(tx: Tx, clock: Clock, address: string, template: MailTemplateName): Promise<void> {
  const retryAfter = await trySpend(tx, clock, address, template);
  if (retryAfter !== null) throw rateLimitedFor(`This address was sent ${MAILS_PER_ADDRESS_PER_HOUR} such mails within the hour.`, retryAfter);
}

/**
 * For the notification of a change that is never refused (a block, an unblock): spends one of the
 * address's mails of `template` and answers when the mail may go. Now, while fewer than
 * MAILS_PER_ADDRESS_PER_HOUR were spent within the last hour; else the moment the oldest of them
 * leaves the hour, and the mail is counted then, so no hour ever holds more. Without it, blocking
 * and unblocking an active member in a loop mailed them without limit; dropping the mail instead
 * (as until session 25) could leave the last one a user got saying the opposite of what is true.
 */
export async function budgetedSendTime(tx: Tx, clock: Clock, address: string, template: MailTemplateName): Promise<Date> {
  const { addressHash, freeAt } = await budgetOf(tx, clock, address, template);
  const at = freeAt ?? clock.now();
  await spend(tx, addressHash, template, at);
  return at;
}

/**
 * Gives back what budgetedSendTime spent for a mail that waited and is no longer to be sent
 * (replaced by a newer one): the spending at exactly `at`, a moment still to come.
 */
export async function returnBudgetedSendTime(tx: Tx, address: string, template: string, at: Date): Promise<void> {
  await tx.$executeRaw`DELETE FROM mail_budget WHERE address_hash = ${sha256Hex(address.toLowerCase())} AND template = ${template} AND created_at = ${at}`;
}

/** Spends one mail of the budget and answers null, or answers the seconds until one is free again. */
async function trySpend(tx: Tx, clock: Clock, address: string, template: MailTemplateName): Promise<number | null> {
  const now = clock.now();
  const { addressHash, freeAt } = await budgetOf(tx, clock, address, template);
  if (freeAt) return Math.max(1, Math.ceil((freeAt.getTime() - now.getTime()) / 1000));
  await spend(tx, addressHash, template, now);
  return null;
}

/**
 * Locks the address's budget until the transaction ends (one advisory lock per address) and answers
 * when a mail of `template` is free: null when one is now, else the moment the oldest of the last
 * MAILS_PER_ADDRESS_PER_HOUR leaves the hour.
 */
async function budgetOf(tx: Tx, clock: Clock, address: string, template: MailTemplateName): Promise<{ addressHash: string; freeAt: Date | null }> {
  const now = clock.now();
  const addressHash = sha256Hex(address.toLowerCase());
  await tx.$queryRaw`SELECT 1 AS locked FROM pg_advisory_xact_lock(${MAIL_BUDGET_LOCK_CLASS}::int, hashtext(${addressHash}))`;
  const recent = await tx.$queryRaw<{ created_at: Date }[]>`
    SELECT created_at FROM mail_budget
     WHERE address_hash = ${addressHash} AND template = ${template} AND created_at > ${addSeconds(now, -MAIL_BUDGET_WINDOW_SECONDS)}
     ORDER BY created_at DESC
     LIMIT ${MAILS_PER_ADDRESS_PER_HOUR}`;
  if (recent.length < MAILS_PER_ADDRESS_PER_HOUR) return { addressHash, freeAt: null };
  return { addressHash, freeAt: addSeconds(recent.at(-1)!.created_at, MAIL_BUDGET_WINDOW_SECONDS) };
}

async function spend(tx: Tx, addressHash: string, template: MailTemplateName, at: Date): Promise<void> {
  await tx.$executeRaw`INSERT INTO mail_budget (id, address_hash, template, created_at) VALUES (${newId()}::uuid, ${addressHash}, ${template}, ${at})`;
}
