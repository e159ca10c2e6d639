import type { Role } from '../generated/prisma/enums.js';

/**
 * The typed statement of what each role may do. Routes name one permission; the authorize hook
 * checks it against the actor's roles. Who-may-act-on-whom (same organisation, self) is decided by
 * the policy module, not here.
 */
const userPermissions = [
  'me:read',
  'me:update',
  'me:mfa',
  'me:sessions',
  'me:security-events',
  'auth:logout',
  'organization:administrators:read',
] as const;

const customerAdminPermissions = [
  'organization:users:read',
  'organization:users:invite',
  'organization:users:block',
  'organization:users:unlock',
  'organization:users:mfa-reset',
  'organization:users:password-reset',
  'organization:users:roles',
  'organization:users:rename',
  'organization:users:sign-out',
  'organization:users:erase',
  'organization:audit:read',
] as const;

const supportPermissions = [
  'support:organizations:read',
  'support:organizations:create',
  'support:organizations:update',
  'support:organizations:suspend',
  'support:administrators:appoint',
  'support:users:read',
  'support:users:block',
  'support:users:unlock',
  'support:users:withdraw-invitation',
  'support:users:rename',
  'support:users:sign-out',
  'support:users:erase',
  'support:users:mfa-reset-request',
  'support:users:password-reset',
  'support:audit:read',
] as const;

export type Permission =
  | (typeof userPermissions)[number]
  | (typeof customerAdminPermissions)[number]
  | (typeof supportPermissions)[number];

export const roleStatements: Readonly<Record<Role, readonly Permission[]>> = Object.freeze({
  USER: userPermissions,
  CUSTOMER_ADMIN: [...userPermissions, ...customerAdminPermissions],
  SUPPORT: [...userPermissions, ...supportPermissions],
});

export function rolesGrant(roles: readonly Role[], permission: Permission): boolean {
  return roles.some((role) => roleStatements[role].includes(permission));
}

/** What a signed-in user without an active TOTP factor may still do: read their profile, enrol, log out. */
export const MFA_EXEMPT_PERMISSIONS: readonly Permission[] = ['me:read', 'me:mfa', 'auth:logout'];

/**
 * The 403 codes the authenticate hook can answer for a route requiring `permission`: `forbidden`
 * when some role lacks it, `mfa_enrollment_required` unless an MFA-less session may use it.
 */
export function authorizationRefusals(permission: Permission): ('forbidden' | 'mfa_enrollment_required')[] {
  return [
    ...(Object.values(roleStatements).some((granted) => !granted.includes(permission)) ? (['forbidden'] as const) : []),
    ...(MFA_EXEMPT_PERMISSIONS.includes(permission) ? [] : (['mfa_enrollment_required'] as const)),
  ];
}
