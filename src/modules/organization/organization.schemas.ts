import LinkifyIt from 'linkify-it';
import topLevelDomains from 'tlds' with { type: 'json' };
import { z } from 'zod';
import { NextCursor, PageQuery } from './pagination.js';
import { displayText, replaceInvisible } from '../../lib/display-text.js';
import { failsWith } from '../../lib/field-reasons.js';
import { asciiDomain, EMAIL_PATTERN, hasValidDomain } from '../../lib/email-address.js';
import { LanguageSchema } from '../../lib/languages.js';
import { RoleSchema } from '../sessions/sessions.schemas.js';

/**
 * The public representation of a user as administrators and support see it. It is built field by
 * field (users.query.ts), so password hashes, TOTP secrets, recovery codes and lockout counters
 * can never leak through it.
 */

export { RoleSchema };
/** The same roles as a query parameter's enum (a parameter is described inline, not by reference). */
export const RoleFilterSchema = z.enum(RoleSchema.options);
export const GrantableRoleSchema = z.enum(['USER', 'CUSTOMER_ADMIN']);
export const UserStatusSchema = z.enum(['INVITED', 'ACTIVE', 'BLOCKED']);

const timestamp = z.iso.datetime();

export const ManagedUserSchema = z
  .object({
    id: z.uuid(),
    email: z.string(),
    name: z.string(),
    status: UserStatusSchema.describe('INVITED until the activation link is used; BLOCKED users cannot sign in'),
    roles: z.array(RoleSchema),
    organizationId: z.uuid().nullable().describe('null for support staff'),
    language: LanguageSchema.nullable().describe("Of the user's mails; null: the service default"),
    mfa: z.object({
      enrolled: z.boolean().describe('An authenticator app is set up and confirmed'),
      enrolledAt: timestamp.nullable(),
      pending: z.boolean().describe('A set-up was started (QR code shown) but not confirmed with a code yet'),
    }),
    invitation: z
      .object({ sentAt: timestamp, expiresAt: timestamp.describe('In the past: the link expired; resend it') })
      .nullable()
      .describe('INVITED users: the activation link sent last; null otherwise (or when none is pending)'),
    passwordSet: z
      .boolean()
      .describe('The user has chosen a password (used the activation link). Only users who have not can be withdrawn (DELETE), INVITED or BLOCKED'),
    signInLock: z
      .object({
        failedPasswordAttempts: z.number().int().nonnegative().describe('Wrong passwords in a row (the 10th locks sign-in)'),
        passwordLockedUntil: timestamp.nullable().describe('Set by the last password lock; in the past: it has run out'),
        failedCodeAttempts: z.number().int().nonnegative().describe('Wrong one-time or recovery codes in a row (the 10th locks code entry)'),
        codeLockedUntil: timestamp.nullable().describe('Set by the last code lock; in the past: it has run out'),
      })
      .nullable()
      .describe('Why a user may not get in right now ("I cannot sign in"): lift an active lock with POST …/unlock. null for support staff'),
    lastLoginAt: timestamp.nullable(),
    blockedAt: timestamp.nullable(),
    blockedBySupport: z
      .boolean()
      .describe('Blocked by support on their own: only support can unblock or withdraw (administrators get 409 blocked_by_support)'),
    blockedBySuspension: z.boolean().describe("Blocked by its organisation's suspension: unblocked when support reinstates the organisation"),
    createdAt: timestamp,
  })
  .meta({ id: 'ManagedUser' });

export type ManagedUser = z.infer<typeof ManagedUserSchema>;

export const UserPageSchema = z
  .object({ items: z.array(ManagedUserSchema), nextCursor: NextCursor })
  .meta({ id: 'ManagedUserPage' });

export const UserIdParams = z.strictObject({ id: z.uuid().describe('User id') });

const emailSchema = z
  .string()
  .trim()
  .overwrite(asciiDomain)
  .max(254)
  .refine(hasValidDomain, failsWith('email_domain', 'Invalid email address: the domain is not a valid internationalised domain name'))
  .pipe(z.email({ pattern: EMAIL_PATTERN }))
  // The document shows the pipe's input side (a string); the address check is said here too.
  .meta({
    format: 'email',
    description: 'Unique across all organisations, case-insensitively. An internationalised domain (müller.de) is stored in its ASCII form (xn--mller-kva.de); either form signs in',
  });
export const EmailSchema = emailSchema;
/**
 * What mail programs turn into a link — a web address (with or without a scheme: "t.me/x",
 * "evil-shop.com", "also-login.app") or an e-mail address — has no place in a person's name: the
 * name is read in the service's official mails ("Hello <name>,"), where an administrator could
 * otherwise plant a link in the shop's own words. Found as mail programs find them: linkify-it with
 * every top-level domain IANA delegates (its own list has only the old ones and the two-letter
 * ones), after NFKC and with the other full stops (。｡) as dots; a disguised scheme ("hxxp://") too.
 * "Dr.med." and "St.Clair" pass: degrees typed without spaces whose last part is also a top-level
 * domain (.med, .ing, .art, .sc) are taken out first (each of them is a host a mail program could
 * link, and whoever owns it would get that link: accepted as the lesser evil than refusing people's
 * degrees). Organisation names, set by support, may name a domain.
 */
const linkFinder = new LinkifyIt({ fuzzyIP: true }).tlds(topLevelDomains, true);
const DEGREES = /(?<![\p{L}\p{N}.-])(?:dr\.med(?:\.vet|\.dent)?|dr\.ing|dipl\.(?:wirt\.)?ing|mag\.art|[bm]\.sc)\.(?![\p{L}\p{N}])/giu;
const carriesAddress = (name: string): boolean => {
  const normalized = name.normalize('NFKC').replace(/[\u3002\uFF61]/g, '.').replace(DEGREES, ' ');
  // What shows as nothing — the joiners and direction marks a name may keep (display-text.ts),
  // variation selectors, the grapheme joiner — is a letter to linkify-it, so "evil.com" + LRM hid its
  // address; a reader (and a mail program's linkifier) sees through them. Looked at without them
  // ("evil.c" + ZWJ + "om" reads "evil.com") and with them as spaces.
  return [replaceInvisible(normalized, ''), replaceInvisible(normalized, ' ')].some((text) => {
    // A full stop after no letter or digit ("Hans 。evil.com" as "Hans .evil.com") starts no host for
    // linkify-it, while a mail program links what follows it: looked at as a space as well.
    const loose = text.replace(/(^|[^\p{L}\p{N}])\.+/gu, '$1 ');
    return linkFinder.test(text) || linkFinder.test(loose) || /:\/\/|\bwww\.|@/i.test(text);
  });
};
export const PersonNameSchema = displayText(200)
  .refine((name) => !carriesAddress(name), failsWith('contains_address', 'no web or e-mail addresses'))
  .describe('One line of visible text without web or e-mail addresses');

export const InviteUserBody = z.strictObject({
  email: emailSchema,
  name: PersonNameSchema,
  roles: z
    .array(GrantableRoleSchema)
    .min(1)
    .max(2)
    .optional()
    .describe('Default ["USER"]. USER is always included; SUPPORT can never be granted through the API'),
  language: LanguageSchema.optional().describe("Of the user's mails (the activation mail too); unset: the organisation's, else the service default. The user can change it"),
});

export const RenameUserBody = z.strictObject({ name: PersonNameSchema });

/** What an administrator or support corrects in a user (PATCH …/users/{id}). */
export const CorrectUserBody = z
  .strictObject({
    name: PersonNameSchema.optional(),
    language: LanguageSchema.optional().describe(
      "Of an INVITED user's mails, e.g. before sending the activation mail again (409 already_activated once activated: then the user chooses)",
    ),
  })
  .meta({ minProperties: 1 })
  .refine((body) => body.name !== undefined || body.language !== undefined, 'Give name, language or both');

export const SetRolesBody = z.strictObject({
  roles: z.array(GrantableRoleSchema).min(1).max(2).describe('USER is always kept; CUSTOMER_ADMIN grants administration rights'),
});

export const ListUsersQuery = z.strictObject({
  status: UserStatusSchema.optional(),
  mfa: z.enum(['enrolled', 'not_enrolled']).optional().describe('Whether an authenticator app is set up'),
  role: RoleFilterSchema.optional(),
  q: z.string().trim().normalize('NFC').max(200).optional().describe('Case-insensitive search in name and e-mail; empty: no filter (a cleared search box)'),
  ...PageQuery,
});
