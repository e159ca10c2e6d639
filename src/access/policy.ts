import type { Role, UserStatus } from '../generated/prisma/enums.js';
import { AppError, defineErrors } from '../errors.js';

/**
 * Who may act on whom. Permissions (src/access/permissions.ts) say what a role may do at all; this
 * module says whether *this* actor may do *this* action to *this* target, and is the only place
 * that does. Every administration service calls `authorize()` with facts it loaded from the
 * database inside its transaction, so the decision and the change see the same state.
 *
 * Order of the checks matters:
 *  1. the actor's roles must grant the action at all                   → 403 forbidden
 *  2. the target must be inside the actor's scope (own organisation)   → 404, never 403, so an
 *     organisation-scoped actor learns nothing about other organisations' users
 *  3. the actor acting on themselves                                   → 403/409 (see SELF_RULES)
 *  4. support staff accounts are not administered through the API     → 403 support_staff_protected
 *     (the operator's CLI does it, with checks 5–6: decideOnState)
 *  5. rules on the change (grantable roles, last administrator)        → 403/409
 *  6. the target's state (already blocked, not activated, ...)          → 409
 */

export type PolicyActor = {
  userId: string;
  organizationId: string | null;
  roles: readonly Role[];
};

export type UserTarget = {
  id: string;
  organizationId: string | null;
  roles: readonly Role[];
  status: UserStatus;
};

/** `organizationId: null` means every organisation at once (support's cross-organisation views). */
export type OrganizationTarget = { organizationId: string | null };

/** Facts about the change that some actions need, loaded by the service inside its transaction. */
export type ChangeFacts = {
  /** The roles the target would have afterwards (user.set_roles, user.invite). */
  roles?: readonly Role[];
  /**
   * Administrators (CUSTOMER_ADMIN) of the target's organisation other than the target who count for
   * the last-administrator rule: ACTIVE ones, and INVITED ones with a usable invitation not sent by the
   * target (user.block, user.set_roles, user.withdraw_invitation). Counted under a lock on the organisation row.
   */
  otherAdministrators?: number;
  /**
   * ACTIVE administrators of the organisation (administrator.appoint, user.appoint_administrator),
   * without the one the appointment replaces. Counted under the organisation-row lock.
   */
  activeAdministrators?: number;
  /** The target has ever set a password (user.withdraw_invitation): a blocked user may never have. */
  activated?: boolean;
  /** A password or code lock of the target is running now (user.unlock). */
  locked?: boolean;
  /**
   * The organisation (of the target user, or the one acted on) is suspended: nobody joins it or is
   * unblocked in it until it is reinstated (user.invite, administrator.appoint, user.unblock,
   * organization.suspend, organization.reinstate).
   */
  organizationSuspended?: boolean;
  /**
   * The target is blocked only by its organisation's suspension (user.block): blocking them on
   * their own keeps them blocked when the organisation is reinstated.
   */
  blockedBySuspension?: boolean;
  /** The target was blocked by support (user.unblock, user.withdraw_invitation, user.erase): only support lifts such a block. */
  blockedBySupport?: boolean;
};

export type UserAction =
  | 'user.read'
  | 'user.resend_activation'
  | 'user.withdraw_invitation'
  | 'user.erase'
  | 'user.rename'
  | 'user.sign_out'
  | 'user.sessions.read'
  | 'user.block'
  | 'user.unblock'
  | 'user.unlock'
  | 'user.mfa_reset'
  | 'user.mfa_reset_request'
  | 'user.mfa_reset_request.read'
  | 'user.password_reset'
  | 'user.set_roles'
  | 'user.appoint_administrator'
  | 'user.replace_administrator';

type OrganizationAction =
  | 'organization.create'
  | 'organization.update'
  | 'organization.suspend'
  | 'organization.reinstate'
  | 'organization.read'
  | 'organization.users.list'
  | 'organization.audit.read'
  | 'user.invite'
  | 'administrator.appoint';

export type PolicyAction = UserAction | OrganizationAction;

export const policyErrors = defineErrors({
  forbidden: { status: 403, title: 'Not allowed' },
  user_not_found: { status: 404, title: 'User not found' },
  organization_not_found: { status: 404, title: 'Organisation not found' },
  support_staff_protected: { status: 403, title: 'Support staff accounts are managed by the operator, not through the API' },
  own_roles_immutable: { status: 403, title: 'Users cannot change their own roles' },
  role_not_grantable: { status: 403, title: 'This role cannot be granted through the API' },
  self_service_required: { status: 409, title: 'Use the self-service endpoints for your own account' },
  self_action_not_allowed: { status: 409, title: 'This action cannot be applied to your own account' },
  last_administrator: { status: 409, title: 'The organisation would lose its last administrator' },
  administrator_exists: { status: 409, title: 'The organisation still has an active administrator' },
  not_active_administrator: { status: 409, title: 'The user to be replaced is not an active administrator' },
  already_blocked: { status: 409, title: 'The user is already blocked' },
  not_blocked: { status: 409, title: 'The user is not blocked' },
  not_locked: { status: 409, title: 'Neither sign-in nor code entry of the user is locked' },
  organization_suspended: { status: 409, title: 'The organisation is suspended' },
  organization_not_suspended: { status: 409, title: 'The organisation is not suspended' },
  blocked_by_support: { status: 409, title: 'The user was blocked by support: only support lifts the block' },
  user_blocked: { status: 409, title: 'The user is blocked' },
  already_activated: { status: 409, title: 'The user has already activated the account' },
  user_not_activated: { status: 409, title: 'The user has not activated the account yet' },
});

export type Decision =
  | { effect: 'allow' }
  | { effect: 'not_found'; code: 'user_not_found' | 'organization_not_found' }
  | { effect: 'forbidden'; code: 'forbidden' | 'support_staff_protected' | 'own_roles_immutable' | 'role_not_grantable' }
  | {
      effect: 'conflict';
      code:
        | 'self_service_required'
        | 'self_action_not_allowed'
        | 'last_administrator'
        | 'administrator_exists'
        | 'not_active_administrator'
        | 'already_blocked'
        | 'not_blocked'
        | 'not_locked'
        | 'organization_suspended'
        | 'organization_not_suspended'
        | 'blocked_by_support'
        | 'user_blocked'
        | 'already_activated'
        | 'user_not_activated';
    };

/** `organization`: only targets in the actor's own organisation; `any`: every organisation. */
type Scope = 'organization' | 'any';

/** The policy table: which role reaches which targets for each action. Absent = never. */
const GRANTS: Readonly<Record<PolicyAction, Partial<Record<Role, Scope>>>> = {
  'user.read': { CUSTOMER_ADMIN: 'organization', SUPPORT: 'any' },
  'user.invite': { CUSTOMER_ADMIN: 'organization', SUPPORT: 'any' },
  'user.resend_activation': { CUSTOMER_ADMIN: 'organization' },
  'user.withdraw_invitation': { CUSTOMER_ADMIN: 'organization', SUPPORT: 'any' },
  'user.erase': { CUSTOMER_ADMIN: 'organization', SUPPORT: 'any' },
  'user.rename': { CUSTOMER_ADMIN: 'organization', SUPPORT: 'any' },
  'user.sign_out': { CUSTOMER_ADMIN: 'organization', SUPPORT: 'any' },
  'user.sessions.read': { CUSTOMER_ADMIN: 'organization', SUPPORT: 'any' },
  'user.block': { CUSTOMER_ADMIN: 'organization', SUPPORT: 'any' },
  'user.unblock': { CUSTOMER_ADMIN: 'organization', SUPPORT: 'any' },
  'user.unlock': { CUSTOMER_ADMIN: 'organization', SUPPORT: 'any' },
  // Support never resets directly: it starts the e-mail-verified reset (product rule 11).
  'user.mfa_reset': { CUSTOMER_ADMIN: 'organization' },
  'user.mfa_reset_request': { SUPPORT: 'any' },
  'user.mfa_reset_request.read': { SUPPORT: 'any' },
  'user.password_reset': { CUSTOMER_ADMIN: 'organization', SUPPORT: 'any' },
  'user.set_roles': { CUSTOMER_ADMIN: 'organization' },
  'user.appoint_administrator': { SUPPORT: 'any' },
  // The replaced administrator is then blocked under 'user.block', after the successor is appointed.
  'user.replace_administrator': { SUPPORT: 'any' },
  'organization.create': { SUPPORT: 'any' },
  'organization.update': { SUPPORT: 'any' },
  'organization.suspend': { SUPPORT: 'any' },
  'organization.reinstate': { SUPPORT: 'any' },
  'organization.read': { CUSTOMER_ADMIN: 'organization', SUPPORT: 'any' },
  'organization.users.list': { CUSTOMER_ADMIN: 'organization', SUPPORT: 'any' },
  'organization.audit.read': { CUSTOMER_ADMIN: 'organization', SUPPORT: 'any' },
  'administrator.appoint': { SUPPORT: 'any' },
};

/**
 * What happens when the actor is the target. Admins use the self-service endpoints for their own
 * password and MFA (which require re-authentication); nobody changes their own roles or blocks
 * themselves out.
 */
const SELF_RULES: Readonly<Record<UserAction, Decision>> = {
  'user.read': { effect: 'allow' },
  'user.resend_activation': { effect: 'conflict', code: 'self_action_not_allowed' },
  'user.withdraw_invitation': { effect: 'conflict', code: 'self_action_not_allowed' },
  'user.erase': { effect: 'conflict', code: 'self_action_not_allowed' },
  'user.rename': { effect: 'conflict', code: 'self_service_required' },
  // Your own other devices: DELETE /v1/me/sessions (which keeps the session you are using).
  'user.sign_out': { effect: 'conflict', code: 'self_service_required' },
  'user.sessions.read': { effect: 'allow' },
  'user.block': { effect: 'conflict', code: 'self_action_not_allowed' },
  'user.unblock': { effect: 'conflict', code: 'self_action_not_allowed' },
  'user.unlock': { effect: 'conflict', code: 'self_action_not_allowed' },
  'user.mfa_reset': { effect: 'conflict', code: 'self_service_required' },
  'user.mfa_reset_request': { effect: 'conflict', code: 'self_service_required' },
  'user.mfa_reset_request.read': { effect: 'allow' },
  'user.password_reset': { effect: 'conflict', code: 'self_service_required' },
  'user.set_roles': { effect: 'forbidden', code: 'own_roles_immutable' },
  'user.appoint_administrator': { effect: 'forbidden', code: 'own_roles_immutable' },
  'user.replace_administrator': { effect: 'conflict', code: 'self_action_not_allowed' },
};

/** Roles the API may ever assign. SUPPORT is created by the operator CLI only. */
export const GRANTABLE_ROLES: readonly Role[] = ['USER', 'CUSTOMER_ADMIN'];

const ALLOW: Decision = { effect: 'allow' };

function scopeOf(actor: PolicyActor, action: PolicyAction): Scope | undefined {
  const grants = GRANTS[action];
  let best: Scope | undefined;
  for (const role of actor.roles) {
    const scope = grants[role];
    if (scope === 'any') return 'any';
    if (scope) best = scope;
  }
  return best;
}

function inScope(actor: PolicyActor, scope: Scope, organizationId: string | null): boolean {
  if (scope === 'any') return true;
  return actor.organizationId !== null && organizationId === actor.organizationId;
}

function isUserAction(action: PolicyAction): action is UserAction {
  return action in SELF_RULES;
}

export function decide(actor: PolicyActor, action: OrganizationAction, target: OrganizationTarget, facts?: ChangeFacts): Decision;
export function decide(actor: PolicyActor, action: UserAction, target: UserTarget, facts?: ChangeFacts): Decision;
export function decide(
  actor: PolicyActor,
  action: PolicyAction,
  target: UserTarget | OrganizationTarget,
  facts: ChangeFacts = {},
): Decision {
  const scope = scopeOf(actor, action);
  if (!scope) return { effect: 'forbidden', code: 'forbidden' };

  if (!isUserAction(action)) {
    if (target.organizationId === null && scope !== 'any') return { effect: 'forbidden', code: 'forbidden' };
    if (!inScope(actor, scope, target.organizationId)) return { effect: 'not_found', code: 'organization_not_found' };
    if (action === 'user.invite' && facts.roles?.some((r) => !GRANTABLE_ROLES.includes(r))) {
      return { effect: 'forbidden', code: 'role_not_grantable' };
    }
    if (action === 'organization.reinstate' && !facts.organizationSuspended) return { effect: 'conflict', code: 'organization_not_suspended' };
    if ((action === 'organization.suspend' || action === 'user.invite' || action === 'administrator.appoint') && facts.organizationSuspended) {
      return { effect: 'conflict', code: 'organization_suspended' };
    }
    if (action === 'administrator.appoint' && (facts.activeAdministrators ?? 0) > 0) {
      return { effect: 'conflict', code: 'administrator_exists' };
    }
    return ALLOW;
  }

  const user = target as UserTarget;
  if (!inScope(actor, scope, user.organizationId)) return { effect: 'not_found', code: 'user_not_found' };
  const isSelf = user.id === actor.userId;
  if (isSelf) return SELF_RULES[action];
  // SUPPORT accounts have no organisation; only the operator (CLI) administers them
  // (src/modules/support/support-staff.service.ts).
  if (action !== 'user.read' && action !== 'user.mfa_reset_request.read' && (user.organizationId === null || user.roles.includes('SUPPORT'))) {
    return { effect: 'forbidden', code: 'support_staff_protected' };
  }
  // A block support imposed (fraud, a compromised account) is support's to lift — also by deleting
  // a never-activated account and inviting its address afresh — and its case support's to close
  // (erasing the account ends the trail of what support holds it for).
  const supportsBlock = action === 'user.unblock' || action === 'user.withdraw_invitation' || action === 'user.erase';
  if (supportsBlock && scope !== 'any' && user.status === 'BLOCKED' && facts.blockedBySupport) {
    return { effect: 'conflict', code: 'blocked_by_support' };
  }
  return decideOnState(action, user, facts);
}

/**
 * Checks 5 and 6 alone: the rules on the change and the target's state, once the actor may act on
 * the target. The operator's commands for support staff apply them too.
 */
export function decideOnState(action: UserAction, user: UserTarget, facts: ChangeFacts = {}): Decision {
  const isAdmin = user.roles.includes('CUSTOMER_ADMIN');
  // Blocked administrators do not count; invited ones do while their invitation can still be used
  // (`otherAdministrators`: acting-user.ts countOtherAdministrators).
  const lastAdmin = isAdmin && user.status !== 'BLOCKED' && (facts.otherAdministrators ?? 0) === 0;

  switch (action) {
    case 'user.read':
    case 'user.mfa_reset_request.read':
      return ALLOW;
    case 'user.resend_activation':
      if (user.status === 'BLOCKED') return { effect: 'conflict', code: 'user_blocked' };
      if (user.status !== 'INVITED') return { effect: 'conflict', code: 'already_activated' };
      return ALLOW;
    case 'user.withdraw_invitation':
      // Only an account nobody ever signed in to is deleted; an activated one is blocked instead,
      // which keeps its history attached to a person. An invited administrator counts as one here as
      // everywhere in the last-administrator rule: support appoints a successor first.
      if (user.status === 'ACTIVE' || facts.activated) return { effect: 'conflict', code: 'already_activated' };
      if (lastAdmin) return { effect: 'conflict', code: 'last_administrator' };
      return ALLOW;
    case 'user.erase':
      // Only a blocked account: its sessions have ended and its links were withdrawn, and erasing
      // is a second, deliberate step after the block that cannot be undone.
      if (user.status !== 'BLOCKED') return { effect: 'conflict', code: 'not_blocked' };
      return ALLOW;
    case 'user.rename':
      // A name mistyped in the invitation is corrected whatever the account's state.
      return ALLOW;
    case 'user.sign_out':
    case 'user.sessions.read':
      // Whatever the state: a user without sessions (invited, blocked) has none to end or show.
      return ALLOW;
    case 'user.block':
      if (user.status === 'BLOCKED' && !facts.blockedBySuspension) return { effect: 'conflict', code: 'already_blocked' };
      if (lastAdmin) return { effect: 'conflict', code: 'last_administrator' };
      return ALLOW;
    case 'user.unblock':
      if (user.status !== 'BLOCKED') return { effect: 'conflict', code: 'not_blocked' };
      // Its users come back with the organisation (POST /v1/support/organizations/{id}/reinstate).
      if (facts.organizationSuspended) return { effect: 'conflict', code: 'organization_suspended' };
      return ALLOW;
    case 'user.unlock':
      if (!facts.locked) return { effect: 'conflict', code: 'not_locked' };
      return ALLOW;
    case 'user.mfa_reset':
      // A blocked user's factor may be reset (lost phone reported together with a block).
      if (user.status === 'INVITED') return { effect: 'conflict', code: 'user_not_activated' };
      return ALLOW;
    case 'user.mfa_reset_request':
    case 'user.password_reset':
      if (user.status === 'BLOCKED') return { effect: 'conflict', code: 'user_blocked' };
      if (user.status === 'INVITED') return { effect: 'conflict', code: 'user_not_activated' };
      return ALLOW;
    case 'user.set_roles': {
      const next = facts.roles ?? user.roles;
      if (next.some((r) => !GRANTABLE_ROLES.includes(r))) return { effect: 'forbidden', code: 'role_not_grantable' };
      if (lastAdmin && !next.includes('CUSTOMER_ADMIN')) return { effect: 'conflict', code: 'last_administrator' };
      return ALLOW;
    }
    case 'user.appoint_administrator':
      if ((facts.activeAdministrators ?? 0) > 0) return { effect: 'conflict', code: 'administrator_exists' };
      if (user.status === 'BLOCKED') return { effect: 'conflict', code: 'user_blocked' };
      return ALLOW;
    case 'user.replace_administrator':
      if (!isAdmin || user.status !== 'ACTIVE') return { effect: 'conflict', code: 'not_active_administrator' };
      return ALLOW;
  }
}

/**
 * What the caller can do instead, as the detail of a conflict whose title alone leaves them stuck
 * (frontends translate by `code`; this is for the administrator or developer reading the answer).
 */
const NEXT_STEPS: Partial<Record<PolicyErrorCode, string | Partial<Record<PolicyAction, string>>>> = {
  last_administrator:
    'Make another member an administrator first. Support replaces the only active administrator with ' +
    'POST /v1/support/organizations/{id}/administrators and `replacing`.',
  administrator_exists:
    'The organisation has an active administrator, who appoints others. To replace the only active administrator, send `replacing` with their id.',
  already_activated: 'An activated account is not withdrawn: block it instead. It needs no invitation; a password-reset mail helps a user who forgot the password.',
  user_not_activated: 'Send the invitation again (POST .../activation-email); the user sets a password and the authenticator when activating.',
  not_blocked: {
    'user.erase': 'Only a blocked account can be erased: block it first.',
    'user.unblock': 'Nothing to do: the account is not blocked.',
  },
  already_blocked: 'Nothing to do: the user is blocked. Unblock to let them sign in again.',
  user_blocked: 'Unblock the user first.',
  organization_suspended: 'Reinstate the organisation first (support: POST /v1/support/organizations/{id}/reinstate); its users come back with it.',
};

/** Turns a denial into the error the API answers with. */
export function toError(decision: Exclude<Decision, { effect: 'allow' }>, action?: PolicyAction): AppError {
  const next = NEXT_STEPS[decision.code];
  return policyErrors[decision.code](typeof next === 'string' || next === undefined ? next : action && next[action]);
}

/** Decides and throws on denial; the services' one entry point. */
export function authorize(actor: PolicyActor, action: OrganizationAction, target: OrganizationTarget, facts?: ChangeFacts): void;
export function authorize(actor: PolicyActor, action: UserAction, target: UserTarget, facts?: ChangeFacts): void;
export function authorize(
  actor: PolicyActor,
  action: PolicyAction,
  target: UserTarget | OrganizationTarget,
  facts?: ChangeFacts,
): void {
  const decision = decide(actor, action as UserAction, target as UserTarget, facts);
  if (decision.effect !== 'allow') throw toError(decision, action);
}

/**
 * Every refusal `decide` can give for `action` by `actorRole`, found by trying it on every kind of
 * target it distinguishes (own organisation or another, self, support staff; each status; with and
 * without the facts it weighs) — for the API description of each administrative operation, so the
 * documented codes are the policy's own and cannot drift from it.
 */
export function possibleRefusals(action: UserAction, actorRole: 'CUSTOMER_ADMIN' | 'SUPPORT'): PolicyErrorCode[] {
  const actor: PolicyActor = { userId: 'actor', organizationId: actorRole === 'SUPPORT' ? null : 'org-a', roles: ['USER', actorRole] };
  const codes = new Set<PolicyErrorCode>();
  const targets: UserTarget[] = [];
  for (const status of ['INVITED', 'ACTIVE', 'BLOCKED'] as const) {
    for (const roles of [['USER'], ['USER', 'CUSTOMER_ADMIN'], ['USER', 'SUPPORT']] as Role[][]) {
      for (const organizationId of ['org-a', 'org-b', null]) targets.push({ id: 'target', organizationId, roles, status });
    }
    targets.push({ id: 'actor', organizationId: actor.organizationId, roles: actor.roles, status });
  }
  const factSets: ChangeFacts[] = [
    {},
    { otherAdministrators: 0, activeAdministrators: 0, roles: ['USER'] },
    { otherAdministrators: 1, activeAdministrators: 1, roles: ['USER', 'CUSTOMER_ADMIN'] },
    { roles: ['USER', 'SUPPORT'] },
    { activated: true },
    { locked: true },
    { organizationSuspended: true },
    { blockedBySuspension: true, otherAdministrators: 1 },
    { blockedBySupport: true },
  ];
  for (const target of targets) {
    for (const facts of factSets) {
      const decision = decide(actor, action, target, facts);
      if (decision.effect !== 'allow') codes.add(decision.code);
    }
  }
  return [...codes];
}

/** possibleRefusals for the support desk's organisation actions (the organisation's state and facts). */
export function possibleOrganizationRefusals(action: OrganizationAction): PolicyErrorCode[] {
  const actor: PolicyActor = { userId: 'actor', organizationId: null, roles: ['USER', 'SUPPORT'] };
  const codes = new Set<PolicyErrorCode>();
  for (const facts of [{}, { organizationSuspended: true }, { organizationSuspended: false }, { activeAdministrators: 1 }] as ChangeFacts[]) {
    const decision = decide(actor, action, { organizationId: 'org-a' }, facts);
    if (decision.effect !== 'allow') codes.add(decision.code);
  }
  return [...codes];
}

type PolicyErrorCode = Exclude<Decision, { effect: 'allow' }>['code'];
