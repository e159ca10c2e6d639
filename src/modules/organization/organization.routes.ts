import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { requireActor } from '../../access/actor.js';
import { describeErrors, problemResponses } from '../../http/problem.js';
import { possibleRefusals, type UserAction } from '../../access/policy.js';
import { requestMeta } from '../../http/request-meta.js';
import {
  InviteUserBody,
  ListUsersQuery,
  ManagedUserSchema,
  SetRolesBody,
  UserIdParams,
  UserPageSchema,
} from './organization.schemas.js';
import {
  blockUser,
  getUser,
  inviteUser,
  listOrganizationUsers,
  resendActivation,
  resetUserMfa,
  setUserRoles,
  triggerPasswordReset,
  unblockUser,
} from './user-admin.service.js';
import { UNLOCK_SUMMARY, unlockUser } from './unlock-user.js';
import { userCorrectionRoutes } from './user-corrections.routes.js';

/** The refusals an administrator can get for a user action: the policy's own (possibleRefusals), and the service's `more`. */
const adminErrors = (action: UserAction, more: string[] = []) => describeErrors([...possibleRefusals(action, 'CUSTOMER_ADMIN'), ...more]);

/**
 * Customer administrators manage the users of their own organisation. A user id of another
 * organisation answers 404 user_not_found, exactly like an id that does not exist.
 */
export const organizationRoutes: FastifyPluginAsyncZod = async (app) => {
  const call = (request: Parameters<typeof requireActor>[0]) => ({ actor: requireActor(request), meta: requestMeta(request) });
  const tags = ['organization'];

  app.get(
    '/v1/organization/users',
    {
      config: { access: { permission: 'organization:users:read' } },
      schema: {
        operationId: 'listOrganizationUsers',
        tags,
        summary: 'List the users of your organisation (filters, cursor pagination, sorted by name)',
        querystring: ListUsersQuery,
        response: { 200: UserPageSchema },
      },
    },
    async (request) => {
      const { limit, cursor, ...filter } = request.query;
      return listOrganizationUsers(app.ctx, call(request), 'own', filter, { limit, cursor });
    },
  );

  app.post(
    '/v1/organization/users',
    {
      config: { access: { permission: 'organization:users:invite' } },
      schema: {
        operationId: 'inviteOrganizationUser',
        tags,
        summary: 'Invite a user: the account is created INVITED and the activation mail is sent',
        description: 'An e-mail address already used by any account, in any organisation and in any letter case, answers 409 email_taken. An address an account left less than 7 days ago is held for it (the undo link in its notice): 409 email_taken too.',
        body: InviteUserBody,
        response: { 201: ManagedUserSchema, ...problemResponses(409) },
      },
    },
    async (request, reply) => {
      const user = await inviteUser(app.ctx, call(request), 'own', request.body);
      return reply.status(201).send(user);
    },
  );

  app.get(
    '/v1/organization/users/:id',
    {
      config: { access: { permission: 'organization:users:read' } },
      schema: {
        operationId: 'getOrganizationUser',
        tags,
        summary: 'One user of your organisation',
        description: adminErrors('user.read'),
        params: UserIdParams,
        response: { 200: ManagedUserSchema, ...problemResponses(404) },
      },
    },
    async (request) => getUser(app.ctx, call(request), request.params.id),
  );

  userCorrectionRoutes(app, {
    base: '/v1/organization/users',
    tags,
    permissions: {
      rename: 'organization:users:rename',
      withdraw: 'organization:users:invite',
      erase: 'organization:users:erase',
      readSessions: 'organization:users:read',
      signOut: 'organization:users:sign-out',
    },
    operationIds: {
      rename: 'renameOrganizationUser',
      withdraw: 'withdrawOrganizationUserInvitation',
      erase: 'eraseOrganizationUser',
      listSessions: 'listOrganizationUserSessions',
      signOut: 'signOutOrganizationUser',
    },
    refusals: (action) => adminErrors(action),
  });

  const action = (
    path: string,
    operationId: string,
    summary: string,
    permission:
      | 'organization:users:invite'
      | 'organization:users:block'
      | 'organization:users:unlock'
      | 'organization:users:mfa-reset'
      | 'organization:users:password-reset',
    run: typeof blockUser,
    errors: { policy: UserAction; more?: string[] },
  ) =>
    app.post(
      `/v1/organization/users/:id/${path}`,
      {
        config: { access: { permission } },
        schema: {
          operationId,
          tags,
          summary,
          description: adminErrors(errors.policy, errors.more),
          params: UserIdParams,
          response: { 200: ManagedUserSchema, ...problemResponses(404, 409) },
        },
      },
      async (request) => run(app.ctx, call(request), request.params.id),
    );

  action('activation-email', 'resendOrganizationUserActivation', 'Send a new activation link (the older one stops working)', 'organization:users:invite', resendActivation, {
    policy: 'user.resend_activation',
  });
  action('block', 'blockOrganizationUser', 'Block a user: sessions and pending links end at once, links the user sent to others are withdrawn; the user gets a mail', 'organization:users:block', blockUser, { policy: 'user.block' });
  action('unblock', 'unblockOrganizationUser', 'Unblock a user; the user gets a mail (one who never activated: a new activation link)', 'organization:users:block', unblockUser, { policy: 'user.unblock' });
  action('unlock', 'unlockOrganizationUser', UNLOCK_SUMMARY, 'organization:users:unlock', unlockUser, { policy: 'user.unlock' });
  action(
    'mfa-reset',
    'resetOrganizationUserMfa',
    "Remove a user's authenticator (a working one, or one being set up) and recovery codes, lift a code-entry lock and end their sessions; they set up MFA again at the next login. 409 mfa_not_enrolled when there is none of these",
    'organization:users:mfa-reset',
    resetUserMfa,
    { policy: 'user.mfa_reset', more: ['mfa_not_enrolled'] },
  );
  action(
    'password-reset',
    'sendOrganizationUserPasswordReset',
    'Send the user a password-reset link (you never see or set the password)',
    'organization:users:password-reset',
    triggerPasswordReset,
    { policy: 'user.password_reset' },
  );

  app.put(
    '/v1/organization/users/:id/roles',
    {
      config: { access: { permission: 'organization:users:roles' } },
      schema: {
        operationId: 'setOrganizationUserRoles',
        tags,
        summary: "Set a user's roles (USER, CUSTOMER_ADMIN); the last administrator cannot be demoted; a demotion ends the user's sessions and withdraws the links they sent to others",
        description: adminErrors('user.set_roles'),
        params: UserIdParams,
        body: SetRolesBody,
        response: { 200: ManagedUserSchema, ...problemResponses(404, 409) },
      },
    },
    async (request) => setUserRoles(app.ctx, call(request), request.params.id, request.body.roles),
  );
};
