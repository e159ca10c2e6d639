import { z } from 'zod';
import { EmailSchema, ManagedUserSchema, PersonNameSchema, UserStatusSchema, RoleFilterSchema } from '../organization/organization.schemas.js';
import { displayText } from '../../lib/display-text.js';
import { asciiDomain } from '../../lib/email-address.js';
import { LanguageSchema } from '../../lib/languages.js';
import { FlowTokenInputSchema } from '../accounts/accounts.schemas.js';
import { NextCursor, PageQuery } from '../organization/pagination.js';
import { notWith } from '../../http/validation-errors.js';

const timestamp = z.iso.datetime();

export const OrganizationSummarySchema = z
  .object({
    id: z.uuid(),
    customerNumber: z.string(),
    name: z.string(),
    language: LanguageSchema.nullable().describe("Its new users' language unless their invitation names one; null: the service default"),
    createdAt: timestamp,
    suspension: z
      .object({ at: timestamp, reason: z.string() })
      .nullable()
      .describe('Set while support has suspended the organisation: its users are blocked until it is reinstated'),
    userCount: z.number().int(),
    activeAdministratorCount: z.number().int().describe('CUSTOMER_ADMIN users with status ACTIVE'),
  })
  .meta({ id: 'OrganizationSummary' });

export const OrganizationPageSchema = z
  .object({ items: z.array(OrganizationSummarySchema), nextCursor: NextCursor })
  .meta({ id: 'OrganizationPage' });

/** Users an organisation's detail lists: one answer stays small whatever the organisation's size. */
export const ORGANIZATION_USERS_SHOWN = 500;

export const OrganizationDetailSchema = OrganizationSummarySchema.extend({
  users: z
    .array(ManagedUserSchema)
    .describe(
      `The organisation's users sorted by name, the first ${ORGANIZATION_USERS_SHOWN} of them (\`userCount\` tells how many there are; page through all with GET /v1/support/users?organizationId=)`,
    ),
}).meta({ id: 'OrganizationDetail' });

const OrganizationRefSchema = z.object({ id: z.uuid(), customerNumber: z.string(), name: z.string() }).meta({ id: 'OrganizationRef' });

export const SupportUserSchema = ManagedUserSchema.extend({
  organization: OrganizationRefSchema.nullable(),
}).meta({ id: 'SupportUser' });

export const SupportUserPageSchema = z.object({ items: z.array(SupportUserSchema), nextCursor: NextCursor }).meta({ id: 'SupportUserPage' });

export const CustomerNumberSchema = z
  .string()
  .trim()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._\/-]*$/, 'letters, digits and . _ / - only');

export const SearchOrganizationsQuery = z.strictObject({
  q: z.string().trim().normalize('NFC').max(200).optional().describe('Part of the name or of the customer number (case-insensitive); empty: no filter'),
  suspended: z.enum(['true', 'false']).optional().describe('Only suspended organisations (true) or only the others (false)'),
  ...PageQuery,
});

export const CreateOrganizationBody = z.strictObject({
  customerNumber: CustomerNumberSchema,
  name: displayText(200),
  language: LanguageSchema.optional().describe("Its users' language unless their invitation names one (the first administrator's too); unset: the service default"),
  administrator: z
    .strictObject({ email: EmailSchema, name: PersonNameSchema, language: LanguageSchema.optional().describe("Unset: the organisation's") })
    .describe('Invited as the first CUSTOMER_ADMIN'),
});

export const SuspendOrganizationBody = z.strictObject({
  reason: displayText(500).describe('Why (contract ended, fraud, ...): kept with the organisation and in the audit log'),
});

export const UpdateOrganizationBody = z
  .strictObject({
    customerNumber: CustomerNumberSchema.optional(),
    name: displayText(200).optional(),
    language: LanguageSchema.nullable()
      .optional()
      .describe('For users invited from now on (existing users keep theirs); null: the service default'),
  })
  .meta({ minProperties: 1 })
  .refine((body) => Object.values(body).some((v) => v !== undefined), 'Give customerNumber, name, language or several');

export const CreatedOrganizationSchema = z
  .object({ organization: OrganizationSummarySchema, administrator: ManagedUserSchema })
  .meta({ id: 'CreatedOrganization' });

export const OrganizationIdParams = z.strictObject({ id: z.uuid().describe('Organisation id') });

export const SearchUsersQuery = z.strictObject({
  email: z.string().trim().overwrite(asciiDomain).min(1).max(254).optional().describe('Exact e-mail address (case-insensitive; an internationalised domain in either form). Also finds an account that moved away from it while the undo link sent to it lasts (7 days): the owner of a taken-over account knows only that address'),
  q: z.string().trim().normalize('NFC').max(200).optional().describe('Part of the name or e-mail (case-insensitive); empty: no filter'),
  organizationId: z.uuid().optional(),
  status: UserStatusSchema.optional(),
  role: RoleFilterSchema.optional(),
  ...PageQuery,
});

const replacing = z
  .uuid()
  .optional()
  .describe(
    "The organisation's only ACTIVE administrator, replaced by this appointment: blocked in the same transaction (as POST /v1/support/users/{id}/block)",
  );

const PROMOTE_OR_INVITE = 'Send either `userId` (promote a member) or `email` and `name` (invite someone), not both';

export const AppointAdministratorBody = z
  .union([
    z.strictObject({
      userId: z.uuid().describe('An existing user of this organisation to promote'),
      replacing,
      email: notWith(PROMOTE_OR_INVITE),
      name: notWith(PROMOTE_OR_INVITE),
      language: notWith(PROMOTE_OR_INVITE),
    }),
    z
      .strictObject({
        email: EmailSchema,
        name: PersonNameSchema,
        language: LanguageSchema.optional().describe("Unset: the organisation's"),
        replacing,
        userId: notWith(PROMOTE_OR_INVITE),
      })
      .describe('A new user to invite as administrator'),
  ])
  .describe('Promote an existing member (`userId`) or invite a new administrator (`email`, `name`), optionally `replacing` the active one');

export const MfaResetRequestSchema = z
  .object({
    state: z
      .enum(['none', 'pending', 'confirmed', 'expired', 'voided'])
      .describe(
        'none: never requested; pending: mail sent, waiting for the user; confirmed: the user confirmed and MFA was removed; expired: not confirmed within 24 h; voided: replaced by a newer request, or ended by a block or an administrator reset',
      ),
    requestedAt: timestamp.nullable(),
    expiresAt: timestamp.nullable(),
    confirmedAt: timestamp.nullable(),
    requestedBy: z.object({ id: z.uuid(), name: z.string() }).nullable(),
  })
  .meta({ id: 'MfaResetRequest' });

export const ConfirmMfaResetBody = z.strictObject({ token: FlowTokenInputSchema });

export const MfaResetConfirmedSchema = z
  .object({
    status: z.enum(['mfa_reset']),
    next: z.enum(['login']).describe('Sign in with e-mail and password; the login then leads to setting up a new authenticator'),
  })
  .meta({ id: 'MfaResetConfirmed' });
