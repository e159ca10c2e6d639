import { defineErrors } from '../../errors.js';

export const organizationErrors = defineErrors({
  /** Deliberately says nothing about where the address is used. */
  email_taken: { status: 409, title: 'This e-mail address is already used by an account' },
});

/**
 * The name of the unique constraint a Prisma error violated (P2002), or null. Uniqueness is left
 * to the database (citext e-mail, customer number), so concurrent creations cannot both win.
 */
export function violatedConstraint(err: unknown): string | null {
  const e = err as { code?: unknown; meta?: { target?: unknown; driverAdapterError?: { cause?: { constraint?: { index?: unknown; fields?: unknown } } } } };
  if (!e || e.code !== 'P2002') return null;
  const constraint = e.meta?.driverAdapterError?.cause?.constraint;
  if (typeof constraint?.index === 'string') return constraint.index;
  const fields = constraint?.fields ?? e.meta?.target;
  return Array.isArray(fields) ? fields.join(',') : typeof fields === 'string' ? fields : 'unknown';
}

/**
 * An address held for the account that left it (email-change/held-address.ts): answered exactly
 * as one another account uses, so an administrator learns nothing of a move in another organisation.
 */
export class AddressHeldError extends Error {}

export function isEmailTaken(err: unknown): boolean {
  if (err instanceof AddressHeldError) return true;
  const c = violatedConstraint(err);
  return c !== null && /email/.test(c);
}
