import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { requireActor } from '../../access/actor.js';
import type { Permission } from '../../access/permissions.js';
import type { UserAction } from '../../access/policy.js';
import { NoContent } from '../../http/no-content.js';
import { problemResponses } from '../../http/problem.js';
import { requestMeta } from '../../http/request-meta.js';
import { CorrectUserBody, ManagedUserSchema, UserIdParams } from './organization.schemas.js';
import { eraseUser } from './erase-user.js';
import { correctUser } from './rename-user.js';
import { userSessionRoutes } from './user-sessions.routes.js';
import { withdrawInvitation } from './withdraw-invitation.js';

/**
 * What administrators (own organisation) and support (any) do alike to one user: corrections of a
 * mistake in an invitation — `PATCH <base>/:id` corrects the name, `DELETE <base>/:id` withdraws an
 * invitation nobody took up —, erasing a former employee (`POST <base>/:id/erase`) and the user's
 * devices (userSessionRoutes). Each caller names its paths, permissions, operation ids and
 * documented refusals.
 */
export function userCorrectionRoutes(
  app: FastifyInstance,
  options: {
    base: '/v1/organization/users' | '/v1/support/users';
    tags: string[];
    permissions: { rename: Permission; withdraw: Permission; erase: Permission; readSessions: Permission; signOut: Permission };
    operationIds: { rename: string; withdraw: string; erase: string; listSessions: string; signOut: string };
    refusals: (action: UserAction) => string;
  },
): void {
  const typed = app.withTypeProvider<ZodTypeProvider>();
  const call = (request: FastifyRequest) => ({ actor: requireActor(request), meta: requestMeta(request) });

  typed.patch(
    `${options.base}/:id`,
    {
      config: { access: { permission: options.permissions.rename } },
      schema: {
        operationId: options.operationIds.rename,
        tags: options.tags,
        summary: "Correct a user's name (e.g. one mistyped in the invitation) or an invited user's language; your own: PATCH /v1/me",
        description:
          'An invitation already sent keeps the old name and language: send a new one (activation-email) if it matters. The language only ' +
          "while the user is INVITED (409 already_activated after that: the user chooses it). " +
          options.refusals('user.rename'),
        params: UserIdParams,
        body: CorrectUserBody,
        response: { 200: ManagedUserSchema, ...problemResponses(404, 409) },
      },
    },
    async (request) => correctUser(app.ctx, call(request), request.params.id, request.body),
  );

  typed.delete(
    `${options.base}/:id`,
    {
      config: { access: { permission: options.permissions.withdraw } },
      schema: {
        operationId: options.operationIds.withdraw,
        tags: options.tags,
        summary: 'Withdraw the invitation of a user who never activated (e.g. a mistyped address): the account is deleted and its address is free again',
        description:
          'Its activation link stops working and an activation mail not sent yet is not sent. An account that was ever activated is not deleted: ' +
          "409 already_activated (block it instead; `passwordSet` in the user tells which can go); nor an organisation's last administrator, invited or not: " +
          '409 last_administrator. Repeated after it succeeded, it answers 404 user_not_found. ' +
          options.refusals('user.withdraw_invitation'),
        params: UserIdParams,
        response: { 204: NoContent, ...problemResponses(404, 409) },
      },
    },
    async (request, reply) => {
      await withdrawInvitation(app.ctx, call(request), request.params.id);
      return reply.status(204).send(null);
    },
  );

  typed.post(
    `${options.base}/:id/erase`,
    {
      config: { access: { permission: options.permissions.erase } },
      schema: {
        operationId: options.operationIds.erase,
        tags: options.tags,
        summary: 'Erase a former employee (GDPR): the blocked account and everything it holds are deleted for good; its address is free again',
        description:
          'Block first (409 not_blocked otherwise); this cannot be undone. Deleted: the account, its password, authenticator and recovery codes, ' +
          'sessions, e-mail links and preferences, and its mails in the outbox. The audit log keeps its rows (with the account id, and what they ' +
          'recorded then: IP addresses, and in some `details` names and addresses) until AUDIT_RETENTION_DAYS (unset: forever), and shows them in ' +
          '…/audit-events with `name` and `email` of the erased account null; the row of the erasure (user.erased) names nobody. ' +
          'Repeated after it succeeded, it answers 404 user_not_found. ' +
          options.refusals('user.erase'),
        params: UserIdParams,
        response: { 204: NoContent, ...problemResponses(404, 409) },
      },
    },
    async (request, reply) => {
      await eraseUser(app.ctx, call(request), request.params.id);
      return reply.status(204).send(null);
    },
  );

  userSessionRoutes(app, options);
}
