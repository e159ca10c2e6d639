import { z } from 'zod';
import { PasswordInputSchema } from '../accounts/accounts.schemas.js';
import { RECOVERY_CODE_COUNT } from '../../lib/recovery-codes.js';
import { notWith } from '../../http/validation-errors.js';

/** A TOTP code as typed: exactly 6 ASCII digits (checked here, before any secret is touched). */
export const TotpCodeSchema = z
  .string()
  .regex(/^[0-9]{6}$/, 'must be exactly 6 digits')
  .describe('The current 6-digit code from the authenticator app')
  .meta({ example: '123456' });

/** A recovery code as typed; case, spaces and dashes are ignored when it is checked. */
export const RecoveryCodeInputSchema = z
  .string()
  .min(1)
  .max(64)
  .describe('One of the recovery codes shown at enrolment, e.g. "k7m2-xq9p-4hzt-wc3d-n8fy-r6ab" (six groups of four; case, spaces and dashes are ignored; codes issued before December 2026 have three groups and still work)');

export const ChallengeTokenSchema = z
  .string()
  .min(1)
  .max(200)
  .describe('The challengeToken from POST /v1/auth/login or POST /v1/activation');

// Bounded like every other password input: a password the login accepts is accepted here too.
export const PasswordReauthSchema = PasswordInputSchema.describe('The current password (re-authentication)');

export const QrCodeSchema = z
  .object({
    svg: z.string().describe('SVG image of the otpauth URI, safe to inline; states its size (width and height, the PNG\'s: 5 px per module with the quiet zone), scale it with CSS if needed'),
    pngDataUrl: z.string().describe('The same QR code as a data:image/png;base64 URL'),
  })
  .meta({ id: 'QrCode' });

export const TotpEnrollmentSchema = z
  .object({
    secret: z.string().describe('Base32 secret (no padding) for manual entry; shown only during enrolment'),
    otpauthUri: z.string().describe('otpauth://totp/<Issuer>:<email>?secret=...&issuer=...&algorithm=SHA1&digits=6&period=30 (an internationalised domain in the label in Unicode, percent-encoded UTF-8, as the user typed it)'),
    qrCode: QrCodeSchema,
  })
  .meta({
    id: 'TotpEnrollment',
    description:
      'A new, not yet active TOTP secret. Confirm it with one code; asking again before that replaces it.',
  });

export const LoginTotpEnrollmentSchema = TotpEnrollmentSchema.extend({
  challengeExpiresIn: z
    .number()
    .int()
    .min(0)
    .describe('Seconds left to confirm with this login challenge (it expires 5 minutes after the password step); after that the user signs in again and gets a new secret'),
}).meta({ id: 'LoginTotpEnrollment', description: 'A new, not yet active TOTP secret for the login in progress. Confirm it with one code before the challenge expires; asking again before that replaces it.' });

export const RecoveryCodesSchema = z
  .array(z.string())
  .length(RECOVERY_CODE_COUNT)
  .describe(`${RECOVERY_CODE_COUNT} single-use recovery codes. Shown only this once: the user must store them`);

export const RecoveryCodesResponseSchema = z
  .object({ recoveryCodes: RecoveryCodesSchema })
  .meta({ id: 'RecoveryCodes' });

const CODE_OR_RECOVERY_CODE = 'Send either `code` or `recoveryCode`, not both';

export const LoginMfaBodySchema = z.union([
  z.strictObject({ challengeToken: ChallengeTokenSchema, code: TotpCodeSchema, recoveryCode: notWith(CODE_OR_RECOVERY_CODE) }),
  z.strictObject({ challengeToken: ChallengeTokenSchema, recoveryCode: RecoveryCodeInputSchema, code: notWith(CODE_OR_RECOVERY_CODE) }),
]);

export type LoginMfaBody = z.infer<typeof LoginMfaBodySchema>;
