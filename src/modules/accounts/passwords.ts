import type { AppContext } from '../../context.js';
import type { AppError } from '../../errors.js';
import { checkPassword, type PasswordContext } from '../../lib/password-policy.js';
import { passwordErrors } from './accounts.errors.js';

/**
 * Setting a password (activation, reset, change): the policy of src/lib/password-policy.ts with the
 * account's context words, then argon2id of the NFKC-normalised password. Checking a password
 * (login, re-authentication) normalises the same way.
 */

export function passwordContext(
  config: AppContext['config'],
  user: { email: string },
  organizationName: string | null | undefined,
): PasswordContext {
  return { email: user.email, organizationName: organizationName ?? undefined, shopName: config.shopName };
}

/** Throws the 422 of the rule the password breaks; returns the normalised password otherwise. */
export function assertPasswordAllowed(password: string, context: PasswordContext): string {
  const result = checkPassword(password, context);
  if (result.ok) return result.normalized;
  const extras: Record<string, unknown> = {};
  if (result.minLength !== undefined) extras.minLength = result.minLength;
  if (result.maxLength !== undefined) extras.maxLength = result.maxLength;
  if (result.contextWord !== undefined) extras.contextWord = result.contextWord;
  const error: AppError = passwordErrors[result.code](result.detail, extras);
  throw error;
}

/** Policy check, then the hash to store. Hashing runs outside any transaction (it is slow). */
export async function hashNewPassword(ctx: Pick<AppContext, 'hasher'>, password: string, context: PasswordContext): Promise<string> {
  const normalized = assertPasswordAllowed(password, context);
  return ctx.hasher.hash(normalized);
}

/** What is hashed and verified: the NFKC form, so the same password typed differently matches. */
export function normalizePassword(password: string): string {
  return password.normalize('NFKC');
}
