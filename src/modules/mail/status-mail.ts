import type { AppContext } from '../../context.js';
import type { Tx } from '../../db/client.js';
import type { Clock } from '../../lib/clock.js';
import { budgetedSendTime, returnBudgetedSendTime } from './mail-budget.js';
import { enqueueMail, type EnqueueMailInput, type MailRecipient } from './mail.service.js';

type StatusTemplate = 'account_blocked' | 'account_unblocked';

/**
 * Withdraws the block or unblock mail of each of `userIds` that still waits for its address's budget
 * (budgetedSendTime: never tried, held by no worker), giving its place in the budget back: a newer
 * change is to be told instead. A mail already due goes out as it is, before the newer one.
 * Answers how many were withdrawn.
 */
export async function withdrawWaitingStatusMail(tx: Tx, clock: Clock, userIds: string[]): Promise<number> {
  const waiting = await tx.$queryRaw<{ to_address: string; template: string; next_attempt_at: Date }[]>`
    DELETE FROM mail_outbox
     WHERE user_id = ANY(${userIds}::uuid[]) AND template IN ('account_blocked', 'account_unblocked')
       AND sent_at IS NULL AND failed_at IS NULL AND attempts = 0 AND locked_until IS NULL AND next_attempt_at > ${clock.now()}
     RETURNING to_address, template, next_attempt_at`;
  for (const mail of waiting) await returnBudgetedSendTime(tx, mail.to_address, mail.template, mail.next_attempt_at);
  return waiting.length;
}

/**
 * Tells a user that their account was blocked or unblocked: at once while the address's budget has
 * room, else as soon as it has (budgetedSendTime), in place of any such mail still waiting, so the
 * last one the user gets states what is true.
 */
export async function enqueueStatusMail<K extends StatusTemplate>(
  tx: Tx,
  ctx: Pick<AppContext, 'config' | 'clock' | 'keyring'>,
  input: EnqueueMailInput<K> & { to: MailRecipient & { id: string } },
): Promise<void> {
  await withdrawWaitingStatusMail(tx, ctx.clock, [input.to.id]);
  const notBefore = await budgetedSendTime(tx, ctx.clock, input.to.email, input.template);
  await enqueueMail(tx, ctx, { ...input, notBefore });
}
