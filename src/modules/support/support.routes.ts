import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type { FastifyRequest } from 'fastify';
import { requireActor } from '../../access/actor.js';
import { describeErrors, problemResponses } from '../../http/problem.js';
import { possibleOrganizationRefusals, possibleRefusals, type UserAction } from '../../access/policy.js';
import { requestMeta } from '../../http/request-meta.js';
import { ManagedUserSchema, UserIdParams } from '../organization/organization.schemas.js';
import { blockUser, triggerPasswordReset, unblockUser } from '../organization/user-admin.service.js';
import { UNLOCK_SUMMARY, unlockUser } from '../organization/unlock-user.js';
import { userCorrectionRoutes } from '../organization/user-corrections.routes.js';
import { getMfaResetRequest, requestMfaReset } from './mfa-reset.service.js';
import { reinstateOrganization, suspendOrganization } from './suspension.js';
import {
  AppointAdministratorBody,
  CreatedOrganizationSchema,
  CreateOrganizationBody,
  MfaResetRequestSchema,
  OrganizationDetailSchema,
  OrganizationIdParams,
  OrganizationPageSchema,
  OrganizationSummarySchema,
  SearchOrganizationsQuery,
  SearchUsersQuery,
  SupportUserPageSchema,
  SuspendOrganizationBody,
  UpdateOrganizationBody,
} from './support.schemas.js';
import { appointAdministrator, createOrganization, getOrganization, searchOrganizations, searchUsers, updateOrganization } from './support.service.js';

/**
 * The refusals support can get for a user action: no such user (support's scope is every
 * organisation, so the policy itself never says not found), the policy's own (possibleRefusals),
 * and the service's `more`.
 */
const supportErrors = (action: UserAction, more: string[] = []) =>
  describeErrors(['user_not_found', ...possibleRefusals(action, 'SUPPORT'), ...more]);

/** The support desk (role SUPPORT): every organisation, every action audited with the support user as actor. */
export const supportRoutes: FastifyPluginAsyncZod = async (app) => {
  const call = (request: FastifyRequest) => ({ actor: requireActor(request), meta: requestMeta(request) });
  const tags = ['support'];

  app.get(
    '/v1/support/organizations',
    {
      config: { access: { permission: 'support:organizations:read' } },
      schema: {
        operationId: 'searchOrganizations',
        tags,
        summary: 'Search organisations by name or customer number (sorted by name, cursor pagination)',
        querystring: SearchOrganizationsQuery,
        response: { 200: OrganizationPageSchema },
      },
    },
    async (request) => searchOrganizations(app.ctx, call(request), request.query),
  );

  app.post(
    '/v1/support/organizations',
    {
      config: { access: { permission: 'support:organizations:create' } },
      schema: {
        operationId: 'createOrganization',
        tags,
        summary: 'Create an organisation with its first administrator (invited by e-mail), in one transaction',
        description: '409 customer_number_taken, or 409 email_taken when the administrator e-mail is used by any account. An address an account left less than 7 days ago is held for it (the undo link in its notice): 409 email_taken too.',
        body: CreateOrganizationBody,
        response: { 201: CreatedOrganizationSchema, ...problemResponses(409) },
      },
    },
    async (request, reply) => reply.status(201).send(await createOrganization(app.ctx, call(request), request.body)),
  );

  app.get(
    '/v1/support/organizations/:id',
    {
      config: { access: { permission: 'support:organizations:read' } },
      schema: {
        operationId: 'getOrganization',
        tags,
        summary: 'One organisation with all its users',
        description: describeErrors(['organization_not_found']),
        params: OrganizationIdParams,
        response: { 200: OrganizationDetailSchema, ...problemResponses(404) },
      },
    },
    async (request) => getOrganization(app.ctx, call(request), request.params.id),
  );

  app.patch(
    '/v1/support/organizations/:id',
    {
      config: { access: { permission: 'support:organizations:update' } },
      schema: {
        operationId: 'updateOrganization',
        tags,
        summary: "Correct an organisation's name or customer number, or set the language of its new users",
        description:
          'Give any of them; the same values again change and audit nothing. Mails already queued keep the old name. ' +
          'A language applies to users invited from now on; existing users keep theirs. ' +
          describeErrors(['organization_not_found', 'customer_number_taken']),
        params: OrganizationIdParams,
        body: UpdateOrganizationBody,
        response: { 200: OrganizationSummarySchema, ...problemResponses(404, 409) },
      },
    },
    async (request) => updateOrganization(app.ctx, call(request), request.params.id, request.body),
  );

  app.post(
    '/v1/support/organizations/:id/suspend',
    {
      config: { access: { permission: 'support:organizations:suspend' } },
      schema: {
        operationId: 'suspendOrganization',
        tags,
        summary: 'Suspend an organisation (contract ended, fraud, credit stop): all its users are blocked at once, without a mail to each',
        description:
          'Sessions end and pending links stop working as with supportBlockUser, for every user not blocked yet (administrators too: the ' +
          'last-administrator rule does not hold here). While suspended, nobody is invited or appointed into it and none of its users is ' +
          'unblocked (409 organization_suspended; also the answer when it is already suspended); a sign-in is refused as blocked, ' +
          'naming the support contact. ' +
          describeErrors(['organization_not_found', ...possibleOrganizationRefusals('organization.suspend')]),
        params: OrganizationIdParams,
        body: SuspendOrganizationBody,
        response: { 200: OrganizationSummarySchema, ...problemResponses(404, 409) },
      },
    },
    async (request) => suspendOrganization(app.ctx, call(request), request.params.id, request.body.reason),
  );

  app.post(
    '/v1/support/organizations/:id/reinstate',
    {
      config: { access: { permission: 'support:organizations:suspend' } },
      schema: {
        operationId: 'reinstateOrganization',
        tags,
        summary:
          'Lift a suspension: the users it blocked are unblocked (and told by mail); users blocked before it, or blocked on their own during it, stay blocked',
        description:
          'A user who never activated gets a new activation link instead, as with supportUnblockUser. It takes about 3 ms per user it ' +
          'unblocks (one transaction of at most 120 s, so up to about 30,000 users): allow for it. ' +
          describeErrors(['organization_not_found', ...possibleOrganizationRefusals('organization.reinstate')]),
        params: OrganizationIdParams,
        response: { 200: OrganizationSummarySchema, ...problemResponses(404, 409) },
      },
    },
    async (request) => reinstateOrganization(app.ctx, call(request), request.params.id),
  );

  app.post(
    '/v1/support/organizations/:id/administrators',
    {
      config: { access: { permission: 'support:administrators:appoint' } },
      schema: {
        operationId: 'appointAdministrator',
        tags,
        summary: 'Appoint an administrator where the organisation has no active one left, or replace its only one',
        description:
          'Promote a member (`{userId}`, 200) or invite a new administrator (`{email, name}`, 201). ' +
          'A member who has not activated the account yet (e.g. an administrator whose activation link expired) ' +
          'gets a new activation link by e-mail; older links stop working. ' +
          'While the organisation still has an ACTIVE administrator it manages its own roles: 409 administrator_exists. ' +
          'Exception: `replacing` names its only ACTIVE administrator (left the company, compromised), who is blocked in the same ' +
          'transaction exactly as by supportBlockUser (sessions end, invitations and other links they sent are withdrawn, the user gets a mail). Not an ACTIVE administrator of this ' +
          'organisation: 409 not_active_administrator (404 user_not_found outside it); the same user as `userId`: 400 replacing_same_user. ' +
          describeErrors([
            'organization_not_found',
            'email_taken',
            ...possibleOrganizationRefusals('administrator.appoint'),
            ...possibleRefusals('user.appoint_administrator', 'SUPPORT'),
            ...possibleRefusals('user.replace_administrator', 'SUPPORT'),
          ]),
        params: OrganizationIdParams,
        body: AppointAdministratorBody,
        response: { 200: ManagedUserSchema, 201: ManagedUserSchema, ...problemResponses(404, 409) },
      },
    },
    async (request, reply) => {
      const { user, invited } = await appointAdministrator(app.ctx, call(request), request.params.id, request.body);
      return reply.status(invited ? 201 : 200).send(user);
    },
  );

  app.get(
    '/v1/support/users',
    {
      config: { access: { permission: 'support:users:read' } },
      schema: {
        operationId: 'searchUsers',
        tags,
        summary: 'Find users in all organisations by e-mail (exact) or name/e-mail part',
        querystring: SearchUsersQuery,
        response: { 200: SupportUserPageSchema },
      },
    },
    async (request) => searchUsers(app.ctx, call(request), request.query),
  );

  userCorrectionRoutes(app, {
    base: '/v1/support/users',
    tags,
    permissions: {
      rename: 'support:users:rename',
      withdraw: 'support:users:withdraw-invitation',
      erase: 'support:users:erase',
      readSessions: 'support:users:read',
      signOut: 'support:users:sign-out',
    },
    operationIds: {
      rename: 'supportRenameUser',
      withdraw: 'supportWithdrawInvitation',
      erase: 'supportEraseUser',
      listSessions: 'supportListUserSessions',
      signOut: 'supportSignOutUser',
    },
    refusals: (action) => supportErrors(action),
  });

  const action = (
    path: string,
    operationId: string,
    summary: string,
    permission: 'support:users:block' | 'support:users:unlock' | 'support:users:password-reset',
    run: typeof blockUser,
    policy: UserAction,
    more = '',
  ) =>
    app.post(
      `/v1/support/users/:id/${path}`,
      {
        config: { access: { permission } },
        schema: {
          operationId,
          tags,
          summary,
          description: more + supportErrors(policy),
          params: UserIdParams,
          response: { 200: ManagedUserSchema, ...problemResponses(404, 409) },
        },
      },
      async (request) => run(app.ctx, call(request), request.params.id),
    );

  action(
    'block',
    'supportBlockUser',
    'Block a user: sessions and pending links end at once, links the user sent to others are withdrawn; the user gets a mail',
    'support:users:block',
    blockUser,
    'user.block',
    'Only support lifts it (blockedBySupport). A user blocked only by a suspension (blockedBySuspension) can be blocked in their own right, ' +
      'and then stays blocked when the organisation is reinstated. ',
  );
  action('unblock', 'supportUnblockUser', 'Unblock a user; the user gets a mail (one who never activated: a new activation link)', 'support:users:block', unblockUser, 'user.unblock');
  action('unlock', 'supportUnlockUser', UNLOCK_SUMMARY, 'support:users:unlock', unlockUser, 'user.unlock');
  action(
    'password-reset',
    'supportSendPasswordReset',
    'Send the user a password-reset link (support never sees or sets a password)',
    'support:users:password-reset',
    triggerPasswordReset,
    'user.password_reset',
  );

  app.post(
    '/v1/support/users/:id/mfa-reset-request',
    {
      config: { access: { permission: 'support:users:mfa-reset-request' } },
      schema: {
        operationId: 'requestVerifiedMfaReset',
        tags,
        summary: "Start a verified MFA reset: a confirmation link (24 h) goes to the user's stored e-mail address",
        description:
          'The MFA is only removed when the user opens the link (POST /v1/mfa-reset/confirm): authenticator, one being set up, recovery ' +
          'codes and a code-entry lock. A new request replaces an older pending one; finishing a set-up voids it. 409 mfa_not_enrolled: ' +
          'none of these. ' +
          supportErrors('user.mfa_reset_request', ['mfa_not_enrolled']),
        params: UserIdParams,
        response: { 202: MfaResetRequestSchema, ...problemResponses(404, 409) },
      },
    },
    async (request, reply) => reply.status(202).send(await requestMfaReset(app.ctx, call(request), request.params.id)),
  );

  app.get(
    '/v1/support/users/:id/mfa-reset-request',
    {
      config: { access: { permission: 'support:users:mfa-reset-request' } },
      schema: {
        operationId: 'getVerifiedMfaResetRequest',
        tags,
        summary: "The state of the user's latest verified MFA reset request",
        description: supportErrors('user.mfa_reset_request.read'),
        params: UserIdParams,
        response: { 200: MfaResetRequestSchema, ...problemResponses(404) },
      },
    },
    async (request) => getMfaResetRequest(app.ctx, call(request), request.params.id),
  );
};
