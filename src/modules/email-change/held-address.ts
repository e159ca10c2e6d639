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
  const held = await tx.$queryRaw<unknown[]>`
    SELECT 1 FROM flow_tokens
     WHERE purpose = 'EMAIL_UNDO' AND state = 'PENDING' AND lower(data->>'from') = lower(${user.email})
       AND expires_at > ${clock.now()} AND user_id <> ${user.id}::uuid
     LIMIT 1`;
  if (held.length > 0) throw new AddressHeldError('the address is held for the account that left it');
}
