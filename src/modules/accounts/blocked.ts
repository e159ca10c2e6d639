import type { AppContext } from '../../context.js';
import type { Tx } from '../../db/client.js';
import type { FlowState } from '../../generated/prisma/enums.js';
import type { AppError } from '../../errors.js';
import { accountErrors } from './accounts.errors.js';

export type BlockedContact = { support: string; administrators: { name: string; email: string }[] };

/**
 * Whom a blocked user should contact: the shop support and the active customer administrators of
 * the user's organisation (the user excepted).
 */
export async function blockedContact(
  db: Tx,
  config: Pick<AppContext['config'], 'supportContact'>,
  user: { id: string; organizationId: string | null },
): Promise<BlockedContact> {
  const administrators = user.organizationId
    ? await db.user.findMany({
        where: { organizationId: user.organizationId, status: 'ACTIVE', roles: { has: 'CUSTOMER_ADMIN' }, id: { not: user.id } },
        select: { name: true, email: true },
        orderBy: { name: 'asc' },
        take: 20,
      })
    : [];
  return { support: config.supportContact, administrators };
}

/**
 * Whom a blocked user should contact: support alone for a block support imposed (only support lifts
 * it: policy `blocked_by_support`), else as blockedContact. An organisation's suspension blocks its
 * administrators too, so none is named then either.
 */
export async function blockContact(
  db: Tx,
  config: Pick<AppContext['config'], 'supportContact'>,
  user: { id: string; organizationId: string | null },
  blockedBySupport: boolean,
): Promise<BlockedContact> {
  return blockedBySupport ? { support: config.supportContact, administrators: [] } : blockedContact(db, config, user);
}

export function contactText(contact: BlockedContact): string {
  const admins = contact.administrators.map((a) => `${a.name} <${a.email}>`);
  return admins.length
    ? `your organisation's administrator (${admins.join(', ')}) or ${contact.support}`
    : contact.support;
}

/**
 * The account_blocked problem with whom to contact. Only ever answered after a correct password or
 * a genuine, unexpired link of the account (also one that blocking voided: blockedLinkHolder).
 */
export async function accountBlockedError(
  db: Tx,
  config: Pick<AppContext['config'], 'supportContact'>,
  user: { id: string; organizationId: string | null },
): Promise<AppError> {
  const bySupport = (await db.user.findUnique({ where: { id: user.id }, select: { blockedBySupport: true } }))?.blockedBySupport ?? false;
  const contact = await blockContact(db, config, user, bySupport);
  return accountErrors.account_blocked(`This account is blocked. Contact ${contactText(contact)}.`, { contact });
}

/**
 * For findUsableFlow on the links a user gets by e-mail (activation, password reset): blocking a
 * user voids their pending links, and the holder of such a link, still unexpired, learns that the
 * account is blocked and whom to contact (product rule 13) instead of link_used. Only a link that
 * was voided (as the block does): one already used keeps answering link_used, so a mailbox reader
 * with an old, used link cannot check later whether the account got blocked. Any other user state
 * keeps the answer it had.
 */
export function blockedLinkHolder(
  db: Tx,
  config: Pick<AppContext['config'], 'supportContact'>,
): (flow: { userId: string; state: FlowState }) => Promise<AppError | null> {
  return async (flow) => {
    if (flow.state !== 'VOIDED') return null;
    const user = await db.user.findUnique({ where: { id: flow.userId }, select: { id: true, status: true, organizationId: true } });
    return user?.status === 'BLOCKED' ? accountBlockedError(db, config, user) : null;
  };
}
