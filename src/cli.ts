import { pino } from 'pino';
import { ConfigError, loadConfig } from './config.js';
import { openRuntime, type Runtime } from './runtime.js';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { generateKey, KEY_ID_PATTERN } from './lib/secret-box.js';
import { systemClock } from './lib/clock.js';
import { rotateSigningKey } from './modules/sessions/signing-keys.js';
import { resealSecrets } from './modules/mfa/key-rotation.js';
import { runningInstances, type RunningInstance } from './modules/instances/instance-registry.js';
import { poolSql } from './db/sql.js';
import { purgeEnded } from './modules/retention/retention.js';
import { webhookStates } from './modules/events/webhook-delivery.js';
import { AppError } from './errors.js';
import type { Config } from './config.js';
import type { Db } from './db/client.js';
import type { Clock } from './lib/clock.js';
import type { Keyring } from './lib/secret-box.js';
import { createOrganizationFromCli, createSupportUser } from './modules/support/bootstrap.service.js';
import {
  blockSupportUser,
  eraseSupportUser,
  listSupportUsers,
  resendSupportActivation,
  resetSupportUserMfa,
  unblockSupportUser,
  withdrawSupportInvitation,
} from './modules/support/support-staff.service.js';
import { cliOrigin, OperatorReasonSchema, type CliOrigin } from './modules/support/cli-origin.js';
import { CreateOrganizationBody, CustomerNumberSchema } from './modules/support/support.schemas.js';
import { EmailSchema, PersonNameSchema } from './modules/organization/organization.schemas.js';
import { LanguageSchema } from './lib/languages.js';

/**
 * Operator commands: `npm run cli -- <command> [options]`.
 * Exit codes: 0 success, 1 failure, 2 usage error, 78 bad configuration.
 */
type Command = { summary: string; usage: string; run(args: Map<string, string>): Promise<number> };

const log = pino({ level: 'info' }, pino.destination(2));

const commands: Record<string, Command> = {
  migrate: {
    summary: 'apply pending database migrations',
    usage: 'migrate',
    async run(args) {
      onlyOptions(args, []);
      const runtime = await openRuntime(config(), log, { migrate: true });
      await runtime.close();
      return 0;
    },
  },
  'rotate-encryption-key': {
    summary: 're-encrypt every TOTP secret, signing key and queued mail body under the current ENCRYPTION_KEYS key (then the old key can go)',
    usage: 'rotate-encryption-key [--force] [--reason <text>]',
    async run(args) {
      const origin = operatorChange(args, ['force']);
      // Refused while a running server does not seal under the key (instance-registry.ts); --force: re-seal anyway.
      const force = flag(args, 'force');
      const runtime = await openRuntime(config(), log, { migrate: false });
      try {
        const sql = poolSql(runtime.database.pool);
        const current = runtime.keyring.currentKeyId;
        const running = await runningInstances(sql);
        // Those that do not hold the key (they could not open what is sealed under it), and those that
        // hold it but still seal under the old one (ENCRYPTION_KEY_CURRENT: secrets the old key's removal would make unreadable).
        const lagging = running.filter((i) => i.currentEncryptionKeyId !== current);
        if (lagging.length > 0 && !force) {
          process.stderr.write(
            `refused: ${lagging.length} running server instance(s) do not seal under key ${current}:\n${lagging.map((i) => describeInstance(i, current)).join('\n')}\n` +
              'Give every instance the key as its current one and restart them first (docs/operations.md, "Rotating the encryption key", ' +
              'steps 1 and 2), or run with --force.\n',
          );
          return 1;
        }
        process.stderr.write(
          lagging.length > 0
            ? `--force: sealing under ${current}, which ${lagging.length} running instance(s) do not seal under\n`
            : `${running.length} running server instance(s) seal under key ${current}\n`,
        );
        const report = await resealSecrets(runtime.database.db, runtime.keyring, { clock: systemClock, meta: origin.meta, ...(force ? { forced: lagging.length } : {}) });
        process.stdout.write(`${JSON.stringify(report)}\n`);
        return report.failures.length > 0 ? 1 : 0;
      } finally {
        await runtime.close();
      }
    },
  },
  'rotate-signing-key': {
    summary: 'add a new JWT signing key; old public keys stay in the JWKS until their tokens expired (--immediate, for a leaked key: signs as soon as each instance notices, within 5 s, and deletes every older key)',
    usage: 'rotate-signing-key [--immediate] [--reason <text>]',
    async run(args) {
      const origin = operatorChange(args, ['immediate']);
      // A flag: `--immediate yes` is a usage error, never a quiet staged rotation of a leaked key.
      const immediate = flag(args, 'immediate');
      const cfg = config();
      const runtime = await openRuntime(cfg, log, { migrate: false });
      try {
        const deps = { db: runtime.database.db, keyring: runtime.keyring, clock: systemClock, config: cfg };
        // --immediate (a leaked key): the new key signs once each instance noticed it (its 5-s key
        // check) and every older key is deleted, so nothing signed with them verifies any more; default: published first, signs after PREPUBLISH_SECONDS (150 s).
        const result = await rotateSigningKey(deps, { immediate, meta: origin.meta });
        process.stdout.write(`${JSON.stringify(result)}\n`);
        return 0;
      } finally {
        await runtime.close();
      }
    },
  },
  'purge-ended': {
    summary:
      'delete what ended more than RETENTION_DAYS ago: ended sessions with their refresh tokens, expired links and challenges, sent or given-up mail (the server also does it every RETENTION_SWEEP_INTERVAL_SECONDS); prints the counts',
    usage: 'purge-ended',
    async run(args) {
      onlyOptions(args, []);
      return withDatabase(async (ctx) => {
        process.stdout.write(`${JSON.stringify(await purgeEnded(ctx))}\n`);
      });
    },
  },
  'create-support-user': {
    summary: 'create a SUPPORT user (invited) and print the activation link to stdout',
    usage: 'create-support-user --email <e-mail> --name <full name> [--language en|de] [--reason <text>]',
    async run(args) {
      const origin = operatorChange(args, ['email', 'name', 'language']);
      const email = option(args, 'email', EmailSchema);
      const name = option(args, 'name', PersonNameSchema);
      const language = optionalOption(args, 'language', LanguageSchema);
      return withDatabase(async (ctx) => {
        const created = await createSupportUser(ctx, { email, name, language }, origin);
        process.stderr.write(`created SUPPORT user ${email} (${created.userId}); the link is valid until ${created.expiresAt.toISOString()} and was also mailed\n`);
        process.stdout.write(`${created.activationLink}\n`);
      }, { mails: true });
    },
  },
  'list-support-users': {
    summary: 'print every SUPPORT user, one JSON object per line (status, MFA, last login)',
    usage: 'list-support-users',
    async run(args) {
      onlyOptions(args, []);
      return withDatabase(async (ctx) => {
        for (const user of await listSupportUsers(ctx)) process.stdout.write(`${JSON.stringify(user)}\n`);
      });
    },
  },
  'resend-support-activation': {
    summary: 'a new activation link for an INVITED SUPPORT user (older links stop working); printed to stdout and mailed',
    usage: 'resend-support-activation --email <e-mail> [--reason <text>]',
    async run(args) {
      const { email, origin } = supportChange(args, []);
      return withDatabase(async (ctx) => {
        const sent = await resendSupportActivation(ctx, email, origin);
        process.stderr.write(`new activation link for SUPPORT user ${sent.email} (${sent.userId}); valid until ${sent.expiresAt.toISOString()} and also mailed\n`);
        process.stdout.write(`${sent.link}\n`);
      }, { mails: true });
    },
  },
  'withdraw-support-invitation': {
    summary: 'delete a SUPPORT user who never activated (e.g. a mistyped address), so the address is free; an unsent activation mail is not sent',
    usage: 'withdraw-support-invitation --email <e-mail> [--reason <text>]',
    async run(args) {
      const { email, origin } = supportChange(args, []);
      return withDatabase(async (ctx) => {
        const withdrawn = await withdrawSupportInvitation(ctx, email, origin);
        process.stderr.write(`withdrew the invitation of SUPPORT user ${withdrawn.email} (${withdrawn.userId}); ${withdrawn.mailsCancelled} unsent mail(s) removed\n`);
      });
    },
  },
  'erase-support-user': {
    summary: 'erase a former SUPPORT employee (GDPR), blocked before: the account and what it holds are deleted for good; the audit log keeps its rows',
    usage: 'erase-support-user --email <e-mail> [--reason <text>]',
    async run(args) {
      const { email, origin } = supportChange(args, []);
      return withDatabase(async (ctx) => {
        const erased = await eraseSupportUser(ctx, email, origin);
        process.stderr.write(`erased SUPPORT user ${erased.userId}\n`);
      });
    },
  },
  'block-support-user': {
    summary: 'block a SUPPORT user: sessions end at once, the user is told by mail (the last ACTIVE one only with --allow-last)',
    usage: 'block-support-user --email <e-mail> [--allow-last] [--reason <text>]',
    async run(args) {
      const { email, origin } = supportChange(args, ['allow-last']);
      const allowLast = flag(args, 'allow-last');
      return withDatabase(async (ctx) => {
        const blocked = await blockSupportUser(ctx, email, { allowLast }, origin);
        process.stderr.write(`blocked SUPPORT user ${blocked.email} (${blocked.userId}); ${blocked.sessionsRevoked} session(s) ended; notified by mail\n`);
        // Links this user sent that no longer work: the holders need a new one (their administrator, or support).
        for (const link of blocked.linksWithdrawn) process.stderr.write(`withdrawn: ${link.purpose} link of ${link.email} (${link.userId})\n`);
      }, { mails: true });
    },
  },
  'unblock-support-user': {
    summary: 'unblock a SUPPORT user (back to ACTIVE, or INVITED with a new activation link, printed to stdout and mailed, if never activated); notified by mail',
    usage: 'unblock-support-user --email <e-mail> [--reason <text>]',
    async run(args) {
      const { email, origin } = supportChange(args, []);
      return withDatabase(async (ctx) => {
        const unblocked = await unblockSupportUser(ctx, email, origin);
        process.stderr.write(`unblocked SUPPORT user ${unblocked.email} (${unblocked.userId}); status ${unblocked.status}; notified by mail\n`);
        if (unblocked.activation) {
          process.stderr.write(`new activation link, valid until ${unblocked.activation.expiresAt.toISOString()} and also mailed\n`);
          process.stdout.write(`${unblocked.activation.link}\n`);
        }
      }, { mails: true });
    },
  },
  'reset-support-mfa': {
    summary: "remove a SUPPORT user's authenticator and recovery codes and end their sessions; the next login enrols anew",
    usage: 'reset-support-mfa --email <e-mail> [--reason <text>]',
    async run(args) {
      const { email, origin } = supportChange(args, []);
      return withDatabase(async (ctx) => {
        const reset = await resetSupportUserMfa(ctx, email, origin);
        process.stderr.write(`reset the MFA of SUPPORT user ${reset.email} (${reset.userId}); ${reset.sessionsRevoked} session(s) ended; notified by mail\n`);
      }, { mails: true });
    },
  },
  'create-organization': {
    summary: 'create an organisation with its first administrator (invited); print the activation link to stdout',
    usage:
      'create-organization --customer-number <no> --name <name> --admin-email <e-mail> --admin-name <full name> [--language en|de] [--reason <text>]',
    async run(args) {
      const origin = operatorChange(args, ['customer-number', 'name', 'admin-email', 'admin-name', 'language']);
      const input = {
        customerNumber: option(args, 'customer-number', CustomerNumberSchema),
        // The organisation's name as the API takes it: it may name a domain ("shop24.de GmbH"), a person's may not.
        name: option(args, 'name', CreateOrganizationBody.shape.name),
        language: optionalOption(args, 'language', LanguageSchema),
        administrator: { email: option(args, 'admin-email', EmailSchema), name: option(args, 'admin-name', PersonNameSchema) },
      };
      return withDatabase(async (ctx) => {
        const created = await createOrganizationFromCli(ctx, input, origin);
        process.stderr.write(
          `created organisation ${input.customerNumber} (${created.organizationId}) with administrator ${input.administrator.email} (${created.administratorId})\n`,
        );
        process.stdout.write(`${created.activationLink}\n`);
      }, { mails: true });
    },
  },
  'generate-encryption-key': {
    summary: 'print a new random 256-bit key for ENCRYPTION_KEYS (as <id>:<base64>)',
    usage: 'generate-encryption-key [--id <key id>]',
    async run(args) {
      onlyOptions(args, ['id']);
      // The default id is unique (date + random), so keys generated on one day can sit side by side in ENCRYPTION_KEYS.
      const id = optionalOption(args, 'id', KeyIdSchema) ?? `k${new Date().toISOString().slice(0, 10).replaceAll('-', '')}-${randomBytes(3).toString('hex')}`;
      process.stdout.write(`${id}:${generateKey()}\n`);
      return 0;
    },
  },
  'generate-webhook-secret': {
    summary: 'print a new random secret for EVENT_WEBHOOK_SECRETS (whsec_ and 32 bytes in base64; give the receiver the same)',
    usage: 'generate-webhook-secret',
    async run(args) {
      onlyOptions(args, []);
      process.stdout.write(`whsec_${randomBytes(32).toString('base64')}\n`);
      return 0;
    },
  },
  'list-webhooks': {
    summary: 'print the delivery state of each EVENT_WEBHOOKS entry, one JSON object per line (events waiting, failures in a row, next attempt, last error, last delivery)',
    usage: 'list-webhooks',
    async run(args) {
      onlyOptions(args, []);
      const cfg = config();
      const runtime = await openRuntime(cfg, log, { migrate: false });
      try {
        if (cfg.eventWebhooks.length === 0) process.stderr.write('no EVENT_WEBHOOKS in this environment: give the CLI the servers\' EVENT_WEBHOOKS and EVENT_WEBHOOK_SECRETS\n');
        for (const state of await webhookStates(runtime.database.pool, cfg.eventWebhooks)) process.stdout.write(`${JSON.stringify(state)}\n`);
        return 0;
      } finally {
        await runtime.close();
      }
    },
  },
};

/** What ENCRYPTION_KEYS accepts as a key id (parseKeyring). */
const KeyIdSchema = z.string().regex(KEY_ID_PATTERN, 'a key id is 1-64 of A-Z a-z 0-9 . _ -');

type Schema<T> = { safeParse(v: unknown): { success: true; data: T } | { success: false; error: { issues: { message: string }[] } } };

/** A required --name value, validated like the API validates it; a bad value is a usage error (exit 2). */
function option<T>(args: Map<string, string>, name: string, schema: Schema<T>): T {
  const value = optionalOption(args, name, schema);
  if (value === undefined) throw new UsageError(`--${name} is required`);
  return value;
}

/** An optional --name value: undefined when not given; given, it is validated as option() does. */
function optionalOption<T>(args: Map<string, string>, name: string, schema: Schema<T>): T | undefined {
  const raw = args.get(name);
  if (raw === undefined) return undefined;
  if (raw === 'true') throw new UsageError(`--${name} needs a value`);
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new UsageError(`--${name}: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  return parsed.data;
}

/** Refuses options the command does not know: a mistyped --allow-last must not be ignored. */
function onlyOptions(args: Map<string, string>, known: string[]): void {
  for (const name of args.keys()) if (!known.includes(name)) throw new UsageError(`unknown option --${name}`);
}

/** An option without a value. */
function flag(args: Map<string, string>, name: string): boolean {
  const value = args.get(name);
  if (value !== undefined && value !== 'true') throw new UsageError(`--${name} takes no value`);
  return value === 'true';
}

/**
 * A command that changes accounts or keys: refuses options it does not know (each knows --reason) and
 * returns the origin of its audit rows: the operator who runs it and why (--reason).
 */
function operatorChange(args: Map<string, string>, known: string[]): CliOrigin {
  onlyOptions(args, [...known, 'reason']);
  return cliOrigin({ reason: optionalOption(args, 'reason', OperatorReasonSchema) });
}

/** The --email of the support user a command changes (SUPPORT accounts are managed here only; everyone else through the API). */
function supportChange(args: Map<string, string>, otherOptions: string[]): { email: string; origin: CliOrigin } {
  const origin = operatorChange(args, ['email', ...otherOptions]);
  return { email: option(args, 'email', EmailSchema), origin };
}

const describeInstance = (i: RunningInstance, key: string) =>
  `  ${i.hostname} (pid ${i.pid}, started ${i.startedAt.toISOString()}, last seen ${i.seenAt.toISOString()}): ` +
  (i.encryptionKeyIds.includes(key)
    ? `holds ${key} but seals under ${i.currentEncryptionKeyId} (ENCRYPTION_KEY_CURRENT)`
    : `does not hold ${key} (holds ${i.encryptionKeyIds.join(', ')})`);

/**
 * Whether a running server can open the mail this command queues, sealed under the CLI's current key
 * (an instance sends only mails sealed under a key it holds): without one, the mail would wait until
 * it is given up, so the command is refused (exit 78) before it writes anything. With no running
 * instance registered there is nothing to compare with. (rotate-signing-key seals the new signing
 * key under the key the current one is sealed under, which the servers hold: signing-keys.ts.)
 */
async function serversHoldKey(runtime: Runtime): Promise<boolean> {
  const current = runtime.keyring.currentKeyId;
  const running = await runningInstances(poolSql(runtime.database.pool));
  if (running.length === 0 || running.some((i) => i.encryptionKeyIds.includes(current))) return true;
  process.stderr.write(
    `refused: none of the ${running.length} running server instance(s) holds encryption key ${current}, under which this command seals its mail:\n` +
      `${running.map((i) => describeInstance(i, current)).join('\n')}\nRun it with the servers' ENCRYPTION_KEYS.\n`,
  );
  return false;
}

/**
 * Runs a command against the database; an expected refusal (e.g. e-mail taken) exits 1 with its code.
 * `mails`: the command queues a mail (serversHoldKey).
 */
async function withDatabase(fn: (ctx: { db: Db; clock: Clock; config: Config; keyring: Keyring }) => Promise<void>, options: { mails?: boolean } = {}): Promise<number> {
  const cfg = config();
  const runtime = await openRuntime(cfg, log, { migrate: false });
  try {
    if (options.mails && !(await serversHoldKey(runtime))) return 78;
    await fn({ db: runtime.database.db, clock: systemClock, config: cfg, keyring: runtime.keyring });
    return 0;
  } catch (err) {
    if (err instanceof AppError) {
      process.stderr.write(`refused: ${err.code} (${err.title})\n`);
      return 1;
    }
    throw err;
  } finally {
    await runtime.close();
  }
}

function config() {
  return loadConfig(process.env);
}

function parseArgs(argv: string[]): Map<string, string> {
  const args = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new UsageError(`unexpected argument "${a}"`);
    const next = argv[i + 1];
    // Given twice, which one was meant? (`--email a --email b` must not act on b alone.)
    if (args.has(a.slice(2))) throw new UsageError(`${a} is given twice`);
    if (next === undefined || next.startsWith('--')) args.set(a.slice(2), 'true');
    else {
      args.set(a.slice(2), next);
      i++;
    }
  }
  return args;
}

class UsageError extends Error {}

const REASON_HELP = `--reason <text>: why you run a command that changes accounts (e.g. a ticket number; one line, up to 500 characters).
  Its audit rows record it with the operator: SUDO_USER when run through sudo, else the OS account.
`;

function usage(): string {
  const lines = Object.entries(commands).map(([name, c]) => `  ${c.usage.padEnd(60)} ${c.summary}`);
  return `usage: npm run cli -- <command> [options]\n\ncommands:\n${lines.join('\n')}\n\n${REASON_HELP}`;
}

export function registerCommand(name: string, command: Command): void {
  commands[name] = command;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === 'help' || name === '--help') {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${command.summary}\n\nusage: npm run cli -- ${command.usage}\n\n${REASON_HELP}`);
    return 0;
  }
  try {
    return await command.run(parseArgs(rest));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\nusage: npm run cli -- ${command.usage}\n`);
      return 2;
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return 78;
    }
    process.stderr.write(`${name} failed: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
