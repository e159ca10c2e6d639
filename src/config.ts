import { isIP } from 'node:net';
import addressparser from 'nodemailer/lib/addressparser';
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { createHash } from 'node:crypto';
import { parse as parseConnectionString } from 'pg-connection-string';
import { LANGUAGES, type Language } from './lib/languages.js';
import { commonPasswords } from './lib/password-policy.js';
import { parseKeyring } from './lib/secret-box.js';

/**
 * The service configuration: parsed once from the environment, validated, frozen.
 * This is the only module that reads process.env (see loadConfig's caller in server.ts / cli.ts).
 */

/** The non-empty, trimmed entries of a comma-separated value. */
const listEntries = (s: string): string[] => s.split(',').map((p) => p.trim()).filter(Boolean);

const csv = z.string().transform(listEntries);

/** A whole number in decimal digits (Number() would also take "0x10" and "1e3"). */
const int = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .trim()
    .regex(/^\d{1,16}$/, 'a whole number in decimal digits')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

const serviceClients = z
  .string()
  .transform((s, ctx) => {
    const clients: { id: string; secretSha256: string; audiences: string[] | null }[] = [];
    const entries = listEntries(s);
    for (const [index, entry] of entries.entries()) {
      // The audiences part may hold URLs (with colons): everything after the hash.
      const [id, hash, ...rest] = entry.split(':');
      const audiences = rest.length ? rest.join(':').split('|').map((a) => a.trim()) : null;
      if (!id || !hash || !/^[a-f0-9]{64}$/.test(hash) || audiences?.some((a) => a === '')) {
        // Named by position and, only when the entry has the `<id>:` form, by its id: an entry
        // without a colon may be a raw secret pasted in by mistake, which must not reach the log.
        const which = hash === undefined ? `entry ${index + 1}` : `entry ${index + 1} ("${id}")`;
        ctx.addIssue({ code: 'custom', message: `${which} must be <clientId>:<sha256 hex of the secret>[:<audience>|<audience>...]` });
        return z.NEVER;
      }
      clients.push({ id, secretSha256: hash, audiences });
    }
    return clients;
  });

const WEBHOOK_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** "name=url,...": where the event feed is pushed (src/modules/events/webhook-delivery.ts). */
const eventWebhooks = z.string().transform((s, ctx) => {
  const webhooks: { name: string; url: string }[] = [];
  for (const [index, entry] of listEntries(s).entries()) {
    const at = entry.indexOf('=');
    const name = entry.slice(0, at);
    let url: URL | undefined;
    try {
      url = at > 0 ? new URL(entry.slice(at + 1)) : undefined;
    } catch {
      url = undefined;
    }
    if (!WEBHOOK_NAME.test(name) || !url || !/^https?:$/.test(url.protocol) || url.username || url.password || url.hash) {
      ctx.addIssue({
        code: 'custom',
        message: `entry ${index + 1} must be <name>=<http(s) URL without user, password or fragment>, the name in lower case (a-z, 0-9, _ and -)`,
      });
      return z.NEVER;
    }
    webhooks.push({ name, url: url.href });
  }
  return webhooks;
});

/** Standard Webhooks secrets: whsec_ and 24 to 64 random bytes in base64. */
const WEBHOOK_SECRET = /^whsec_([A-Za-z0-9+/]+={0,2})$/;

/** "name=whsec_...,...": one or more per webhook (all sign while a receiver changes over). Never echoed. */
const webhookSecrets = z.string().transform((s, ctx) => {
  const secrets: { name: string; secret: string }[] = [];
  for (const [index, entry] of listEntries(s).entries()) {
    const at = entry.indexOf('=');
    const name = at > 0 ? entry.slice(0, at) : '';
    const secret = entry.slice(at + 1);
    const key = WEBHOOK_SECRET.exec(secret)?.[1];
    const bytes = key ? Buffer.from(key, 'base64').length : 0;
    if (!WEBHOOK_NAME.test(name) || bytes < 24 || bytes > 64) {
      // Named by position and, when it looks like one, by its webhook name: never the secret.
      const which = WEBHOOK_NAME.test(name) ? `entry ${index + 1} ("${name}")` : `entry ${index + 1}`;
      ctx.addIssue({ code: 'custom', message: `${which} must be <webhook name>=whsec_<24 to 64 random bytes in base64> (npm run cli -- generate-webhook-secret)` });
      return z.NEVER;
    }
    secrets.push({ name, secret });
  }
  return secrets;
});

/** A URL with credentials that does not parse (DATABASE_URL, SMTP_URL); the value is never echoed. */
const UNPARSABLE_URL = 'not a valid URL (percent-encode special characters in the user name and password)';

/**
 * A PostgreSQL URL that `pg` can open: the prefix alone let a password with an unencoded `#` or `@`
 * through to a stack trace at the first query. The value (with its password) is never echoed.
 */
const databaseUrl = z.string().superRefine((value, ctx) => {
  if (!/^postgres(ql)?:\/\//.test(value)) {
    ctx.addIssue({ code: 'custom', message: 'must be a postgresql:// URL' });
    return;
  }
  // A `#` is never part of a database URL: unencoded in a password ("auth:2024#Summer@db") it
  // cuts the URL there, and what is left may even parse (host "auth", port 2024).
  let valid = !value.includes('#');
  try {
    new URL(value);
  } catch {
    valid = false;
  }
  if (!valid) ctx.addIssue({ code: 'custom', message: UNPARSABLE_URL });
});

/**
 * Browser origins allowed to call the API: `scheme://host[:port]`, as a browser sends them in
 * `Origin`. A trailing slash is tolerated (the origin is kept); a path, `*` or a bare host name is
 * refused: matching is exact, so such an entry would silently match nothing.
 */
const corsOrigins = csv.transform((entries, ctx): string[] => {
  const origins: string[] = [];
  for (const entry of entries) {
    let url: URL | undefined;
    try {
      url = new URL(entry);
    } catch {
      url = undefined;
    }
    const origin = url && /^https?:$/.test(url.protocol) && (url.pathname === '/' || url.pathname === '') && !url.search && !url.hash && !url.username && !url.password ? url.origin : undefined;
    if (!origin) {
      ctx.addIssue({ code: 'custom', message: `"${entry}" is not an origin: give scheme://host[:port], e.g. https://shop.example.com (no path, no *)` });
      return z.NEVER;
    }
    origins.push(origin);
  }
  return origins;
});

/** An IP address, a CIDR range (`10.0.0.0/8`, `fd00::/8`) or one of proxy-addr's named ranges. */
const NAMED_RANGES = new Set(['loopback', 'linklocal', 'uniquelocal']);
function isProxyAddress(entry: string): boolean {
  if (NAMED_RANGES.has(entry)) return true;
  const [address = '', prefix, ...rest] = entry.split('/');
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  // Not /0: a catch-all range trusts every hop, as `true` would (and proxy-addr refuses it).
  return /^\d{1,3}$/.test(prefix) && Number(prefix) >= 1 && Number(prefix) <= (family === 4 ? 32 : 128);
}

/**
 * Whose X-Forwarded-For to believe: `false` (the socket address is the client), or the addresses of
 * the proxies in front (IPs, CIDR ranges, or `loopback` / `linklocal` / `uniquelocal`;
 * comma-separated). The client is then the first address, walking back from the socket, that is not
 * one of them. Not `true`: that trusts every hop, so the left-most X-Forwarded-For entry — which the
 * client writes itself — would become its IP. Not a hop count: Fastify cannot check the immediate
 * peer with one and ignores the header.
 */
const trustProxy = z.string().transform((raw, ctx): false | string[] => {
  const value = raw.trim();
  if (value === 'false') return false;
  const proxies = listEntries(value);
  const bad = proxies.find((p) => !isProxyAddress(p));
  if (proxies.length === 0 || bad !== undefined) {
    const why = value === 'true' ? 'true would let clients choose their IP through X-Forwarded-For; ' : '';
    ctx.addIssue({ code: 'custom', message: `${why}give the proxies' addresses (e.g. 10.0.0.0/8 or uniquelocal), or false` });
    return z.NEVER;
  }
  return proxies;
});

/**
 * The longest terms version a user can accept (POST /v1/me/terms takes the version back): a longer
 * TERMS_VERSION would leave every user stuck at accept_terms, so it stops the start instead.
 */
export const TERMS_VERSION_MAX_LENGTH = 64;

/**
 * The earliest MAIL_GIVE_UP_SECONDS may give up an undelivered mail: when the longest-lived e-mail
 * link (activation, 7 days) has expired. Earlier, a mail whose link still works could be dropped.
 */
export const MAIL_GIVE_UP_MIN_SECONDS = 7 * 24 * 3600;

const DEFAULT_SUPPORT_CONTACT = 'the e-business team (ebusiness@webshop.localhost)';

/** A time zone Intl knows (IANA names such as Europe/Berlin, and UTC). */
function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** German mails name support as SUPPORT_CONTACT says, except the English default's German twin. */
const defaultGermanContact = (contact: string): string =>
  contact === DEFAULT_SUPPORT_CONTACT ? 'das E-Business-Team (ebusiness@webshop.localhost)' : contact;

/** A redis:// URL's path: none, or a database number (ioredis would send SELECT NaN for anything else). */
function redisDatabaseNamed(url: string): boolean {
  try {
    return /^(?:\/\d{0,5})?$/.test(new URL(url).pathname);
  } catch {
    return false;
  }
}

/** A URL without a user name or password (a URL that does not parse is another rule's). */
function withoutCredentials(url: string): boolean {
  try {
    const { username, password } = new URL(url);
    return !username && !password;
  } catch {
    return true;
  }
}

/** One sender with an address (nodemailer reads a display name alone as an empty sender: MAIL FROM:<>). */
function isOneSender(from: string): boolean {
  const senders = addressparser(from, { flatten: true });
  return senders.length === 1 && /^[^\s@]+@[^\s@]+$/.test(senders[0]!.address);
}

const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']),
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: int(0, 65535).default(3000),
  MAX_CONNECTIONS: int(1, 1_000_000).optional(),
  TRUST_PROXY: trustProxy.default(false),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DATABASE_URL: databaseUrl.optional(),
  DATABASE_POOL_MAX: int(1, 200).default(10),
  DATABASE_QUERY_TIMEOUT_MS: int(1000, 600_000).default(10_000),
  MIGRATE_ON_START: bool.default(true),
  DATA_DIR: z.string().min(1).default('./data'),
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, 'must be a redis:// URL')
    .refine(redisDatabaseNamed, 'the path names a database by its number (redis://host:6379/0) or nothing')
    .optional(),
  SMTP_URL: z.string().regex(/^smtps?:\/\//, 'must be an smtp:// or smtps:// URL').optional(),
  MAIL_FROM: z
    .string()
    .min(3)
    .refine(isOneSender, 'one sender with its address, such as "Webshop <no-reply@shop.example.com>"')
    .default('Webshop <no-reply@webshop.localhost>'),
  // The links in mails are built on it (APP_BASE_URL/activate?token=…): no query or fragment.
  APP_BASE_URL: z
    .url({ protocol: /^https?$/ })
    .refine((u) => !u.includes('?') && !u.includes('#'), 'must not have a query or fragment (links are built by appending /activate?token=…)')
    .refine(withoutCredentials, 'must not carry a user name or password (every mail link would show it)')
    .default('http://localhost:5173'),
  SHOP_NAME: z.string().min(1).default('Webshop'),
  SUPPORT_CONTACT: z.string().min(1).default(DEFAULT_SUPPORT_CONTACT),
  // How German mails name support; unset: SUPPORT_CONTACT (then best written without English words).
  SUPPORT_CONTACT_DE: z.string().min(1).optional(),
  DEFAULT_LANGUAGE: z.enum(LANGUAGES).default('en'),
  // The time zone of the times mails state (a link's expiry), with its name (MEZ, CEST, UTC…).
  MAIL_TIME_ZONE: z
    .string()
    .refine(isTimeZone, 'an IANA time zone such as Europe/Berlin or UTC')
    .default('Europe/Berlin'),
  TOTP_ISSUER: z.string().min(1).optional(),
  TERMS_VERSION: z
    .string()
    .min(1)
    .max(TERMS_VERSION_MAX_LENGTH)
    .regex(/^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/, 'printable ASCII without leading or trailing spaces (users send it back verbatim)')
    .default('2026-01'),
  // Unset: in development the origin of APP_BASE_URL (the frontend there may call the API from a
  // browser out of the box), elsewhere none.
  CORS_ORIGINS: corsOrigins.optional(),
  // Unset (development and tests only; production requires it): http://localhost:<PORT>.
  JWT_ISSUER: z.url().optional(),
  JWT_AUDIENCES: csv.pipe(z.array(z.string().min(1)).min(1)).default(['webshop', 'cso']),
  JWT_ALGORITHM: z.enum(['EdDSA', 'ES256']).default('EdDSA'),
  JWT_CLIENT_ID: z.string().trim().min(1).max(256).default('webshop'),
  ACCESS_TOKEN_TTL_SECONDS: int(60, 900).default(600),
  REFRESH_IDLE_TTL_SECONDS: int(300).default(12 * 3600),
  REFRESH_ABSOLUTE_TTL_SECONDS: int(3600).default(7 * 24 * 3600),
  REFRESH_REUSE_GRACE_SECONDS: int(0, 60).default(10),
  REFRESH_MAX_PER_SESSION: int(10, 10_000_000).optional(),
  LOGIN_CHALLENGE_TTL_SECONDS: int(30, 300).default(300),
  ENCRYPTION_KEYS: z.string().min(1).optional(),
  ENCRYPTION_KEY_CURRENT: z.string().min(1).optional(),
  SERVICE_CLIENTS: serviceClients.default([]),
  EVENT_FEED_CLIENTS: csv.default([]),
  EVENT_WEBHOOKS: eventWebhooks.default([]),
  EVENT_WEBHOOK_SECRETS: webhookSecrets.default([]),
  EVENT_WEBHOOK_WORKER_ENABLED: bool.default(true),
  ARGON2_MEMORY_KIB: int(1024).default(19456),
  ARGON2_TIME_COST: int(1).default(2),
  ARGON2_PARALLELISM: int(1, 16).default(1),
  // Default: defaultHashConcurrency (below).
  HASH_MAX_CONCURRENT: int(1, 64).optional(),
  HASH_MAX_QUEUED: int(0, 10000).default(64),
  // Nice value for libuv's pool threads, where argon2 runs (src/lib/threadpool-priority.ts); 0 = off.
  HASH_THREAD_NICE: int(0, 19).default(10),
  // Read by libuv itself; mirrored here so the server knows how many pool threads exist.
  UV_THREADPOOL_SIZE: int(1, 1024).default(4),
  METRICS_TOKEN: z.string().min(16).optional(),
  RATE_LIMIT_ENABLED: bool.default(true),
  RATE_LIMIT_GLOBAL_PER_MINUTE: int(0).default(1000),
  ADMIN_MAILS_PER_HOUR: int(1, 100_000).default(60),
  ADMIN_CHANGES_PER_HOUR: int(1, 100_000).default(120),
  REDIS_KEY_PREFIX: z.string().min(1).max(100).default('webshop-auth:'),
  LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: int(0).default(200),
  MAIL_WORKER_ENABLED: bool.default(true),
  MAIL_GIVE_UP_SECONDS: z.coerce
    .number()
    .int()
    .min(MAIL_GIVE_UP_MIN_SECONDS, `must be at least ${MAIL_GIVE_UP_MIN_SECONDS} (7 days: activation links live that long)`)
    .default(8 * 24 * 3600),
  RETENTION_DAYS: int(1, 3650).default(30),
  AUDIT_RETENTION_DAYS: int(1, 36500).optional(),
  RETENTION_SWEEP_INTERVAL_SECONDS: int(0, 7 * 24 * 3600).default(3600),
});

export type Env = z.input<typeof envSchema>;

export type Config = Readonly<{
  env: 'development' | 'production' | 'test';
  isProduction: boolean;
  host: string;
  port: number;
  /** Fastify's trustProxy: false, or the addresses of the proxies whose X-Forwarded-For is believed. */
  trustProxy: false | string[];
  logLevel: z.infer<typeof envSchema>['LOG_LEVEL'];
  databaseUrl: string | undefined;
  /** The listener's connection limit; null: below the open-file limit (http/connection-limit.ts). */
  maxConnections: number | null;
  databasePoolMax: number;
  /** A database round trip not answered within this is given up (503), the connection closed. */
  databaseQueryTimeoutMs: number;
  /** Apply pending migrations at start (false: refuse to start on an older schema; the CLI's `migrate` applies them). */
  migrateOnStart: boolean;
  dataDir: string;
  redisUrl: string | undefined;
  smtpUrl: string | undefined;
  mailFrom: string;
  appBaseUrl: string;
  shopName: string;
  supportContact: string;
  /** How the mails of each language name support (SUPPORT_CONTACT, SUPPORT_CONTACT_DE). */
  supportContactIn: Readonly<Record<Language, string>>;
  /** The language of the mails of users (and organisations) without one of their own. */
  defaultLanguage: Language;
  /** IANA time zone of the times mails state. */
  mailTimeZone: string;
  /** SUPPORT_CONTACT was set and SUPPORT_CONTACT_DE not: German mails use an English-written contact (startupWarnings). */
  germanContactFromEnglish: boolean;
  totpIssuer: string;
  termsVersion: string;
  corsOrigins: readonly string[];
  jwt: Readonly<{
    issuer: string;
    audiences: readonly string[];
    algorithm: 'EdDSA' | 'ES256';
    accessTtlSeconds: number;
    /** `client_id` of access tokens (RFC 9068 §2.2). */
    clientId: string;
  }>;
  refresh: Readonly<{ idleTtlSeconds: number; absoluteTtlSeconds: number; reuseGraceSeconds: number; maxPerSession: number }>;
  loginChallengeTtlSeconds: number;
  /** "kid:base64key,kid2:base64key"; undefined only outside production (dev keys are generated then). */
  encryptionKeys: string | undefined;
  encryptionKeyCurrent: string | undefined;
  /**
   * Introspection clients. `audiences`: the JWT_AUDIENCES whose tokens the client may see as active
   * (RFC 7662 §4: a token is active only for a resource server it may be used at); its own id
   * when its entry names none (`cso:<sha256>` sees the tokens for audience `cso`).
   */
  serviceClients: readonly ServiceClientConfig[];
  /** The SERVICE_CLIENTS ids that may read the event feed (GET /v1/events): every organisation's changes. */
  eventFeedClients: readonly string[];
  /** Where the event feed is pushed, each signed with its secrets (Standard Webhooks; webhook-delivery.ts). */
  eventWebhooks: readonly EventWebhookConfig[];
  /** Whether this instance delivers to them (any one instance at a time does; the others wait their turn). */
  eventWebhookWorkerEnabled: boolean;
  argon2: Readonly<{ memoryCost: number; timeCost: number; parallelism: number }>;
  hashQueue: Readonly<{ maxConcurrent: number; maxQueued: number; threadNice: number; threadpoolSize: number }>;
  metricsToken: string | undefined;
  rateLimitEnabled: boolean;
  /** Per-IP ceiling over all routes (requests per minute); 0 turns it off. */
  rateLimitGlobalPerMinute: number;
  /** Per signed-in administrator or support employee and hour (src/plugins/actor-limits.ts). */
  adminMailsPerHour: number;
  adminChangesPerHour: number;
  redisKeyPrefix: string;
  /** Shed load (503) when the mean event-loop delay exceeds this; 0 turns it off. */
  loadShedMaxEventLoopDelayMs: number;
  mailWorkerEnabled: boolean;
  /** Age at which an undelivered mail is given up (failed_at); never before every e-mail link expired. */
  mailGiveUpSeconds: number;
  /** Days ended records stay: ended sessions (with their refresh tokens), expired links and challenges, sent or given-up mail. */
  retentionDays: number;
  /** Audit rows older than this many days are deleted by the same sweep; null: kept forever. */
  auditRetentionDays: number | null;
  /** How often each instance deletes what is past retentionDays; 0 = never (run `purge-ended` from cron instead). */
  retentionSweepIntervalSeconds: number;
}>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** The audiences a SERVICE_CLIENTS entry names, or its id alone when it names none (the id must then be one of JWT_AUDIENCES). */
function clientAudiences(client: { id: string; audiences: string[] | null }): string[] {
  return client.audiences ?? [client.id];
}

export type EventWebhookConfig = Readonly<{ name: string; url: string; secrets: readonly string[] }>;

export type ServiceClientConfig = Readonly<{ id: string; secretSha256: string; audiences: readonly string[] }>;

/**
 * Hashes at once by default: one more than the cores, so a core never idles in the moment between
 * one hash finishing and the event loop starting the next (the hashing threads run at low priority,
 * HASH_THREAD_NICE, so the extra one takes CPU from nothing else; bench/README.md), but fewer than
 * the libuv pool threads, so token checks on the pool never wait behind hashes — and never fewer
 * than the cores.
 */
export function defaultHashConcurrency(cores: number, threadpoolSize: number): number {
  return Math.max(1, cores, Math.min(cores + 1, threadpoolSize - 1));
}

/** JWT_ISSUER, or (development and tests) this instance's own local address. */
const jwtIssuer = (e: { JWT_ISSUER?: string | undefined; PORT: number }): string => e.JWT_ISSUER ?? `http://localhost:${e.PORT}`;

/**
 * NODE_ENV when unset: production as soon as a real database is configured (a deployment that
 * forgot NODE_ENV gets the production checks, not development's defaults), development on the
 * embedded database (which is for development only). Keycloak's `start` and `start-dev` the same way.
 */
const impliedNodeEnv = (given: Record<string, string | undefined>) => (given.DATABASE_URL ? 'production' : 'development');

/** Parses the environment; throws ConfigError naming every bad variable. */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const implied = cleaned.NODE_ENV === undefined;
  if (implied) cleaned.NODE_ENV = impliedNodeEnv(cleaned);
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(env)'}: ${i.message}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  if (e.NODE_ENV === 'production') assertProductionSafe(e, cleaned, implied);
  const problems = crossFieldProblems(e);
  if (problems.length) throw new ConfigError(`Invalid configuration:\n  ${problems.join('\n  ')}`);
  return Object.freeze({
    env: e.NODE_ENV,
    isProduction: e.NODE_ENV === 'production',
    host: e.HOST,
    port: e.PORT,
    maxConnections: e.MAX_CONNECTIONS ?? null,
    trustProxy: e.TRUST_PROXY,
    logLevel: e.LOG_LEVEL,
    databaseUrl: e.DATABASE_URL,
    databasePoolMax: e.DATABASE_POOL_MAX,
    databaseQueryTimeoutMs: e.DATABASE_QUERY_TIMEOUT_MS,
    migrateOnStart: e.MIGRATE_ON_START,
    dataDir: e.DATA_DIR,
    redisUrl: e.REDIS_URL,
    smtpUrl: e.SMTP_URL,
    mailFrom: e.MAIL_FROM,
    appBaseUrl: e.APP_BASE_URL.replace(/\/+$/, ''),
    shopName: e.SHOP_NAME,
    supportContact: e.SUPPORT_CONTACT,
    supportContactIn: Object.freeze({ en: e.SUPPORT_CONTACT, de: e.SUPPORT_CONTACT_DE ?? defaultGermanContact(e.SUPPORT_CONTACT) }),
    defaultLanguage: e.DEFAULT_LANGUAGE,
    mailTimeZone: e.MAIL_TIME_ZONE,
    germanContactFromEnglish: e.SUPPORT_CONTACT !== DEFAULT_SUPPORT_CONTACT && e.SUPPORT_CONTACT_DE === undefined,
    totpIssuer: e.TOTP_ISSUER ?? e.SHOP_NAME,
    termsVersion: e.TERMS_VERSION,
    corsOrigins: Object.freeze(e.CORS_ORIGINS ?? (e.NODE_ENV === 'development' ? [new URL(e.APP_BASE_URL).origin] : [])),
    jwt: Object.freeze({
      issuer: jwtIssuer(e),
      audiences: Object.freeze(e.JWT_AUDIENCES),
      clientId: e.JWT_CLIENT_ID,
      algorithm: e.JWT_ALGORITHM,
      accessTtlSeconds: e.ACCESS_TOKEN_TTL_SECONDS,
    }),
    refresh: Object.freeze({
      idleTtlSeconds: e.REFRESH_IDLE_TTL_SECONDS,
      absoluteTtlSeconds: e.REFRESH_ABSOLUTE_TTL_SECONDS,
      reuseGraceSeconds: e.REFRESH_REUSE_GRACE_SECONDS,
      maxPerSession: e.REFRESH_MAX_PER_SESSION ?? defaultMaxRefreshes(e),
    }),
    loginChallengeTtlSeconds: e.LOGIN_CHALLENGE_TTL_SECONDS,
    encryptionKeys: e.ENCRYPTION_KEYS,
    encryptionKeyCurrent: e.ENCRYPTION_KEY_CURRENT,
    eventFeedClients: Object.freeze(e.EVENT_FEED_CLIENTS),
    eventWebhooks: Object.freeze(
      e.EVENT_WEBHOOKS.map((w) =>
        Object.freeze({ name: w.name, url: w.url, secrets: Object.freeze(e.EVENT_WEBHOOK_SECRETS.filter((s) => s.name === w.name).map((s) => s.secret)) }),
      ),
    ),
    eventWebhookWorkerEnabled: e.EVENT_WEBHOOK_WORKER_ENABLED,
    serviceClients: Object.freeze(
      e.SERVICE_CLIENTS.map((c) => Object.freeze({ id: c.id, secretSha256: c.secretSha256, audiences: Object.freeze(clientAudiences(c)) })),
    ),
    argon2: Object.freeze({ memoryCost: e.ARGON2_MEMORY_KIB, timeCost: e.ARGON2_TIME_COST, parallelism: e.ARGON2_PARALLELISM }),
    hashQueue: Object.freeze({
      maxConcurrent: e.HASH_MAX_CONCURRENT ?? defaultHashConcurrency(availableParallelism(), e.UV_THREADPOOL_SIZE),
      maxQueued: e.HASH_MAX_QUEUED,
      threadNice: e.HASH_THREAD_NICE,
      threadpoolSize: e.UV_THREADPOOL_SIZE,
    }),
    metricsToken: e.METRICS_TOKEN,
    rateLimitEnabled: e.RATE_LIMIT_ENABLED,
    rateLimitGlobalPerMinute: e.RATE_LIMIT_GLOBAL_PER_MINUTE,
    adminMailsPerHour: e.ADMIN_MAILS_PER_HOUR,
    adminChangesPerHour: e.ADMIN_CHANGES_PER_HOUR,
    redisKeyPrefix: e.REDIS_KEY_PREFIX,
    loadShedMaxEventLoopDelayMs: e.LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS,
    mailWorkerEnabled: e.MAIL_WORKER_ENABLED,
    mailGiveUpSeconds: e.MAIL_GIVE_UP_SECONDS,
    retentionDays: e.RETENTION_DAYS,
    auditRetentionDays: e.AUDIT_RETENTION_DAYS ?? null,
    retentionSweepIntervalSeconds: e.RETENTION_SWEEP_INTERVAL_SECONDS,
  });
}

function keyringProblem(spec: string, currentKeyId?: string): string | null {
  try {
    parseKeyring(spec, currentKeyId);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Refreshes a session needs to last its absolute lifetime at one refresh per access token. */
const refreshesForLifetime = (e: { REFRESH_ABSOLUTE_TTL_SECONDS: number; ACCESS_TOKEN_TTL_SECONDS: number }): number =>
  Math.ceil(e.REFRESH_ABSOLUTE_TTL_SECONDS / e.ACCESS_TOKEN_TTL_SECONDS);

/**
 * REFRESH_MAX_PER_SESSION when unset: 5,000, or twice the refreshes a session needs to last its
 * absolute lifetime at one per access token when that is more (short access tokens, long sessions).
 */
export const defaultMaxRefreshes = (e: { REFRESH_ABSOLUTE_TTL_SECONDS: number; ACCESS_TOKEN_TTL_SECONDS: number }): number =>
  Math.max(5000, 2 * refreshesForLifetime(e));

/** What one variable alone cannot tell: checked before anything (the database included) is touched. */
function crossFieldProblems(e: z.infer<typeof envSchema>): string[] {
  const problems: string[] = [];
  if (e.REFRESH_IDLE_TTL_SECONDS > e.REFRESH_ABSOLUTE_TTL_SECONDS) {
    problems.push('REFRESH_IDLE_TTL_SECONDS: must not exceed REFRESH_ABSOLUTE_TTL_SECONDS');
  }
  // Only a refresh moves the idle timeout: shorter than two access-token lifetimes, a user working
  // without pause would be signed out by it, the refresh at the token's expiry coming too late.
  if (e.REFRESH_IDLE_TTL_SECONDS < 2 * e.ACCESS_TOKEN_TTL_SECONDS) {
    problems.push('REFRESH_IDLE_TTL_SECONDS: must be at least twice ACCESS_TOKEN_TTL_SECONDS (only a refresh moves the idle timeout)');
  }
  // A cap below that would sign out a client that refreshes only when its access token expires.
  const needed = refreshesForLifetime(e);
  if (e.REFRESH_MAX_PER_SESSION !== undefined && e.REFRESH_MAX_PER_SESSION < needed) {
    problems.push(
      `REFRESH_MAX_PER_SESSION: must be at least REFRESH_ABSOLUTE_TTL_SECONDS / ACCESS_TOKEN_TTL_SECONDS (${needed}): a session refreshed once per access token would end before its absolute lifetime`,
    );
  }
  if (e.ENCRYPTION_KEYS) {
    // The keys alone first, then with the current key id, so each problem names its variable
    // (parseKeyring's messages never echo key material).
    const keysProblem = keyringProblem(e.ENCRYPTION_KEYS);
    if (keysProblem) problems.push(`ENCRYPTION_KEYS: ${keysProblem}`);
    else if (e.ENCRYPTION_KEY_CURRENT) {
      const currentProblem = keyringProblem(e.ENCRYPTION_KEYS, e.ENCRYPTION_KEY_CURRENT);
      if (currentProblem) problems.push(`ENCRYPTION_KEY_CURRENT: ${currentProblem}`);
    }
  } else if (e.ENCRYPTION_KEY_CURRENT) {
    problems.push('ENCRYPTION_KEY_CURRENT: names a key of ENCRYPTION_KEYS, which is not set');
  }
  // JWT_ISSUER is this service's own audience, the only one of the restricted tokens (selfAudience in
  // access-token.ts); listed among the others, it would make those tokens full ones for their verifiers.
  if (e.JWT_AUDIENCES.includes(jwtIssuer(e))) {
    problems.push('JWT_AUDIENCES: must not contain JWT_ISSUER (this service\'s own audience, reserved for restricted tokens)');
  }
  for (const client of e.SERVICE_CLIENTS) {
    if (!client.audiences && !e.JWT_AUDIENCES.includes(client.id)) {
      problems.push(`SERVICE_CLIENTS: "${client.id}" is none of JWT_AUDIENCES: name the audiences whose tokens it may introspect (${client.id}:<sha256>:<audience>|...)`);
    }
    const unknown = (client.audiences ?? []).filter((a) => !e.JWT_AUDIENCES.includes(a));
    if (unknown.length) problems.push(`SERVICE_CLIENTS: "${client.id}" names ${unknown.map((a) => `"${a}"`).join(', ')}, not in JWT_AUDIENCES`);
    // Two entries of one id are one client with two secrets (a rotation): it sees one set of audiences.
    const first = e.SERVICE_CLIENTS.find((c) => c.id === client.id)!;
    if (first !== client && [...clientAudiences(first)].sort().join('|') !== [...clientAudiences(client)].sort().join('|')) {
      problems.push(`SERVICE_CLIENTS: the entries of "${client.id}" name different audiences`);
    }
  }
  for (const id of e.EVENT_FEED_CLIENTS) {
    if (!e.SERVICE_CLIENTS.some((c) => c.id === id)) problems.push(`EVENT_FEED_CLIENTS: "${id}" is none of SERVICE_CLIENTS`);
  }
  for (const [index, webhook] of e.EVENT_WEBHOOKS.entries()) {
    if (e.EVENT_WEBHOOKS.findIndex((w) => w.name === webhook.name) !== index) problems.push(`EVENT_WEBHOOKS: "${webhook.name}" is named twice`);
    if (!e.EVENT_WEBHOOK_SECRETS.some((s) => s.name === webhook.name)) problems.push(`EVENT_WEBHOOK_SECRETS: none for "${webhook.name}"`);
  }
  for (const name of new Set(e.EVENT_WEBHOOK_SECRETS.map((s) => s.name))) {
    if (!e.EVENT_WEBHOOKS.some((w) => w.name === name)) problems.push(`EVENT_WEBHOOK_SECRETS: "${name}" is none of EVENT_WEBHOOKS`);
  }
  if (e.SMTP_URL) problems.push(...smtpTimeoutProblems(e.SMTP_URL));
  // Authenticator apps split the otpauth label on ':' (issuer:account), so the issuer must not hold one.
  if ((e.TOTP_ISSUER ?? e.SHOP_NAME).includes(':')) {
    problems.push(`${e.TOTP_ISSUER ? 'TOTP_ISSUER' : 'SHOP_NAME (the default TOTP_ISSUER)'}: must not contain ':'; set TOTP_ISSUER to a name without one`);
  }
  return problems;
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * nodemailer takes its timeouts from SMTP_URL's query string too. A send holds its claimed mail for
 * MAIL_LEASE_SECONDS (10 min, mail.worker.ts); one that outlasts it may be taken over and sent twice.
 * With each wait at most 60 s, a relay answering every command of a send just in time still lets go
 * within the lease; the defaults (mail.transport.ts) are 10–30 s.
 */
const SMTP_TIMEOUT_MAX_MS = 60_000;

function smtpTimeoutProblems(smtpUrl: string): string[] {
  let url: URL;
  try {
    url = new URL(smtpUrl);
  } catch {
    return []; // production names it (smtpTransportProblems)
  }
  // A name given twice reaches nodemailer as an array (not a number): refused like any other non-number.
  return ['connectionTimeout', 'greetingTimeout', 'socketTimeout', 'dnsTimeout'].flatMap((name) => {
    const values = url.searchParams.getAll(name);
    if (values.length === 0 || (values.length === 1 && /^\d+$/.test(values[0]!) && Number(values[0]) <= SMTP_TIMEOUT_MAX_MS)) return [];
    return [`SMTP_URL: ${name} must be a number of milliseconds up to ${SMTP_TIMEOUT_MAX_MS} (a send must let go of its mail long before the 10-minute lease ends)`];
  });
}

/**
 * Mails carry live links: in production they travel encrypted, or the operator says otherwise.
 * smtp:// to another host must state `requireTLS` (true: STARTTLS or no mail; false: a deliberate
 * plain hop), since nodemailer otherwise sends in clear text when STARTTLS is not offered or is
 * stripped on the way; and the server's certificate is always checked.
 */
function smtpTransportProblems(smtpUrl: string): string[] {
  let url: URL;
  try {
    url = new URL(smtpUrl);
  } catch {
    return [`SMTP_URL: ${UNPARSABLE_URL}`];
  }
  const problems: string[] = [];
  const requireTls = url.searchParams.get('requireTLS');
  if (url.protocol === 'smtp:' && !LOOPBACK_HOSTS.has(url.hostname) && requireTls !== 'true' && requireTls !== 'false') {
    problems.push('SMTP_URL: smtp:// to another host may send the links in clear text: use smtps://, add ?requireTLS=true (STARTTLS), or state ?requireTLS=false for a trusted plain hop');
  }
  if (url.searchParams.get('tls.rejectUnauthorized') === 'false') {
    problems.push("SMTP_URL: tls.rejectUnauthorized=false is refused in production (the relay's certificate must be checked)");
  }
  return problems;
}

/** Words of example values ("changeme", "a-long-random-string-…") that a generated token does not contain. */
const PLACEHOLDER_WORDS = ['changeme', 'change-me', 'change_me', 'placeholder', 'example', 'random-string', 'password', 'secret'];
const isPlaceholder = (token: string): boolean => {
  const lower = token.toLowerCase();
  return PLACEHOLDER_WORDS.some((word) => lower.includes(word)) || commonPasswords().has(lower);
};

/**
 * Secrets no one generated at random: a placeholder token ("aaaa…", "changeme…"), an encryption key
 * of few distinct bytes (all zeros; a random 32-byte key has about 30), a webhook secret of few
 * distinct bytes or of typed text, a service client whose secret
 * is empty or a common password (the same list the password policy refuses). Heuristics that a
 * random secret passes (short of odds like one in a million); they catch what was typed instead of
 * generated.
 */
function weakSecretProblems(e: z.infer<typeof envSchema>): string[] {
  const problems: string[] = [];
  // A quarter of its length, at most 8: a random 16-character hex token (16 symbols) has under 4
  // different characters about once in 10^6, "aaaa…" or "abcabc…" always.
  const tokenVariety = e.METRICS_TOKEN ? Math.min(8, Math.ceil(e.METRICS_TOKEN.length / 4)) : 0;
  if (e.METRICS_TOKEN && new Set(e.METRICS_TOKEN).size < tokenVariety) {
    problems.push(`METRICS_TOKEN: not a random token (fewer than ${tokenVariety} different characters); generate one, e.g. \`openssl rand -base64 32\``);
  } else if (e.METRICS_TOKEN && isPlaceholder(e.METRICS_TOKEN)) {
    problems.push('METRICS_TOKEN: a placeholder or a common password, not a random token; generate one, e.g. `openssl rand -base64 32`');
  }
  if (e.ENCRYPTION_KEYS) {
    let keys: ReadonlyMap<string, Buffer> = new Map();
    try {
      keys = parseKeyring(e.ENCRYPTION_KEYS).keys;
    } catch {
      // Reported by crossFieldProblems.
    }
    for (const [id, key] of keys) {
      const distinct = new Set(key).size;
      if (distinct < 16) {
        problems.push(`ENCRYPTION_KEYS: key "${id}" is not random (${distinct} different byte values); generate one with \`npm run cli -- generate-encryption-key\``);
      }
    }
  }
  // A receiver deletes its copy of a user on a signed user.erased: whoever guesses the secret can
  // forge that. Random bytes are rarely all printable ASCII (2^-24 for 24 bytes), typed text always.
  for (const { name, secret } of e.EVENT_WEBHOOK_SECRETS) {
    const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
    if (new Set(key).size < 16 || key.every((byte) => byte >= 0x20 && byte < 0x7f)) {
      problems.push(`EVENT_WEBHOOK_SECRETS: a secret of "${name}" is not random bytes (typed text, or few different byte values); generate one with \`npm run cli -- generate-webhook-secret\``);
    }
  }
  if (e.SERVICE_CLIENTS.length > 0) {
    const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
    const guessable = new Set(['', ...commonPasswords()].map(sha256));
    for (const client of e.SERVICE_CLIENTS) {
      if (guessable.has(client.secretSha256)) {
        problems.push(`SERVICE_CLIENTS: the secret of "${client.id}" is empty or a common password; generate one, e.g. \`openssl rand -base64 32\``);
      }
    }
  }
  return problems;
}

/**
 * The database connection carries every password hash, sealed secret and session: to another host
 * it is encrypted, or the operator says it need not be, as for SMTP_URL. Read as pg reads it
 * (pg-connection-string: a `host=` parameter or a %2F-encoded socket path wins over the URL's host;
 * PGHOST and PGSSLMODE fill in what the URL leaves out); `sslmode` verify-full / require: TLS with
 * the certificate checked, disable: a stated plain hop. A Unix socket or a loopback address is local.
 */
function databaseTransportProblems(databaseUrl: string, env: Record<string, unknown>): string[] {
  let parsed: ReturnType<typeof parseConnectionString>;
  try {
    parsed = parseConnectionString(databaseUrl);
  } catch {
    return []; // reported by the schema
  }
  const host = parsed.host || (typeof env.PGHOST === 'string' ? env.PGHOST : '') || 'localhost';
  const local = host.startsWith('/') || LOOPBACK_HOSTS.has(host) || host === '::1';
  const stated = parsed.ssl !== undefined || (typeof env.PGSSLMODE === 'string' && env.PGSSLMODE !== '');
  if (local || stated) return [];
  return ['DATABASE_URL: to another host without sslmode may travel in clear text: add ?sslmode=verify-full, or state ?sslmode=disable for a trusted private network'];
}

/** Below OWASP's argon2id minimum (m=19456 KiB, t=2), which production requires. */
const belowProductionArgon2 = (a: { memoryCost: number; timeCost: number }) => a.memoryCost < 19456 || a.timeCost < 2;

/** Production refuses to start on development defaults or weak secrets. */
function assertProductionSafe(e: z.infer<typeof envSchema>, given: Record<string, unknown>, implied: boolean): void {
  const problems: string[] = [];
  if (!e.DATABASE_URL) problems.push('DATABASE_URL: required in production (the embedded database is for development only)');
  else problems.push(...databaseTransportProblems(e.DATABASE_URL, given));
  if (!e.SMTP_URL) problems.push('SMTP_URL: required in production (without it mail is only written to the log)');
  else problems.push(...smtpTransportProblems(e.SMTP_URL));
  if (!e.METRICS_TOKEN) problems.push('METRICS_TOKEN: required in production (/metrics must not be public)');
  if (!e.ENCRYPTION_KEYS) problems.push('ENCRYPTION_KEYS: required in production (generate one with `npm run cli -- generate-encryption-key`)');
  if (!given.APP_BASE_URL) {
    problems.push('APP_BASE_URL: must be set to the public frontend URL in production');
  }
  if (new URL(e.APP_BASE_URL).protocol !== 'https:') {
    problems.push('APP_BASE_URL: must use https in production (its links carry live tokens)');
  }
  if (belowProductionArgon2({ memoryCost: e.ARGON2_MEMORY_KIB, timeCost: e.ARGON2_TIME_COST })) {
    problems.push('ARGON2_MEMORY_KIB/ARGON2_TIME_COST: below the minimum of m=19456 KiB, t=2');
  }
  if (!given.JWT_ISSUER) problems.push('JWT_ISSUER: must be set in production');
  else if (new URL(e.JWT_ISSUER!).protocol !== 'https:') {
    problems.push("JWT_ISSUER: must use https in production (the tokens' iss, which resource servers trust)");
  }
  problems.push(...weakSecretProblems(e));
  if (problems.length) {
    const why = implied ? ' (NODE_ENV is unset and DATABASE_URL is set: production; NODE_ENV=development for a development server)' : '';
    throw new ConfigError(`Invalid configuration for production${why}:\n  ${problems.join('\n  ')}`);
  }
}

/** What the configuration allows but is likely a mistake, for the start log. */
export function startupWarnings(config: Config): string[] {
  const warnings: string[] = [];
  if (config.germanContactFromEnglish) {
    warnings.push(
      `SUPPORT_CONTACT_DE is unset: German mails name support as SUPPORT_CONTACT does ("${config.supportContact}", after "wenden Sie sich an"); ` +
        'set SUPPORT_CONTACT_DE unless that reads well in German',
    );
  }
  for (const webhook of config.eventWebhooks) {
    const url = new URL(webhook.url);
    if (url.protocol === 'http:' && !LOOPBACK_HOSTS.has(url.hostname)) {
      warnings.push(`EVENT_WEBHOOKS: "${webhook.name}" is plain http to ${url.host}: its events (ids and types) travel unencrypted; the signature still proves them ours`);
    }
  }
  return warnings;
}

/**
 * The loud warning for a non-production mode on a real database (a staging environment named
 * "test", a forgotten NODE_ENV=development): what production would have refused, so nobody takes
 * it for a hardened deployment. Null in production and on the embedded database (which says so).
 */
export function developmentModeWarning(config: Config): string | null {
  if (config.isProduction || !config.databaseUrl) return null;
  const relaxed = [
    ...(config.metricsToken ? [] : ['/metrics answers without a token']),
    ...(config.smtpUrl ? [] : ['mail, with its live links, goes to the log']),
    ...(config.encryptionKeys ? [] : [`development encryption keys are kept in ${config.dataDir}`]),
    ...(belowProductionArgon2(config.argon2) ? ['passwords are hashed below the production argon2 parameters'] : []),
  ];
  return (
    `!!! NODE_ENV=${config.env} on the database of DATABASE_URL: production checks are off` +
    (relaxed.length ? ` (${relaxed.join('; ')})` : '') +
    '. Set NODE_ENV=production for anything real. !!!'
  );
}
