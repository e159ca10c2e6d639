import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { requireActor } from '../../access/actor.js';
import type { Permission } from '../../access/permissions.js';
import type { UserAction } from '../../access/policy.js';
import { problemResponses } from '../../http/problem.js';
import { requestMeta } from '../../http/request-meta.js';
import { SessionListSchema } from '../sessions/sessions.schemas.js';
import { ManagedUserSchema, UserIdParams } from './organization.schemas.js';
import { listUserSessions, signOutUser } from './user-sessions.js';

/**
 * A user's devices, the same for administrators (own organisation) and support (any):
 * `GET <base>/:id/sessions` lists the live sessions, `POST <base>/:id/sign-out` ends them all.
 * Registered by userCorrectionRoutes.
 */
export function userSessionRoutes(
  app: FastifyInstance,
  options: {
    base: '/v1/organization/users' | '/v1/support/users';
    tags: string[];
    permissions: { readSessions: Permission; signOut: Permission };
    operationIds: { listSessions: string; signOut: string };
    refusals: (action: UserAction) => string;
  },
): void {
  const typed = app.withTypeProvider<ZodTypeProvider>();
  const call = (request: FastifyRequest) => ({ actor: requireActor(request), meta: requestMeta(request) });

  typed.get(
    `${options.base}/:id/sessions`,
    {
      config: { access: { permission: options.permissions.readSessions } },
      schema: {
        operationId: options.operationIds.listSessions,
        tags: options.tags,
        summary: "A user's signed-in sessions (devices), newest first: started, last used, address, browser, how they signed in",
        description: '`current` is always false here (your own: GET /v1/me/sessions). ' + options.refusals('user.sessions.read'),
        params: UserIdParams,
        response: { 200: SessionListSchema, ...problemResponses(404) },
      },
    },
    async (request) => ({ sessions: await listUserSessions(app.ctx, call(request), request.params.id) }),
  );

  typed.post(
    `${options.base}/:id/sign-out`,
    {
      config: { access: { permission: options.permissions.signOut } },
      schema: {
        operationId: options.operationIds.signOut,
        tags: options.tags,
        summary:
          'Sign a user out of every device (e.g. a lost laptop) without blocking: all sessions end at once, the user can sign in again with password and code',
        description:
          'Refresh tokens stop working and this service refuses the access tokens at once; services that verify access tokens offline accept one ' +
          'until it expires. A sign-in already past the password step is not stopped: when the password or the authenticator may be in other hands, ' +
          'block instead. The answer is the user; how many sessions ended is in the audit row (user.signed_out). ' +
          options.refusals('user.sign_out'),
        params: UserIdParams,
        response: { 200: ManagedUserSchema, ...problemResponses(404, 409) },
      },
    },
    async (request) => signOutUser(app.ctx, call(request), request.params.id),
  );
}
