import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { AppContext } from '../../src/context.js';
import type { Db } from '../../src/db/client.js';
import type { Organization, User } from '../../src/generated/prisma/client.js';
import type { Role, UserStatus } from '../../src/generated/prisma/enums.js';
import type { Language } from '../../src/lib/languages.js';
import { generateRecoveryCodes, hashRecoveryCode, normalizeRecoveryCode } from '../../src/lib/recovery-codes.js';
import { generateTotpSecret, timeStep, totpCode } from '../../src/lib/totp.js';
import { sealTotpSecret } from '../../src/modules/mfa/totp-secret.js';
import { issueSession } from '../../src/modules/sessions/sessions.service.js';
import type { TokenResponse } from '../../src/modules/sessions/sessions.schemas.js';

/**
 * Test data written straight to the database, for tests that are not about the flow that would
 * normally create it. Passwords are hashed with the app's own hasher; TOTP secrets are sealed
 * exactly as the MFA module stores them (sealTotpSecret: AES-256-GCM, aad `totp:<userId>`).
 */

const unique = () => randomBytes(5).toString('hex');

export async function createOrganization(db: Db, overrides: Partial<Pick<Organization, 'name' | 'customerNumber'>> = {}): Promise<Organization> {
  const suffix = unique();
  return db.organization.create({
    data: { name: overrides.name ?? `Reseller ${suffix}`, customerNumber: overrides.customerNumber ?? `C-${suffix}` },
  });
}

export type CreateUserOptions = {
  /** null (or omitted) only for SUPPORT staff. */
  organizationId?: string | null;
  email?: string;
  name?: string;
  roles?: Role[];
  /** Default ACTIVE. BLOCKED also sets blockedAt; INVITED leaves the password unset unless given. */
  status?: UserStatus;
  /** Default: a fresh strong password (returned). Pass null for no password. */
  password?: string | null;
  /** Default true: an ACTIVE TOTP factor (secret returned). false: no factor (not enrolled). */
  withTotp?: boolean;
  /** Unused recovery codes to create (returned in plain); default 0. Needs withTotp. */
  recoveryCodes?: number;
  /** Accept this terms version (true = the configured current version). Default: not accepted. */
  termsAccepted?: boolean | string;
  /** Save preferences once (clears the set_preferences required action). Default false. */
  preferencesSet?: boolean;
  newsletterOptIn?: boolean;
  /** The language of the user's mails; default null (the configured DEFAULT_LANGUAGE). */
  language?: Language | null;
};

export type CreatedUser = { user: User; password: string | null; totpSecret?: string; recoveryCodes?: string[] };

type FactoryCtx = Pick<AppContext, 'hasher' | 'keyring' | 'clock' | 'config'>;

const ctxOf = (ctxOrApp: FactoryCtx | FastifyInstance): FactoryCtx =>
  'ctx' in ctxOrApp ? (ctxOrApp as FastifyInstance).ctx : (ctxOrApp as FactoryCtx);

/** Creates a user directly in the database. Pass `app.ctx` (or the app) from buildTestApp. */
export async function createUser(db: Db, ctxOrApp: FactoryCtx | FastifyInstance, options: CreateUserOptions = {}): Promise<CreatedUser> {
  const ctx = ctxOf(ctxOrApp);
  const now = ctx.clock.now();
  const status = options.status ?? 'ACTIVE';
  const password =
    options.password === null ? null : (options.password ?? (status === 'INVITED' ? null : `correct horse ${unique()} battery`));
  const withTotp = options.withTotp ?? status !== 'INVITED';
  const termsVersion =
    options.termsAccepted === true ? ctx.config.termsVersion : typeof options.termsAccepted === 'string' ? options.termsAccepted : null;
  const suffix = unique();
  const user = await db.user.create({
    data: {
      organizationId: options.organizationId ?? null,
      email: options.email ?? `user-${suffix}@example.test`,
      name: options.name ?? `User ${suffix}`,
      status,
      roles: options.roles ?? ['USER'],
      passwordHash: password === null ? null : await ctx.hasher.hash(password.normalize('NFKC')),
      passwordChangedAt: password === null ? null : now,
      emailVerifiedAt: status === 'INVITED' ? null : now,
      blockedAt: status === 'BLOCKED' ? now : null,
      termsVersion,
      termsAcceptedAt: termsVersion ? now : null,
      newsletterOptIn: options.newsletterOptIn ?? false,
      language: options.language ?? null,
      preferencesUpdatedAt: options.preferencesSet ? now : null,
      createdAt: now,
    },
  });
  const created: CreatedUser = { user, password };
  if (withTotp) {
    const secret = generateTotpSecret();
    await db.totpFactor.create({
      data: { userId: user.id, status: 'ACTIVE', ...sealTotpSecret(ctx.keyring, user.id, secret), createdAt: now, activatedAt: now },
    });
    created.totpSecret = secret;
  }
  if (options.recoveryCodes) {
    const codes = generateRecoveryCodes(options.recoveryCodes);
    await db.recoveryCode.createMany({
      data: codes.map((c) => ({ userId: user.id, codeHash: hashRecoveryCode(normalizeRecoveryCode(c)!, user.id), createdAt: now })),
    });
    created.recoveryCodes = codes;
  }
  return created;
}

/** The TOTP code for a secret at the app's (fake) clock, plus `offsetSteps` time steps. */
export function currentTotp(app: FastifyInstance, secret: string, offsetSteps = 0): string {
  const seconds = Math.floor(app.ctx.clock.now().getTime() / 1000) + offsetSteps * 30;
  return totpCode(secret, seconds);
}

/** A six-digit code that is no valid code of `secret` anywhere in the ±10-step window. */
export function wrongCode(app: FastifyInstance, secret: string): string {
  const window = new Set(Array.from({ length: 21 }, (_, i) => currentTotp(app, secret, i - 10)));
  for (let n = 0; ; n += 111111) {
    const candidate = String(n % 1_000_000).padStart(6, '0');
    if (!window.has(candidate)) return candidate;
  }
}

export { timeStep };

/**
 * Signs a user in without the login flow (issueSession directly), for tests that are not about
 * login. Returns the same token response the login endpoints answer.
 */
export async function signIn(
  app: FastifyInstance,
  user: { id: string },
  amr: string[] = ['pwd', 'otp'],
  meta: { ip: string | null; userAgent: string | null } = { ip: '127.0.0.1', userAgent: 'tap' },
): Promise<TokenResponse> {
  return app.ctx.db.$transaction((tx) => issueSession(app.ctx, tx, { userId: user.id, amr, meta }));
}
