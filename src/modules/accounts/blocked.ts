import type { AppContext } from '../../context.js';
import type { Tx } from '../../db/client.js';
import type { FlowState } from '../../generated/prisma/enums.js';
import type { AppError } from '../../errors.js';
import type { Language } from '../../lib/languages.js';
import { namedAddress } from '../../lib/email-address.js';
import { accountErrors } from './accounts.errors.js';

export type BlockedContact = { support: string; language: Language; administrators: { name: string; email: string }[] };

type ContactConfig = Pick<AppContext['config'], 'supportContact' | 'supportContactIn' | 'defaultLanguage'>;

/**
 * Whom a user who cannot go on (blocked, code entry locked, invitation dead) should contact: the
 * shop support and the active customer administrators of the user's organisation (the user
 * excepted), or support alone when only support can help (a block support imposed, policy
 * `blocked_by_support`; an organisation's suspension blocks its administrators too, so none is
 * named then either). `support` is written as the user's language names support
 * (SUPPORT_CONTACT / SUPPORT_CONTACT_DE, as their mails do): the frontend translates by `code` and
 * puts the contact into its own sentence, so it has to be in the language of that sentence.
 */
export async function blockedContact(
  db: Tx,
  config: ContactConfig,
  /** `language` as the caller read it with the user; read here when the caller did not. */
  user: { id: string; organizationId: string | null; language?: Language | null },
  onlySupport = false,
): Promise<BlockedContact> {
  const own =
    user.language !== undefined ? user.language : (await db.user.findUnique({ where: { id: user.id }, select: { language: true } }))?.language;
  // Said with it: the page asking may be in another language (German frontend review, session 30).
  const language = own ?? config.defaultLanguage;
  const administrators = (await administratorsToAsk(db, user, onlySupport)).map(({ name, email }) => ({ name, email }));
  return { support: config.supportContactIn[language], language, administrators };
}

/** BlockedContact's administrators, with their ids (a block notice records whom it names: mail/mentions.ts). */
export async function administratorsToAsk(
  db: Tx,
  user: { id: string; organizationId: string | null },
  onlySupport = false,
): Promise<{ id: string; name: string; email: string }[]> {
  if (!user.organizationId || onlySupport) return [];
  return db.user.findMany({
    where: { organizationId: user.organizationId, status: 'ACTIVE', roles: { has: 'CUSTOMER_ADMIN' }, id: { not: user.id } },
    select: { id: true, name: true, email: true },
    orderBy: { name: 'asc' },
    take: 20,
  });
}

/** The contact for a problem's English `detail`: support as SUPPORT_CONTACT names it. */
export function contactText(config: Pick<ContactConfig, 'supportContact'>, contact: BlockedContact): string {
  const admins = contact.administrators.map((a) => namedAddress(a.name, a.email));
  return admins.length
    ? `your organisation's administrator (${admins.join(', ')}) or ${config.supportContact}`
    : config.supportContact;
}

/** Whom the holder of this blocked account asks: support alone when support blocked it. */
export async function blockedAccountContact(db: Tx, config: ContactConfig, user: { id: string; organizationId: string | null }): Promise<BlockedContact> {
  const own = await db.user.findUnique({ where: { id: user.id }, select: { blockedBySupport: true, language: true } });
  return blockedContact(db, config, { ...user, language: own?.language ?? null }, own?.blockedBySupport ?? false);
}

/**
 * The account_blocked problem with whom to contact. Only ever answered after a correct password or
 * a genuine, unexpired link of the account (also one that blocking voided: blockedLinkHolder).
 */
export async function accountBlockedError(
  db: Tx,
  config: ContactConfig,
  user: { id: string; organizationId: string | null },
): Promise<AppError> {
  const contact = await blockedAccountContact(db, config, user);
  return accountErrors.account_blocked(`This account is blocked. Contact ${contactText(config, contact)}.`, { contact });
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
  config: ContactConfig,
): (flow: { userId: string; state: FlowState }) => Promise<AppError | null> {
  return async (flow) => {
    if (flow.state !== 'VOIDED') return null;
    const user = await db.user.findUnique({ where: { id: flow.userId }, select: { id: true, status: true, organizationId: true } });
    return user?.status === 'BLOCKED' ? accountBlockedError(db, config, user) : null;
  };
}
