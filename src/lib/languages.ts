import { z } from 'zod';

/**
 * The languages the service writes mails in: ISO 639-1 codes, as the `Language` enum of the
 * database (prisma/schema.prisma). A new one needs its mail catalogue (src/modules/mail/locales/)
 * and a migration that adds the enum value.
 */
export const LANGUAGES = ['en', 'de'] as const;
export type Language = (typeof LANGUAGES)[number];

/**
 * Inline in the OpenAPI document (no component of its own): @fastify/swagger drops the keys beside
 * a `$ref` in request schemas, which would lose each field's own description.
 */
export const LanguageSchema = z.enum(LANGUAGES).describe('Language of the mails (ISO 639-1): en English, de German');
