import type { Actor } from '../../access/actor.js';
import type { AppContext } from '../../context.js';
import type { Tx } from '../../db/client.js';
import { defineErrors, rateLimitedFor } from '../../errors.js';
import { addSeconds, type Clock } from '../../lib/clock.js';
import { randomToken } from '../../lib/tokens.js';
import { blockedAccountContact, type BlockedContact } from '../accounts/blocked.js';
import { inReauthenticatedTransaction, reauthenticate } from '../accounts/reauthenticate.js';
import { lockUserRow } from '../accounts/user-lock.js';
import { recordAudit, type RequestMeta } from '../audit/audit.service.js';
import { consumeFlow, findUsableFlow, flowErrors, issueFlowToken, voidFlows } from '../flows/flow-tokens.js';
import { buildLink, enqueueMail, LINK_PATHS } from '../mail/mail.service.js';
import { isEmailTaken, organizationErrors } from '../organization/organization.errors.js';
import { refuseHeldAddress } from './held-address.js';
import { PASSWORD_RESET_TTL_SECONDS } from '../password/password.service.js';
import { revokeUserSessions } from '../sessions/revoke.js';

/**
 * A user moves their account to another e-mail address (one account per address, product rule 2).
 * With the current password (re-authentication), the user asks for the new address; a single-use
 * link (24 h) goes to that address, and only opening it changes the account's address, so nobody
 * moves an account to an address they cannot read. Until then the old address stays in force.
 *
 * The request answers the same whether or not another account holds the new address: a signed-in
 * user cannot probe addresses. The link's holder (who reads the new address) is told 409
 * email_taken at confirmation, and the link stays usable should the address become free.
 * Confirmed: the account's address and its verification time change, links mailed to the old
 * address (password reset, MFA reset) stop working, and the old address is told — with a link that
 * undoes the move (undoEmailChange), for the owner of an account someone else moved.
 * A password reset or change voids a pending change (whoever asked for it knew the old password);
 * so does a block. At most EMAIL_CHANGES_PER_HOUR requests per account (429 with Retry-After).
 */

export const EMAIL_CHANGE_TTL_SECONDS = 24 * 3600;

/** How long the address an account left can undo the move: a week, as long as an activation link. */
export const EMAIL_UNDO_TTL_SECONDS = 7 * 24 * 3600;

/**
 * Confirmation mails per account and hour: each goes to an address the user chose, so without a
 * budget one account could flood any mailbox from as many IP addresses as it has.
 */
export const EMAIL_CHANGES_PER_HOUR = 3;

/** 0 while the account may ask for another change; else the seconds until the oldest of the hour's requests ages out. */
async function secondsUntilBudget(tx: Tx, userId: string, now: Date): Promise<number> {
  const recent = await tx.flowToken.findMany({
    where: { userId, purpose: 'EMAIL_CHANGE', createdAt: { gt: addSeconds(now, -3600) } },
    select: { createdAt: true },
    orderBy: { createdAt: 'desc' },
    take: EMAIL_CHANGES_PER_HOUR,
  });
  if (recent.length < EMAIL_CHANGES_PER_HOUR) return 0;
  const oldest = recent[recent.length - 1]!.createdAt;
  return Math.max(1, Math.ceil((oldest.getTime() + 3600_000 - now.getTime()) / 1000));
}

export const emailChangeErrors = defineErrors({
  email_unchanged: { status: 409, title: 'This already is the account\'s e-mail address (letter case aside)' },
});

type Ctx = Pick<AppContext, 'db' | 'pool' | 'clock' | 'config' | 'hasher' | 'keyring'>;

type ChangeData = { from: string; to: string };

/**
 * An undo link's move: `move` numbers the account's moves in the order they were confirmed (under
 * the user-row lock), which instances' clocks, a few milliseconds apart, could not be trusted with.
 */
type UndoData = ChangeData & { move: number };

function undoData(data: unknown): UndoData | null {
  const change = changeData(data);
  const move = (data as Partial<UndoData> | null)?.move;
  return change && Number.isSafeInteger(move) ? { ...change, move: move! } : null;
}

/** The number of the account's last confirmed move (0 for none); call under the user-row lock. */
async function lastMove(tx: Tx, userId: string): Promise<number> {
  const [row] = await tx.$queryRaw<{ last: number | null }[]>`
    SELECT max((data->>'move')::int) AS last FROM flow_tokens WHERE user_id = ${userId}::uuid AND purpose = 'EMAIL_UNDO'`;
  return row?.last ?? 0;
}

function changeData(data: unknown): ChangeData | null {
  const d = data as Partial<ChangeData> | null;
  return d && typeof d.from === 'string' && typeof d.to === 'string' ? { from: d.from, to: d.to } : null;
}

/**
 * Consumes an e-mail-change or undo link under its user's row lock (lock order user → flows,
 * accounts/user-lock.ts, like a block or a password reset, which void such links): what it carries
 * and whose account it is, as they are now.
 */
async function consumeAccountLink<D>(tx: Tx, clock: Clock, token: string, purpose: 'EMAIL_CHANGE' | 'EMAIL_UNDO', parse: (data: unknown) => D | null) {
  const flow = await findUsableFlow(tx, clock, token, purpose);
  await lockUserRow(tx, flow.userId);
  await consumeFlow(tx, clock, flow);
  const data = parse(flow.data);
  const user = await tx.user.findUnique({ where: { id: flow.userId }, select: { id: true, email: true, name: true, language: true, status: true, organizationId: true } });
  if (!user || !data) throw flowErrors.link_invalid();
  return { data, user };
}

/** The change asked for and not confirmed yet (its link pending and unexpired), or null. */
export async function pendingEmailChange(ctx: Pick<AppContext, 'db' | 'clock'>, userId: string): Promise<{ email: string; expiresAt: Date } | null> {
  const flow = await ctx.db.flowToken.findFirst({
    where: { userId, purpose: 'EMAIL_CHANGE', state: 'PENDING', expiresAt: { gt: ctx.clock.now() } },
    orderBy: { createdAt: 'desc' },
    select: { data: true, expiresAt: true },
  });
  const change = flow && changeData(flow.data);
  return change ? { email: change.to, expiresAt: flow.expiresAt } : null;
}

export async function requestEmailChange(
  ctx: Ctx,
  actor: Pick<Actor, 'userId'>,
  input: { email: string; password: string },
  meta: RequestMeta,
): Promise<{ email: string; expiresAt: Date }> {
  const user = await reauthenticate(ctx, actor.userId, input.password, meta);
  // Addresses are one account's whatever their letter case (citext): a change of case alone is none.
  if (input.email.toLowerCase() === user.email.toLowerCase()) throw emailChangeErrors.email_unchanged();
  return inReauthenticatedTransaction(ctx, user, meta, async (tx) => {
    // Under the user-row lock: concurrent requests count each other.
    const retryAfter = await secondsUntilBudget(tx, user.id, ctx.clock.now());
    if (retryAfter > 0) {
      throw rateLimitedFor('Too many address changes asked for.', retryAfter);
    }
    // A newer request voids the older one's link (issueFlowToken): only the newest address can be confirmed.
    const { token, flow } = await issueFlowToken(tx, ctx.clock, {
      userId: user.id,
      purpose: 'EMAIL_CHANGE',
      ttlSeconds: EMAIL_CHANGE_TTL_SECONDS,
      data: { from: user.email, to: input.email } satisfies ChangeData,
    });
    await enqueueMail(tx, ctx, {
      to: { email: input.email, language: user.language, id: user.id },
      template: 'email_change_confirm',
      data: { name: user.name, link: buildLink(ctx.config, LINK_PATHS.emailChangeConfirm, token), expiresAt: flow.expiresAt, newEmail: input.email },
    });
    await recordAudit(tx, ctx.clock, {
      type: 'user.email_change_requested',
      actorUserId: user.id,
      subjectUserId: user.id,
      organizationId: user.organizationId,
      meta,
      details: { from: user.email, to: input.email, expiresAt: flow.expiresAt.toISOString() },
    });
    return { email: input.email, expiresAt: flow.expiresAt };
  });
}

/**
 * The new address's holder confirms (public: the token is the credential). The flow is consumed in
 * the transaction that changes the address: of two concurrent confirmations exactly one wins; an
 * address another account took meanwhile rolls everything back (409 email_taken, link still usable).
 */
export async function confirmEmailChange(ctx: Pick<AppContext, 'db' | 'clock' | 'config' | 'keyring'>, token: string, meta: RequestMeta): Promise<{ email: string }> {
  try {
    return await ctx.db.$transaction(async (tx) => {
      // Whoever reads the new address is not verified yet (a mistyped address reaches a stranger): a
      // link a block voided says no more than "replaced", without the administrators' contacts.
      const { data: change, user } = await consumeAccountLink(tx, ctx.clock, token, 'EMAIL_CHANGE', changeData);
      // Only an active account (a block racing the click), and only the change from the address it
      // had when the change was asked for.
      if (user.status !== 'ACTIVE' || user.email !== change.from) {
        throw flowErrors.link_used('This link no longer works: the account changed since.', { linkState: 'replaced' });
      }
      await tx.user.update({ where: { id: user.id }, data: { email: change.to, emailVerifiedAt: ctx.clock.now() } });
      await refuseHeldAddress(tx, ctx.clock, { id: user.id, email: change.to });
      // Links in the old mailbox stop working, except the undo links of earlier moves.
      await voidFlows(tx, user.id, ['PASSWORD_RESET', 'MFA_RESET', 'EMAIL_CHANGE']);
      const undo = await issueFlowToken(tx, ctx.clock, {
        userId: user.id,
        purpose: 'EMAIL_UNDO',
        ttlSeconds: EMAIL_UNDO_TTL_SECONDS,
        data: { ...change, move: (await lastMove(tx, user.id)) + 1 } satisfies UndoData,
        keepOlder: true,
      });
      await enqueueMail(tx, ctx, {
        to: { email: change.from, language: user.language, id: user.id },
        template: 'email_changed',
        data: { name: user.name, newEmail: change.to, link: buildLink(ctx.config, LINK_PATHS.emailChangeUndo, undo.token), expiresAt: undo.flow.expiresAt },
      });
      await recordAudit(tx, ctx.clock, {
        type: 'user.email_changed',
        actorUserId: user.id,
        subjectUserId: user.id,
        organizationId: user.organizationId,
        meta,
        details: { from: change.from, to: change.to },
      });
      return { email: change.to };
    });
  } catch (err) {
    if (isEmailTaken(err)) throw organizationErrors.email_taken('Another account uses this address. Nothing was changed.');
    throw err;
  }
}

/**
 * The address an account left undoes the move with the link in its notice (public: the token is
 * the credential, and that address was the account's verified one until the move). For the owner
 * of an account that someone with its session and password moved to an address they read: the
 * address comes back (verified again), every session ends, the links that went to the other
 * address (password reset, MFA reset, a pending change) and the undo links of later moves stop
 * working. Whoever moved the account knew its password and could have made recovery codes: the
 * password is replaced by one nobody knows and the recovery codes are deleted, and a link to choose
 * a new password goes to the restored address with the confirmation. The authenticator stays: one
 * the intruder set up is reset by an administrator or support, after checking this address
 * (product rule 11). The address the account leaves is told, without a link: for seven days the
 * mailbox it left keeps the power over the account it had before the move, and should that be
 * someone else's now, the account's owner learns of it there.
 *
 * A later move, a password reset and a block leave the link alone, and the link works on a blocked
 * account: a block is what support or an administrator does first on a suspected takeover, and the
 * undo is what makes lifting it safe (the intruder's password, sessions and address gone). The block
 * stays; the answer names whom to ask to lift it. An address another account took meanwhile: 409 email_taken,
 * nothing changes, and the link still works should the address become free.
 */
export async function undoEmailChange(
  ctx: Pick<AppContext, 'db' | 'clock' | 'config' | 'keyring' | 'hasher'>,
  token: string,
  meta: RequestMeta,
): Promise<{ email: string; blocked: BlockedContact | null }> {
  // Checked before the hash below is spent on it (and again, under the lock, in the transaction).
  await findUsableFlow(ctx.db, ctx.clock, token, 'EMAIL_UNDO');
  const unknownPassword = await ctx.hasher.hash(randomToken(32));
  try {
    return await ctx.db.$transaction(async (tx) => {
      const { data: move, user } = await consumeAccountLink(tx, ctx.clock, token, 'EMAIL_UNDO', undoData);
      const now = ctx.clock.now();
      await tx.user.update({ where: { id: user.id }, data: { email: move.from, emailVerifiedAt: now, passwordHash: unknownPassword, passwordChangedAt: now } });
      // Counted as the audit documents it: the unused ones (the power they gave); the used go too.
      const { count: recoveryCodesDeleted } = await tx.recoveryCode.deleteMany({ where: { userId: user.id, usedAt: null } });
      await tx.recoveryCode.deleteMany({ where: { userId: user.id } });
      const sessionsRevoked = await revokeUserSessions(tx, ctx.clock, user.id, 'email_change_undone');
      await voidFlows(tx, user.id, ['LOGIN_CHALLENGE', 'PASSWORD_RESET', 'MFA_RESET', 'EMAIL_CHANGE']);
      // The undo links of later moves: the address they would bring back was never the owner's.
      await tx.$executeRaw`
        UPDATE flow_tokens SET state = 'VOIDED'
         WHERE user_id = ${user.id}::uuid AND purpose = 'EMAIL_UNDO' AND state = 'PENDING' AND (data->>'move')::int > ${move.move}`;
      // A block stays (an administrator's or support's decision, often the first step on a
      // suspected takeover): the holder learns whom to ask to lift it, and that the reset link waits.
      const blocked = user.status === 'BLOCKED' ? await blockedAccountContact(tx, ctx.config, user) : null;
      const reset = await issueFlowToken(tx, ctx.clock, { userId: user.id, purpose: 'PASSWORD_RESET', ttlSeconds: PASSWORD_RESET_TTL_SECONDS });
      await enqueueMail(tx, ctx, {
        to: { email: move.from, language: user.language, id: user.id },
        template: 'email_change_undone',
        data: {
          name: user.name,
          movedTo: user.email,
          link: buildLink(ctx.config, LINK_PATHS.passwordReset, reset.token),
          expiresAt: reset.flow.expiresAt,
          stillBlocked: blocked && (blocked.administrators.length > 0 ? 'organization' : 'support'),
        },
      });
      if (user.email.toLowerCase() !== move.from.toLowerCase()) {
        await enqueueMail(tx, ctx, { to: { email: user.email, language: user.language, id: user.id }, template: 'email_change_reverted', data: { name: user.name, restoredEmail: move.from } });
      }
      await recordAudit(tx, ctx.clock, {
        type: 'user.email_changed',
        actorUserId: null,
        subjectUserId: user.id,
        organizationId: user.organizationId,
        meta,
        details: { from: user.email, to: move.from, undone: true, sessionsRevoked, recoveryCodesDeleted },
      });
      return { email: move.from, blocked };
    });
  } catch (err) {
    if (isEmailTaken(err)) throw organizationErrors.email_taken('Another account uses this address now. Nothing was changed; the link still works should the address become free.');
    throw err;
  }
}
