import type { Tx } from '../../db/client.js';
import type { Clock } from '../../lib/clock.js';
import { AddressHeldError } from '../organization/organization.errors.js';

/**
 * The address an account left stays that account's while the undo link in the notice to it lasts
 * (email-change.service.ts, undoEmailChange): no other account is created with it or moves to it.
 * Otherwise whoever moved an account away (an intruder with its session and password, an
 * administrator's say) could have the address taken — by inviting it — so that the undo answers
 * email_taken. Its callers answer it as they answer an address another account uses (isEmailTaken).
 * Called after the write that gives `user` its address, in the same transaction: a move committing
 * meanwhile made the write wait for it (unique index), so its undo link is seen.
 */
export async function refuseHeldAddress(tx: Tx, clock: Clock, user: { id: string; email: string }): Promise<void> {
  const holders = await accountsHolding(tx, clock, user.email);
  if (holders.some((id) => id !== user.id)) throw new AddressHeldError('the address is held for the account that left it');
}

/**
 * The accounts `email` is held for (pending undo links from it; at most a few). Support finds an
 * account by them too: the owner calling in after a takeover knows only the address it left.
 */
export async function accountsHolding(tx: Tx, clock: Clock, email: string): Promise<string[]> {
  const rows = await tx.$queryRaw<{ user_id: string }[]>`
    SELECT DISTINCT user_id FROM flow_tokens
     WHERE purpose = 'EMAIL_UNDO' AND state = 'PENDING' AND lower(data->>'from') = lower(${email})
       AND expires_at > ${clock.now()}`;
  return rows.map((row) => row.user_id);
}
