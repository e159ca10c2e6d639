import type { Tx } from '../../db/client.js';
import { commonErrors } from '../../errors.js';
import { addSeconds, type Clock } from '../../lib/clock.js';
import type { MailTemplateName } from './mail.templates.js';

/** Mails of one template that others may have an address sent within an hour. */
export const MAILS_PER_ADDRESS_PER_HOUR = 5;

/**
 * Refuses (429 rate_limited with Retry-After) another mail of `template` to `address` when the
 * outbox holds MAILS_PER_ADDRESS_PER_HOUR written to it within the last hour (whoever caused them: the user's own "forgot password" counts too; letter case aside).
 * For what administrators and support send to an address of their choosing — invitations,
 * "resend activation", "send a password reset": without it, an administrator could mail any
 * address without limit (invite, withdraw, invite again; resend after resend) and fill the outbox
 * that every other mail waits behind. Call under the user-row lock (or before the insert that
 * claims the address), so concurrent requests count each other.
 */
export async function assertMailBudget(tx: Tx, clock: Clock, address: string, template: MailTemplateName): Promise<void> {
  const now = clock.now();
  const recent = await tx.$queryRaw<{ created_at: Date }[]>`
    SELECT created_at FROM mail_outbox
     WHERE lower(to_address) = lower(${address}) AND template = ${template} AND created_at > ${addSeconds(now, -3600)}
     ORDER BY created_at DESC
     LIMIT ${MAILS_PER_ADDRESS_PER_HOUR}`;
  if (recent.length < MAILS_PER_ADDRESS_PER_HOUR) return;
  const retryAfter = Math.max(1, Math.ceil((recent.at(-1)!.created_at.getTime() + 3600_000 - now.getTime()) / 1000));
  throw commonErrors.rate_limited(`This address was sent ${MAILS_PER_ADDRESS_PER_HOUR} such mails within the hour. Try again in ${retryAfter} s.`, { retryAfter }, {
    'retry-after': String(retryAfter),
  });
}
