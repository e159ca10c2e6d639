import { z } from 'zod';
import { TERMS_VERSION_MAX_LENGTH } from '../../config.js';
import { LanguageSchema } from '../../lib/languages.js';
import { RoleSchema } from '../sessions/sessions.schemas.js';
import { RequiredActionsSchema } from './required-actions.js';

export const MeSchema = z
  .object({
    id: z.uuid(),
    email: z.string(),
    name: z.string(),
    roles: z.array(RoleSchema),
    organization: z
      .object({ id: z.uuid(), name: z.string(), customerNumber: z.string() })
      .nullable()
      .describe('null for support staff, who belong to no customer organisation'),
    mfa: z.object({
      enrolled: z.boolean(),
      enrolledAt: z.iso.datetime().nullable(),
      recoveryCodesLeft: z.number().int().describe('Unused recovery codes'),
    }),
    terms: z.object({
      currentVersion: z.string().describe('The version the user must accept'),
      acceptedVersion: z.string().nullable(),
      acceptedAt: z.iso.datetime().nullable(),
      accepted: z.boolean().describe('The current version is accepted'),
    }),
    preferences: z.object({
      newsletterOptIn: z.boolean(),
      language: LanguageSchema.describe(
        'The language of my mails (and a hint for the frontend): mine, chosen by me or at my invitation, else the service default',
      ),
      updatedAt: z.iso.datetime().nullable().describe('null until the user saved preferences once (with the newsletter answer)'),
    }),
    lastLoginAt: z.iso.datetime().nullable(),
    session: z.object({ id: z.uuid(), amr: z.array(z.string()) }).describe('The session of this access token'),
    requiredActions: RequiredActionsSchema,
  })
  .meta({ id: 'Me' });

export type Me = z.infer<typeof MeSchema>;

export const AcceptTermsRequestSchema = z.strictObject({
  version: z.string().min(1).max(TERMS_VERSION_MAX_LENGTH).describe('The current terms version (GET /v1/me → terms.currentVersion)'),
  email: z.string().min(1).max(320).describe('The user types their own e-mail address to confirm (case-insensitive)'),
});

export const PreferencesRequestSchema = z
  .strictObject({
    newsletterOptIn: z.boolean().optional(),
    language: LanguageSchema.optional(),
  })
  .meta({ minProperties: 1 })
  .refine((body) => body.newsletterOptIn !== undefined || body.language !== undefined, 'Set at least one preference');

export const AdministratorsSchema = z
  .object({
    administrators: z.array(z.object({ name: z.string(), email: z.string() })),
  })
  .meta({ id: 'OrganizationAdministrators' });
