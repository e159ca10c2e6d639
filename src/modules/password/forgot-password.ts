import type { AppContext } from '../../context.js';
import type { Tx } from '../../db/client.js';
import { newId, prismaSql } from '../../db/sql.js';
import { SqlParams } from '../../db/sql-params.js';
import { addSeconds } from '../../lib/clock.js';
import { randomToken, sha256Hex } from '../../lib/tokens.js';
import { announceAudit, auditInsertSql, type RequestMeta } from '../audit/audit.service.js';
import { lockLoginState } from '../accounts/user-lock.js';
import { buildLink, LINK_PATHS, renderMailFor } from '../mail/mail.service.js';
import { sealMailBody } from '../mail/mail-body.js';
import { PASSWORD_RESET_TTL_SECONDS } from './password.service.js';

const NO_USER = '00000000-0000-0000-0000-000000000000';

/**
 * Reset links per account: a new one at most every minute, and five an hour while one of them can
 * still be used. Beyond that a request is answered the same 202 but sends nothing and leaves the
 * pending link alone — otherwise anyone, from a few IP addresses, could flood a mailbox and void
 * the owner's link before it is used.
 */
export const RESET_LINK_MIN_INTERVAL_SECONDS = 60;
export const RESET_LINKS_PER_HOUR = 5;

/** The advisory-lock class of "forgot password" requests (the two-key form: apart from any one-key lock). */
const FORGOT_PASSWORD_LOCK_CLASS = 0x5057_5246; // "PWRF"

/**
 * "Forgot password": the caller always gets the same 202, whether the address is known or not
 * (security.md item 5). Only active accounts get a link; the password lock does not matter here.
 *
 * Both branches do the same work, step for step: a token and the rendered, sealed mail (for
 * "nobody" when nothing is sent), then one transaction of the same four statements:
 *  1. a lock on the address itself (an advisory lock: it exists for an unknown address too), so
 *     concurrent requests for one address run one after the other in every case. Without it only
 *     an existing account's row lock queued them, and a burst of 10 requests took ≈ 45 ms longer
 *     for an address with an account (session 10's review);
 *  2. the user row lock with the status and address read again under it (lock order address →
 *     user → flows, accounts/user-lock.ts), against no row for an unknown address: a block or an
 *     e-mail change committed meanwhile is seen. The audit row's foreign key then takes KEY SHARE
 *     on the organisation row, which administrative changes (organisation → user) hold FOR NO KEY
 *     UPDATE: no conflict, so no deadlock with them (acting-user.ts `lockOrganization`);
 *  3. the account's reset links of the last hour (none for an unknown address), for the budget
 *     above;
 *  4. one statement that, only for an ACTIVE account within the budget, voids the older reset
 *     links (one valid link, item 14), inserts the new one and queues the mail, and in every case
 *     writes the audit row.
 *     What the lock serialises is therefore the same few round trips whatever the address, not
 *     the four Prisma round trips of a link against the mimicking reads of an unknown address.
 */
export async function requestPasswordReset(
  ctx: Pick<AppContext, 'db' | 'clock' | 'config' | 'keyring'>,
  email: string,
  meta: RequestMeta,
): Promise<void> {
  const user = await ctx.db.user.findUnique({
    where: { email },
    // The active-factor count is part of the same query (a subselect), so a known address costs no extra round trip.
    select: { id: true, email: true, name: true, language: true, organizationId: true, _count: { select: { totpFactors: { where: { status: 'ACTIVE' } } } } },
  });
  const now = ctx.clock.now();
  const token = randomToken(32);
  const expiresAt = addSeconds(now, PASSWORD_RESET_TTL_SECONDS);
  const mailId = newId();
  const rendered = renderMailFor(ctx.config, { email: user?.email ?? '', language: user?.language ?? null, id: user?.id ?? null }, 'password_reset', {
    name: user?.name ?? 'nobody',
    link: buildLink(ctx.config, LINK_PATHS.passwordReset, token),
    expiresAt,
    mfaEnrolled: (user?._count.totpFactors ?? 0) > 0,
    by: 'self',
  });
  const sealed = sealMailBody(ctx.keyring, mailId, { text: rendered.text, html: rendered.html });

  await ctx.db.$transaction(async (tx) => {
    await lockAddress(tx, email);
    const current = await lockLoginState(tx, user?.id ?? NO_USER);
    // An account moved to another address meanwhile (e-mail change) is unknown at this one: its
    // link must not go to the mailbox it just left.
    const status = user && current && current.email === user.email ? current.status : null;
    const withinBudget = await resetLinkBudgetLeft(tx, user?.id ?? NO_USER, now);
    const send = status === 'ACTIVE' && withinBudget;
    const p = new SqlParams();
    const userId = p.add(user?.id ?? NO_USER, 'uuid');
    const sending = p.add(send, 'boolean');
    const at = p.add(now, 'timestamptz');
    const audit = auditInsertSql(p, ctx.clock, {
      type: 'password.reset_requested',
      actorUserId: null,
      subjectUserId: user?.id ?? null,
      organizationId: user?.organizationId ?? null,
      meta,
      details: {
        by: 'self',
        mailSent: send,
        ...(send ? {} : { reason: status === 'ACTIVE' ? 'throttled' : status ? status.toLowerCase() : 'unknown_email' }),
      },
    });
    await prismaSql(tx)(
      `WITH voided AS (
        UPDATE flow_tokens SET state = 'VOIDED'
        WHERE ${sending} AND user_id = ${userId} AND purpose = 'PASSWORD_RESET' AND state = 'PENDING'),
      link AS (
        INSERT INTO flow_tokens (id, user_id, purpose, token_hash, state, expires_at, attempts, data, created_at)
        SELECT ${p.add(newId(), 'uuid')}, ${userId}, 'PASSWORD_RESET', ${p.add(sha256Hex(token), 'text')}, 'PENDING',
          ${p.add(expiresAt, 'timestamptz')}, 0, '{}'::jsonb, ${at}
        WHERE ${sending}),
      mail AS (
        INSERT INTO mail_outbox (id, to_address, user_id, template, subject, body_ciphertext, encryption_key_id, next_attempt_at, created_at)
        SELECT ${p.add(mailId, 'uuid')}, ${p.add(user?.email ?? '', 'text')}, ${userId}, 'password_reset', ${p.add(rendered.subject, 'text')},
          ${p.add(sealed.bodyCiphertext, 'text')}, ${p.add(sealed.encryptionKeyId, 'text')}, ${at}, ${at}
        WHERE ${sending}),
      audit AS (${audit})
      SELECT 1`,
      p.values,
    );
  });
  announceAudit('password.reset_requested');
}

/**
 * Whether the account may get another reset link now: not within RESET_LINK_MIN_INTERVAL_SECONDS
 * of the last, and not beyond RESET_LINKS_PER_HOUR while one of them can still be used (with none
 * usable, the owner's own request must get a link, however many the hour has seen).
 */
async function resetLinkBudgetLeft(tx: Tx, userId: string, now: Date): Promise<boolean> {
  const [recent] = await tx.$queryRaw<{ last: Date | null; count: number; usable: boolean | null }[]>`
    SELECT max(created_at) AS last, count(*)::int AS count, bool_or(state = 'PENDING' AND expires_at > ${now}) AS usable
    FROM flow_tokens
    WHERE user_id = ${userId}::uuid AND purpose = 'PASSWORD_RESET' AND created_at > ${addSeconds(now, -3600)}`;
  const last = recent?.last ?? null;
  if (last !== null && last > addSeconds(now, -RESET_LINK_MIN_INTERVAL_SECONDS)) return false;
  return (recent?.count ?? 0) < RESET_LINKS_PER_HOUR || recent?.usable !== true;
}

/**
 * Holds, until the transaction ends, a lock on the address a "forgot password" request names,
 * case-insensitively as the citext column compares it (lower()).
 */
async function lockAddress(tx: Tx, email: string): Promise<void> {
  await tx.$queryRaw`SELECT 1 AS locked FROM pg_advisory_xact_lock(${FORGOT_PASSWORD_LOCK_CLASS}::int, hashtext(lower(${email})))`;
}
