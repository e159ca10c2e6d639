import t from 'tap';
import { decide, GRANTABLE_ROLES, possibleRefusals, type ChangeFacts, type Decision, type PolicyActor, type PolicyAction, type UserTarget } from '../../src/access/policy.js';

/** The whole who-may-act-on-whom matrix, one row per case. */

const ORG_A = '00000000-0000-7000-8000-00000000000a';
const ORG_B = '00000000-0000-7000-8000-00000000000b';

const admin: PolicyActor = { userId: 'admin-a', organizationId: ORG_A, roles: ['USER', 'CUSTOMER_ADMIN'] };
const user: PolicyActor = { userId: 'user-a', organizationId: ORG_A, roles: ['USER'] };
const support: PolicyActor = { userId: 'support-1', organizationId: null, roles: ['SUPPORT'] };

const target = (over: Partial<UserTarget> = {}): UserTarget => ({
  id: 'member-a',
  organizationId: ORG_A,
  roles: ['USER'],
  status: 'ACTIVE',
  ...over,
});

const member = target();
const otherAdmin = target({ id: 'admin-a2', roles: ['USER', 'CUSTOMER_ADMIN'] });
const invited = target({ id: 'invited-a', status: 'INVITED' });
const blocked = target({ id: 'blocked-a', status: 'BLOCKED' });
const foreign = target({ id: 'member-b', organizationId: ORG_B });
const supportStaff = target({ id: 'support-2', organizationId: null, roles: ['SUPPORT'] });
const selfAdmin = target({ id: admin.userId, roles: ['USER', 'CUSTOMER_ADMIN'] });
const selfSupport = target({ id: support.userId, organizationId: null, roles: ['SUPPORT'] });

const allow = { effect: 'allow' } as const;
const deny = (effect: Exclude<Decision['effect'], 'allow'>, code: string) => ({ effect, code });

type Row = [name: string, actor: PolicyActor, action: PolicyAction, target: UserTarget | { organizationId: string | null }, facts: ChangeFacts, expected: object];

const userActions: PolicyAction[] = [
  'user.read',
  'user.resend_activation',
  'user.withdraw_invitation',
  'user.erase',
  'user.rename',
  'user.sign_out',
  'user.sessions.read',
  'user.block',
  'user.unblock',
  'user.unlock',
  'user.mfa_reset',
  'user.mfa_reset_request',
  'user.mfa_reset_request.read',
  'user.password_reset',
  'user.set_roles',
  'user.appoint_administrator',
  'user.replace_administrator',
];

const rows: Row[] = [
  // --- a plain USER may administer nobody, not even inside their organisation
  ...userActions.map((a): Row => [`USER ${a} → forbidden`, user, a, member, {}, deny('forbidden', 'forbidden')]),
  ['USER lists organisation users → forbidden', user, 'organization.users.list', { organizationId: ORG_A }, {}, deny('forbidden', 'forbidden')],

  // --- customer admin, own organisation
  ['admin reads member', admin, 'user.read', member, {}, allow],
  ['admin reads self', admin, 'user.read', selfAdmin, {}, allow],
  ['admin resends activation to invited', admin, 'user.resend_activation', invited, {}, allow],
  ['admin resends activation to active → already_activated', admin, 'user.resend_activation', member, {}, deny('conflict', 'already_activated')],
  ['admin resends activation to blocked → user_blocked', admin, 'user.resend_activation', blocked, {}, deny('conflict', 'user_blocked')],
  ['admin withdraws an invitation', admin, 'user.withdraw_invitation', invited, {}, allow],
  ['admin withdraws an invited administrator', admin, 'user.withdraw_invitation', target({ status: 'INVITED', roles: ['USER', 'CUSTOMER_ADMIN'] }), { otherAdministrators: 1 }, allow],
  ['support withdraws the last administrator, invited → last_administrator', support, 'user.withdraw_invitation', target({ status: 'INVITED', roles: ['USER', 'CUSTOMER_ADMIN'] }), { otherAdministrators: 0 }, deny('conflict', 'last_administrator')],
  ['admin withdraws a blocked never-activated user', admin, 'user.withdraw_invitation', blocked, { activated: false }, allow],
  ['admin withdraws a blocked activated user → already_activated', admin, 'user.withdraw_invitation', blocked, { activated: true }, deny('conflict', 'already_activated')],
  ['admin withdraws an active user → already_activated', admin, 'user.withdraw_invitation', member, { activated: true }, deny('conflict', 'already_activated')],
  ['admin withdraws an active user even without the fact → already_activated', admin, 'user.withdraw_invitation', member, {}, deny('conflict', 'already_activated')],
  ['admin withdraws another organisation\'s invitation → user_not_found', admin, 'user.withdraw_invitation', target({ id: 'invited-b', organizationId: ORG_B, status: 'INVITED' }), {}, deny('not_found', 'user_not_found')],
  ['admin withdraws self → self_action_not_allowed', admin, 'user.withdraw_invitation', selfAdmin, {}, deny('conflict', 'self_action_not_allowed')],
  ['admin erases a blocked former employee', admin, 'user.erase', blocked, { blockedBySupport: false }, allow],
  ['admin erases a blocked administrator (no longer counted)', admin, 'user.erase', target({ status: 'BLOCKED', roles: ['USER', 'CUSTOMER_ADMIN'] }), { otherAdministrators: 0 }, allow],
  ['admin erases an active user → not_blocked', admin, 'user.erase', member, {}, deny('conflict', 'not_blocked')],
  ['admin erases an invited user → not_blocked (withdraw it instead)', admin, 'user.erase', invited, {}, deny('conflict', 'not_blocked')],
  ['admin erases a user support blocked → blocked_by_support', admin, 'user.erase', blocked, { blockedBySupport: true }, deny('conflict', 'blocked_by_support')],
  ['admin erases another organisation\'s blocked user → user_not_found', admin, 'user.erase', target({ id: 'b-blocked', organizationId: ORG_B, status: 'BLOCKED' }), {}, deny('not_found', 'user_not_found')],
  ['admin erases self → self_action_not_allowed', admin, 'user.erase', selfAdmin, {}, deny('conflict', 'self_action_not_allowed')],
  ['admin renames an invited user', admin, 'user.rename', invited, {}, allow],
  ['admin renames an active user', admin, 'user.rename', member, {}, allow],
  ['admin renames a blocked user', admin, 'user.rename', blocked, {}, allow],
  ['admin renames self → self_service_required', admin, 'user.rename', selfAdmin, {}, deny('conflict', 'self_service_required')],
  ['admin blocks member', admin, 'user.block', member, { otherAdministrators: 1 }, allow],
  ['admin blocks invited member', admin, 'user.block', invited, { otherAdministrators: 1 }, allow],
  ['admin blocks blocked → already_blocked', admin, 'user.block', blocked, { otherAdministrators: 1 }, deny('conflict', 'already_blocked')],
  ['admin blocks other admin (others remain)', admin, 'user.block', otherAdmin, { otherAdministrators: 1 }, allow],
  ['admin blocks the last admin → last_administrator', admin, 'user.block', otherAdmin, { otherAdministrators: 0 }, deny('conflict', 'last_administrator')],
  ['admin unblocks blocked', admin, 'user.unblock', blocked, {}, allow],
  ['admin unblocks active → not_blocked', admin, 'user.unblock', member, {}, deny('conflict', 'not_blocked')],
  ['admin resets member MFA', admin, 'user.mfa_reset', member, {}, allow],
  ['admin resets blocked member MFA', admin, 'user.mfa_reset', blocked, {}, allow],
  ['admin resets invited MFA → user_not_activated', admin, 'user.mfa_reset', invited, {}, deny('conflict', 'user_not_activated')],
  ['admin cannot start a support-verified reset', admin, 'user.mfa_reset_request', member, {}, deny('forbidden', 'forbidden')],
  ['admin cannot read support reset requests', admin, 'user.mfa_reset_request.read', member, {}, deny('forbidden', 'forbidden')],
  ['admin sends password reset', admin, 'user.password_reset', member, {}, allow],
  ['admin password reset for invited → user_not_activated', admin, 'user.password_reset', invited, {}, deny('conflict', 'user_not_activated')],
  ['admin password reset for blocked → user_blocked', admin, 'user.password_reset', blocked, {}, deny('conflict', 'user_blocked')],
  ['admin promotes member', admin, 'user.set_roles', member, { roles: ['USER', 'CUSTOMER_ADMIN'], otherAdministrators: 1 }, allow],
  ['admin demotes other admin', admin, 'user.set_roles', otherAdmin, { roles: ['USER'], otherAdministrators: 1 }, allow],
  ['admin demotes last admin → last_administrator', admin, 'user.set_roles', otherAdmin, { roles: ['USER'], otherAdministrators: 0 }, deny('conflict', 'last_administrator')],
  ['keeping the last admin an admin is fine', admin, 'user.set_roles', otherAdmin, { roles: ['USER', 'CUSTOMER_ADMIN'], otherAdministrators: 0 }, allow],
  ['demoting a blocked admin does not need another admin', admin, 'user.set_roles', target({ id: 'b', status: 'BLOCKED', roles: ['USER', 'CUSTOMER_ADMIN'] }), { roles: ['USER'], otherAdministrators: 0 }, allow],
  ['admin grants SUPPORT → role_not_grantable', admin, 'user.set_roles', member, { roles: ['USER', 'SUPPORT'], otherAdministrators: 1 }, deny('forbidden', 'role_not_grantable')],
  ['admin cannot appoint via support route', admin, 'user.appoint_administrator', member, {}, deny('forbidden', 'forbidden')],
  ['admin cannot replace an administrator via support route', admin, 'user.replace_administrator', otherAdmin, {}, deny('forbidden', 'forbidden')],

  // --- customer admin acting on themselves
  ['admin blocks self → self_action_not_allowed', admin, 'user.block', selfAdmin, { otherAdministrators: 5 }, deny('conflict', 'self_action_not_allowed')],
  ['admin resets own MFA → self_service_required', admin, 'user.mfa_reset', selfAdmin, {}, deny('conflict', 'self_service_required')],
  ['admin resets own password → self_service_required', admin, 'user.password_reset', selfAdmin, {}, deny('conflict', 'self_service_required')],
  ['admin changes own roles → own_roles_immutable', admin, 'user.set_roles', selfAdmin, { roles: ['USER'], otherAdministrators: 3 }, deny('forbidden', 'own_roles_immutable')],
  ['admin "changes" own roles to the same → own_roles_immutable', admin, 'user.set_roles', selfAdmin, { roles: ['USER', 'CUSTOMER_ADMIN'] }, deny('forbidden', 'own_roles_immutable')],

  // --- customer admin, other organisation: always 404, whatever the action and state
  ...userActions
    .filter((a) => !['user.mfa_reset_request', 'user.mfa_reset_request.read', 'user.appoint_administrator', 'user.replace_administrator'].includes(a))
    .map((a): Row => [`admin ${a} on other organisation → user_not_found`, admin, a, foreign, { otherAdministrators: 1 }, deny('not_found', 'user_not_found')]),
  ['admin blocks a blocked user of another org → still 404', admin, 'user.block', { ...blocked, organizationId: ORG_B }, {}, deny('not_found', 'user_not_found')],
  ['admin on support staff → 404', admin, 'user.read', supportStaff, {}, deny('not_found', 'user_not_found')],
  ['admin lists other org users → organization_not_found', admin, 'organization.users.list', { organizationId: ORG_B }, {}, deny('not_found', 'organization_not_found')],
  ['admin reads other org audit → organization_not_found', admin, 'organization.audit.read', { organizationId: ORG_B }, {}, deny('not_found', 'organization_not_found')],
  ['admin reads all organisations → forbidden', admin, 'organization.audit.read', { organizationId: null }, {}, deny('forbidden', 'forbidden')],
  ['admin invites into own org', admin, 'user.invite', { organizationId: ORG_A }, { roles: ['USER', 'CUSTOMER_ADMIN'] }, allow],
  ['admin invites with SUPPORT → role_not_grantable', admin, 'user.invite', { organizationId: ORG_A }, { roles: ['USER', 'SUPPORT'] }, deny('forbidden', 'role_not_grantable')],
  ['admin invites into other org → organization_not_found', admin, 'user.invite', { organizationId: ORG_B }, { roles: ['USER'] }, deny('not_found', 'organization_not_found')],
  ['admin creates organisations → forbidden', admin, 'organization.create', { organizationId: null }, {}, deny('forbidden', 'forbidden')],
  ['admin updates own organisation → forbidden', admin, 'organization.update', { organizationId: ORG_A }, {}, deny('forbidden', 'forbidden')],
  ['admin suspends own organisation → forbidden', admin, 'organization.suspend', { organizationId: ORG_A }, {}, deny('forbidden', 'forbidden')],

  // --- support: any organisation, verified resets only, never on support staff
  ['support reads any user', support, 'user.read', foreign, {}, allow],
  ['support reads support staff', support, 'user.read', supportStaff, {}, allow],
  ['support blocks any user', support, 'user.block', foreign, { otherAdministrators: 0 }, allow],
  ['support blocks the last admin → last_administrator', support, 'user.block', otherAdmin, { otherAdministrators: 0 }, deny('conflict', 'last_administrator')],
  ['support unblocks', support, 'user.unblock', blocked, {}, allow],
  ['support direct MFA reset → forbidden', support, 'user.mfa_reset', member, {}, deny('forbidden', 'forbidden')],
  ['support starts verified reset', support, 'user.mfa_reset_request', foreign, {}, allow],
  ['support verified reset for blocked → user_blocked', support, 'user.mfa_reset_request', blocked, {}, deny('conflict', 'user_blocked')],
  ['support verified reset for invited → user_not_activated', support, 'user.mfa_reset_request', invited, {}, deny('conflict', 'user_not_activated')],
  ['support reads reset request', support, 'user.mfa_reset_request.read', member, {}, allow],
  ['support sends password reset', support, 'user.password_reset', foreign, {}, allow],
  ['support sets roles → forbidden (organisations govern themselves)', support, 'user.set_roles', member, { roles: ['USER'] }, deny('forbidden', 'forbidden')],
  ['support resends activation → forbidden', support, 'user.resend_activation', invited, {}, deny('forbidden', 'forbidden')],
  ['support withdraws an invitation in any organisation', support, 'user.withdraw_invitation', target({ id: 'invited-b', organizationId: ORG_B, status: 'INVITED' }), { activated: false }, allow],
  ['support withdraws a support staff invitation → support_staff_protected', support, 'user.withdraw_invitation', { ...supportStaff, status: 'INVITED' }, {}, deny('forbidden', 'support_staff_protected')],
  ['support erases a user it blocked, in any organisation', support, 'user.erase', target({ id: 'b-blocked', organizationId: ORG_B, status: 'BLOCKED' }), { blockedBySupport: true }, allow],
  ['support erases blocked support staff → support_staff_protected', support, 'user.erase', { ...supportStaff, status: 'BLOCKED' }, {}, deny('forbidden', 'support_staff_protected')],
  ['support renames in any organisation', support, 'user.rename', foreign, {}, allow],
  ['support renames support staff → support_staff_protected', support, 'user.rename', supportStaff, {}, deny('forbidden', 'support_staff_protected')],
  ['support blocks support staff → support_staff_protected', support, 'user.block', supportStaff, {}, deny('forbidden', 'support_staff_protected')],
  ['support resets support staff password → support_staff_protected', support, 'user.password_reset', supportStaff, {}, deny('forbidden', 'support_staff_protected')],
  ['support verified reset of support staff → support_staff_protected', support, 'user.mfa_reset_request', supportStaff, {}, deny('forbidden', 'support_staff_protected')],
  ['support blocks self → self_action_not_allowed', support, 'user.block', selfSupport, {}, deny('conflict', 'self_action_not_allowed')],
  ['support verified reset of self → self_service_required', support, 'user.mfa_reset_request', selfSupport, {}, deny('conflict', 'self_service_required')],
  ['support appoints where no active admin', support, 'user.appoint_administrator', member, { activeAdministrators: 0 }, allow],
  ['support appoints where an admin is active → administrator_exists', support, 'user.appoint_administrator', member, { activeAdministrators: 1 }, deny('conflict', 'administrator_exists')],
  ['support appoints a blocked user → user_blocked', support, 'user.appoint_administrator', blocked, { activeAdministrators: 0 }, deny('conflict', 'user_blocked')],
  ['support replaces an active administrator', support, 'user.replace_administrator', otherAdmin, {}, allow],
  ['support replaces a member → not_active_administrator', support, 'user.replace_administrator', member, {}, deny('conflict', 'not_active_administrator')],
  ['support replaces an invited administrator → not_active_administrator', support, 'user.replace_administrator', target({ status: 'INVITED', roles: ['USER', 'CUSTOMER_ADMIN'] }), {}, deny('conflict', 'not_active_administrator')],
  ['support replaces a blocked administrator → not_active_administrator', support, 'user.replace_administrator', target({ status: 'BLOCKED', roles: ['USER', 'CUSTOMER_ADMIN'] }), {}, deny('conflict', 'not_active_administrator')],
  ['support replaces support staff → support_staff_protected', support, 'user.replace_administrator', supportStaff, {}, deny('forbidden', 'support_staff_protected')],
  ['support replaces self → self_action_not_allowed', support, 'user.replace_administrator', selfSupport, {}, deny('conflict', 'self_action_not_allowed')],
  ['support invites an administrator where none', support, 'administrator.appoint', { organizationId: ORG_B }, { activeAdministrators: 0 }, allow],
  ['support invites an administrator where one is active → administrator_exists', support, 'administrator.appoint', { organizationId: ORG_B }, { activeAdministrators: 2 }, deny('conflict', 'administrator_exists')],
  ['support creates organisations', support, 'organization.create', { organizationId: null }, {}, allow],
  ['support updates any organisation', support, 'organization.update', { organizationId: ORG_B }, {}, allow],
  ['support suspends an organisation', support, 'organization.suspend', { organizationId: ORG_B }, { organizationSuspended: false }, allow],
  ['support suspends a suspended one → organization_suspended', support, 'organization.suspend', { organizationId: ORG_B }, { organizationSuspended: true }, deny('conflict', 'organization_suspended')],
  ['support reinstates a suspended one', support, 'organization.reinstate', { organizationId: ORG_B }, { organizationSuspended: true }, allow],
  ['support reinstates one not suspended → organization_not_suspended', support, 'organization.reinstate', { organizationId: ORG_B }, { organizationSuspended: false }, deny('conflict', 'organization_not_suspended')],
  ['support invites into a suspended organisation → organization_suspended', support, 'user.invite', { organizationId: ORG_B }, { organizationSuspended: true }, deny('conflict', 'organization_suspended')],
  ['admin unblocks a user support blocked → blocked_by_support', admin, 'user.unblock', blocked, { blockedBySupport: true }, deny('conflict', 'blocked_by_support')],
  ['support unblocks a user support blocked', support, 'user.unblock', blocked, { blockedBySupport: true }, allow],
  ['support unblocks a user of a suspended organisation → organization_suspended', support, 'user.unblock', { ...blocked, organizationId: ORG_B }, { organizationSuspended: true }, deny('conflict', 'organization_suspended')],
  ['support reads all audit events', support, 'organization.audit.read', { organizationId: null }, {}, allow],
  ['support lists any organisation users', support, 'organization.users.list', { organizationId: ORG_B }, {}, allow],
  ['USER creates organisations → forbidden', user, 'organization.create', { organizationId: null }, {}, deny('forbidden', 'forbidden')],

  // --- mutation review, session 22
  ['an administrator without an organisation reaches no organisation-less user → user_not_found (mutation review, session 22)', { userId: 'admin-x', organizationId: null, roles: ['USER', 'CUSTOMER_ADMIN'] }, 'user.read', target({ id: 'orphan', organizationId: null }), {}, deny('not_found', 'user_not_found')],
  ['the widest scope of the actor\'s roles wins, whatever their order (mutation review, session 22)', { userId: 'both', organizationId: ORG_A, roles: ['SUPPORT', 'CUSTOMER_ADMIN'] }, 'user.read', foreign, {}, allow],
  ['support blocks an organisation-less account without the SUPPORT role → support_staff_protected (mutation review, session 22)', support, 'user.block', target({ id: 'orphan', organizationId: null, roles: ['USER'] }), { otherAdministrators: 1 }, deny('forbidden', 'support_staff_protected')],
  ['support reads the reset request of support staff (mutation review, session 22)', support, 'user.mfa_reset_request.read', supportStaff, {}, allow],
  ['a support block that was lifted does not hold back withdrawing the invitation (mutation review, session 22)', admin, 'user.withdraw_invitation', invited, { blockedBySupport: true, activated: false }, allow],
  ['blocking an administrator without the count of the others → last_administrator (fail closed) (mutation review, session 22)', admin, 'user.block', otherAdmin, {}, deny('conflict', 'last_administrator')],
  ['demoting an administrator without the count of the others → last_administrator (fail closed) (mutation review, session 22)', admin, 'user.set_roles', otherAdmin, { roles: ['USER'] }, deny('conflict', 'last_administrator')],
];

t.test('policy matrix', async (t) => {
  for (const [name, actor, action, tgt, facts, expected] of rows) {
    t.same(decide(actor, action as never, tgt as never, facts), expected, name);
  }
});

t.test('SUPPORT is never grantable through the API', async (t) => {
  t.same([...GRANTABLE_ROLES].sort(), ['CUSTOMER_ADMIN', 'USER']);
});

t.test('a scope check comes before every other rule (no state leaks across organisations)', async (t) => {
  for (const status of ['INVITED', 'ACTIVE', 'BLOCKED'] as const) {
    for (const roles of [['USER'], ['USER', 'CUSTOMER_ADMIN']] as const) {
      for (const action of userActions) {
        const d = decide(admin, action as never, target({ id: 'x', organizationId: ORG_B, status, roles: [...roles] }) as never, {
          otherAdministrators: 0,
          roles: ['USER', 'SUPPORT'],
        });
        if (d.effect === 'forbidden' && d.code === 'forbidden') continue; // the role has no such action at all
        t.same(d, deny('not_found', 'user_not_found'), `${action} ${status} ${roles.join('+')}`);
      }
    }
  }
});

t.test('possibleRefusals finds every refusal decide can give an action (the API documents them)', async (t) => {
  t.same(possibleRefusals('user.block', 'CUSTOMER_ADMIN').sort(), ['already_blocked', 'last_administrator', 'self_action_not_allowed', 'support_staff_protected', 'user_not_found']);
  t.same(possibleRefusals('user.set_roles', 'CUSTOMER_ADMIN').sort(), ['last_administrator', 'own_roles_immutable', 'role_not_grantable', 'support_staff_protected', 'user_not_found']);
  t.same(possibleRefusals('user.password_reset', 'SUPPORT').sort(), ['self_service_required', 'support_staff_protected', 'user_blocked', 'user_not_activated']);
  t.same(possibleRefusals('user.mfa_reset_request', 'CUSTOMER_ADMIN'), ['forbidden'], 'an action the role is not granted');
  t.same(possibleRefusals('user.read', 'SUPPORT'), [], 'nothing refuses support reading a user');
  t.same(possibleRefusals('user.rename', 'SUPPORT').sort(), ['self_service_required', 'support_staff_protected']);
  t.same(possibleRefusals('user.sign_out', 'CUSTOMER_ADMIN').sort(), ['self_service_required', 'support_staff_protected', 'user_not_found'], 'any state: nothing about it');
  t.same(possibleRefusals('user.sessions.read', 'CUSTOMER_ADMIN').sort(), ['support_staff_protected', 'user_not_found'], 'own sessions may be read too');
  t.same(possibleRefusals('user.unlock', 'SUPPORT').sort(), ['not_locked', 'self_action_not_allowed', 'support_staff_protected']);
  t.same(possibleRefusals('user.withdraw_invitation', 'CUSTOMER_ADMIN').sort(), ['already_activated', 'blocked_by_support', 'last_administrator', 'self_action_not_allowed', 'support_staff_protected', 'user_not_found']);
  t.same(possibleRefusals('user.erase', 'CUSTOMER_ADMIN').sort(), ['blocked_by_support', 'not_blocked', 'self_action_not_allowed', 'support_staff_protected', 'user_not_found']);
  t.same(possibleRefusals('user.erase', 'SUPPORT').sort(), ['not_blocked', 'self_action_not_allowed', 'support_staff_protected']);
});
