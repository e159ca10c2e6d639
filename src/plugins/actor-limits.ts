import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Permission } from '../access/permissions.js';
import { rateLimitedForMs } from '../errors.js';
import type { RouteAccess } from './route-access.js';

/**
 * Per-actor limits on administrative writes (the incident drill of session 26): an administrator's
 * or support employee's account taken over could otherwise mail thousands of addresses of its
 * choosing in the shop's name (and take each address for the whole service), or block and erase
 * users by the hundred a minute, held back only by the per-IP ceiling. Two budgets, counted in
 * the rate-limit store (Redis when set), an hour each:
 *  - `mails`: writes that mail an address the caller chose — invitations, resent activation links,
 *    password-reset links, support's MFA-reset requests, new organisations and appointed
 *    administrators (ADMIN_MAILS_PER_HOUR). Shared by an organisation's administrators: an
 *    administrator taken over could otherwise invite accomplice administrators, each with a budget
 *    of its own (the second read of session 26). Support staff, whom the API cannot create, have one each;
 *  - `changes`: every other administrative write — block, unblock, erase, roles, MFA reset,
 *    sign-out, rename, withdraw, unlock, suspension (ADMIN_CHANGES_PER_HOUR), per person: an
 *    administrator's reach ends at their organisation, and a shared budget would let one taken-over
 *    administrator use up the changes the others need to lock them out.
 * Over a budget: 429 `rate_limited` with Retry-After, nothing changed. Reads are not counted; a
 * write is counted when it is asked for, also one refused afterwards (404, 409), as the per-IP
 * limits count.
 */

export type ActorBudget = 'mails' | 'changes';

const MAILING: ReadonlySet<Permission> = new Set<Permission>([
  'organization:users:invite',
  'organization:users:password-reset',
  'support:organizations:create',
  'support:administrators:appoint',
  'support:users:mfa-reset-request',
  'support:users:password-reset',
]);

/** The budget a route counts against: administrative writes only; a withdrawal (DELETE) mails nobody. */
export function actorBudgetOf(method: string, access: RouteAccess | undefined): ActorBudget | null {
  if (typeof access !== 'object' || method === 'GET' || method === 'HEAD') return null;
  const { permission } = access;
  if (!permission.startsWith('organization:users:') && !permission.startsWith('support:')) return null;
  return MAILING.has(permission) && method === 'POST' ? 'mails' : 'changes';
}

type Limiter = ReturnType<FastifyInstance['createRateLimit']>;

/** Whose budget a request spends: an organisation's administrators share the mails, changes are each person's. */
function budgetHolder(budget: ActorBudget, request: FastifyRequest): string {
  const actor = request.actor;
  if (budget === 'mails' && actor?.organizationId) return `organization:${actor.organizationId}`;
  return `user:${actor?.userId ?? ''}`;
}

export function addActorLimits(
  app: FastifyInstance,
  budgets: Record<ActorBudget, number>,
  onLimited: (request: FastifyRequest, budget: ActorBudget) => void,
): void {
  const limiters = Object.fromEntries(
    (Object.keys(budgets) as ActorBudget[]).map((budget) => [
      budget,
      app.createRateLimit({
        max: budgets[budget],
        timeWindow: 3_600_000,
        keyGenerator: (request: FastifyRequest) => `actor-${budget}:${budgetHolder(budget, request)}`,
      }),
    ]),
  ) as Record<ActorBudget, Limiter>;

  // Only on the routes it counts (the hot paths pay nothing): after authentication (an onRequest
  // hook), so the actor is known; before the handler changes anything.
  app.addHook('onRoute', (route) => {
    const methods = [route.method].flat();
    const budget = actorBudgetOf(methods.find((m) => m !== 'GET' && m !== 'HEAD') ?? 'GET', (route.config as { access?: RouteAccess } | undefined)?.access);
    if (!budget) return;
    const spend = async (request: FastifyRequest) => {
      if (!request.actor) return;
      const result = await limiters[budget](request);
      if (!result.isAllowed && result.isExceeded) {
        onLimited(request, budget);
        throw rateLimitedForMs(
          budget === 'mails'
            ? 'Too many mails sent from this organisation or account within the hour (invitations, links).'
            : 'Too many administrative changes from this account within the hour.',
          result.ttl,
        );
      }
    };
    route.preHandler = [...[route.preHandler ?? []].flat(), spend];
  });
}
