import { z } from 'zod';

/**
 * What the frontend must show next, in this order (issue 5 item 1): set up MFA, accept the current
 * terms, choose preferences (only until the user saved them once).
 */
export const REQUIRED_ACTIONS = ['mfa_enrollment', 'accept_terms', 'set_preferences'] as const;
export type RequiredAction = (typeof REQUIRED_ACTIONS)[number];

export const RequiredActionsSchema = z
  .array(z.enum(REQUIRED_ACTIONS))
  .describe('What the frontend must show next, in order: mfa_enrollment, accept_terms (current version not yet accepted), set_preferences (never saved)');

export type RequiredActionsUser = { termsVersion: string | null; preferencesUpdatedAt: Date | null };

export function computeRequiredActions(
  user: RequiredActionsUser,
  state: { mfaEnrolled: boolean; termsVersion: string },
): RequiredAction[] {
  const actions: RequiredAction[] = [];
  if (!state.mfaEnrolled) actions.push('mfa_enrollment');
  if (user.termsVersion !== state.termsVersion) actions.push('accept_terms');
  if (user.preferencesUpdatedAt === null) actions.push('set_preferences');
  return actions;
}
