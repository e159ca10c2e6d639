import { addSeconds, type Clock } from '../../lib/clock.js';
import { randomToken, sha256Hex } from '../../lib/tokens.js';
import { commonErrors, defineErrors, type AppError } from '../../errors.js';
import type { Tx } from '../../db/client.js';
import type { FlowPurpose } from '../../generated/prisma/enums.js';
import type { FlowToken } from '../../generated/prisma/client.js';

/**
 * Flows are rows: e-mail links (activation, password reset, support MFA reset) and login
 * challenges. The token itself (≥ 256 bits) is only ever returned once; the database stores its
 * SHA-256. A token is valid for exactly one purpose, and state changes are conditional updates,
 * so when two requests race with one token exactly one wins.
 */

export const flowErrors = defineErrors({
  link_invalid: { status: 400, title: 'The link is not valid' },
  link_expired: { status: 410, title: 'The link has expired' },
  link_used: { status: 410, title: 'The link was already used or replaced by a newer one' },
});

/**
 * Marks a flow that withdrawFlowsRequestedBy voided, so its holder is told why it stopped working.
 * (Stored in rows: the name predates withdrawal on demotion and stays.)
 */
const WITHDRAWN_MARK = 'withdrawnBecauseRequesterBlocked';
const WITHDRAWN_DETAIL = 'This link was withdrawn. Ask your administrator or the support team for a new one.';

export type IssuedFlow = { token: string; flow: FlowToken };

/**
 * Creates a flow token and voids the user's older pending tokens of the same purpose (unless
 * `keepOlder`: each undo link of an e-mail change stands for its own move). A token
 * someone requests for another user (`requestedById`) is issued only while that requester is
 * ACTIVE, with their row held (FOR SHARE) until the transaction ends: a block of the requester
 * either waits and then withdraws the new link (withdrawFlowsRequestedBy), or commits first and the
 * request is refused here. The lock comes before any flow row is touched (no lock cycle with a block).
 */
export async function issueFlowToken(
  tx: Tx,
  clock: Clock,
  input: { userId: string; purpose: FlowPurpose; ttlSeconds: number; data?: object; requestedById?: string | null; keepOlder?: boolean },
): Promise<IssuedFlow> {
  if (input.requestedById) await holdActiveRequester(tx, input.requestedById);
  const now = clock.now();
  if (!input.keepOlder) {
    await tx.flowToken.updateMany({
      where: { userId: input.userId, purpose: input.purpose, state: 'PENDING' },
      data: { state: 'VOIDED' },
    });
    // A link withdrawn earlier (its requester was blocked: withdrawFlowsRequestedBy) is now replaced
    // by this one: its holder is sent to the newest e-mail, not to ask for a new link (support
    // walkthrough, session 31: an invitation renewed by a reinstatement). Links only: a login
    // challenge is never withdrawn, and the sign-in path stays one statement shorter.
    if (input.purpose !== 'LOGIN_CHALLENGE') {
      await tx.$executeRaw`
        UPDATE flow_tokens SET data = data - ${WITHDRAWN_MARK}::text
         WHERE user_id = ${input.userId}::uuid AND purpose = ${input.purpose}::"FlowPurpose" AND state = 'VOIDED' AND data ? ${WITHDRAWN_MARK}::text`;
    }
  }
  const token = randomToken(32);
  const flow = await tx.flowToken.create({
    data: {
      userId: input.userId,
      purpose: input.purpose,
      tokenHash: sha256Hex(token),
      expiresAt: addSeconds(now, input.ttlSeconds),
      data: input.data ?? {},
      requestedById: input.requestedById ?? null,
      createdAt: now,
    },
  });
  return { token, flow };
}

async function holdActiveRequester(tx: Tx, requesterId: string): Promise<void> {
  const rows = await tx.$queryRaw<{ status: string }[]>`SELECT status::text FROM users WHERE id = ${requesterId}::uuid FOR SHARE`;
  if (rows[0]?.status !== 'ACTIVE') throw commonErrors.unauthenticated('The signed-in account is no longer active.');
}

/** A link withdrawn from its holder because its requester was blocked or lost the administrator role. */
export type WithdrawnLink = { userId: string; email: string; purpose: FlowPurpose };

/**
 * Withdraws the links `requesterId` sent to other users (invitations, password-reset mails,
 * support's MFA-reset requests): called when the requester is blocked or demoted (loses
 * CUSTOMER_ADMIN), in that transaction, so a compromised administrator's invitation of an address
 * they control cannot be accepted later. The requests themselves lock the organisation row (invite)
 * or the requester's row (issueFlowToken) before any flow row, so one racing the block or demotion
 * either sees it and is refused, or commits first and is withdrawn by it.
 * Every pending one is voided (also one this instance's clock sees as just expired: another
 * instance's may not yet); those still valid are returned, with their holder, for the audit row
 * and the operator. The accounts stay as they are; an administrator can send a new link.
 */
export async function withdrawFlowsRequestedBy(tx: Tx, clock: Clock, requesterId: string): Promise<WithdrawnLink[]> {
  return (await withdrawFlowsRequestedByAll(tx, clock, [requesterId])).get(requesterId) ?? [];
}

/** withdrawFlowsRequestedBy for several requesters in one statement, by requester. */
export async function withdrawFlowsRequestedByAll(tx: Tx, clock: Clock, requesterIds: readonly string[]): Promise<Map<string, WithdrawnLink[]>> {
  const rows = await tx.$queryRaw<(WithdrawnLink & { requesterId: string; live: boolean })[]>`
    UPDATE flow_tokens f SET state = 'VOIDED', data = f.data || jsonb_build_object(${WITHDRAWN_MARK}::text, true)
    FROM users u
    WHERE u.id = f.user_id AND f.requested_by_id = ANY(${requesterIds}::uuid[]) AND f.user_id <> f.requested_by_id AND f.state = 'PENDING'
    RETURNING f.requested_by_id::text AS "requesterId", f.user_id::text AS "userId", u.email::text AS email, f.purpose::text AS purpose,
      f.expires_at > ${clock.now()} AS live`;
  const byRequester = new Map<string, WithdrawnLink[]>();
  for (const { requesterId, userId, email, purpose, live } of rows) {
    if (live) byRequester.set(requesterId, [...(byRequester.get(requesterId) ?? []), { userId, email, purpose }]);
  }
  return byRequester;
}

function wasWithdrawn(flow: FlowToken): boolean {
  return typeof flow.data === 'object' && flow.data !== null && !Array.isArray(flow.data) && flow.data[WITHDRAWN_MARK] === true;
}

/**
 * Finds a usable flow for a token without changing it; throws the precise reason otherwise.
 * `whyNotPending` may name a better reason than link_used for a link of this purpose that is no
 * longer pending but not expired either (accounts/blocked.ts `blockedLinkHolder`: blocking voids
 * the user's links). It only ever sees a flow that exists, so unknown tokens answer as before.
 */
export async function findUsableFlow(
  tx: Tx,
  clock: Clock,
  token: string,
  purpose: FlowPurpose,
  whyNotPending?: (flow: FlowToken) => Promise<Error | null>,
): Promise<FlowToken> {
  if (typeof token !== 'string' || token.length < 20 || token.length > 200) throw flowErrors.link_invalid();
  const flow = await tx.flowToken.findUnique({ where: { tokenHash: sha256Hex(token) } });
  if (!flow || flow.purpose !== purpose) throw flowErrors.link_invalid();
  if (flow.state !== 'PENDING') {
    const reason = whyNotPending && flow.expiresAt > clock.now() ? await whyNotPending(flow) : null;
    throw reason ?? linkUsedError(flow);
  }
  if (flow.expiresAt <= clock.now()) throw flowErrors.link_expired();
  return flow;
}

/**
 * Marks a flow consumed if, and only if, it is still pending and unexpired. Call inside the
 * transaction that performs the flow's effect: losing the race throws, rolling the effect back.
 */
export async function consumeFlow(tx: Tx, clock: Clock, flow: Pick<FlowToken, 'id'>): Promise<void> {
  const now = clock.now();
  const { count } = await tx.flowToken.updateMany({
    where: { id: flow.id, state: 'PENDING', expiresAt: { gt: now } },
    data: { state: 'CONSUMED', consumedAt: now },
  });
  if (count !== 1) throw await whyNotConsumed(tx, flow.id);
}

/**
 * Why consumeFlow lost: used or voided meanwhile (linkUsedError), expired, or gone with its account
 * (a withdrawn invitation: link_invalid, as the link answers from then on).
 */
async function whyNotConsumed(tx: Tx, id: string): Promise<Error> {
  const now = await tx.flowToken.findUnique({ where: { id } });
  if (now?.state === 'PENDING') return flowErrors.link_expired(); // it expired meanwhile
  return now ? linkUsedError(now) : flowErrors.link_invalid();
}

/** link_used for a link that was used (linkState `used`). */
export const usedLinkError = (): AppError => flowErrors.link_used('This link was already used.', { linkState: 'used' });

/**
 * link_used for a flow that is no longer pending, with `linkState` telling the page which screen to
 * show: used (CONSUMED), withdrawn (voided by its requester's block), or replaced (voided otherwise:
 * a newer link, or a change of the account that ended it).
 */
function linkUsedError(flow: FlowToken): AppError {
  if (flow.state === 'CONSUMED') return usedLinkError();
  if (wasWithdrawn(flow)) return flowErrors.link_used(WITHDRAWN_DETAIL, { linkState: 'withdrawn' });
  return flowErrors.link_used('This link no longer works: a newer one was sent, or the account changed since. Use the link in the newest e-mail, or ask for a new one.', { linkState: 'replaced' });
}

/** Voids every pending flow of the given purposes for a user (e.g. challenges after a block). */
export async function voidFlows(tx: Tx, userId: string | readonly string[], purposes: FlowPurpose[]): Promise<void> {
  const users = typeof userId === 'string' ? userId : { in: [...userId] };
  await tx.flowToken.updateMany({ where: { userId: users, purpose: { in: purposes }, state: 'PENDING' }, data: { state: 'VOIDED' } });
}
