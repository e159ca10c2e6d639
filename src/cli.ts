import { pino } from 'pino';
import { ConfigError, loadConfig } from './config.js';
import { openRuntime } from './runtime.js';
import { generateKey } from './lib/secret-box.js';

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
    async run() {
      const runtime = await openRuntime(config(), log, { migrate: true });
      await runtime.close();
      return 0;
    },
  },
  'generate-encryption-key': {
    summary: 'print a new random 256-bit key for ENCRYPTION_KEYS (as <id>:<base64>)',
    usage: 'generate-encryption-key [--id <key id>]',
    async run(args) {
      const id = args.get('id') ?? `k${new Date().toISOString().slice(0, 10).replaceAll('-', '')}`;
      process.stdout.write(`${id}:${generateKey()}\n`);
      return 0;
    },
  },
};

function config() {
  return loadConfig(process.env);
}

function parseArgs(argv: string[]): Map<string, string> {
  const args = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new UsageError(`unexpected argument "${a}"`);
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) args.set(a.slice(2), 'true');
    else {
      args.set(a.slice(2), next);
      i++;
    }
  }
  return args;
}

class UsageError extends Error {}

function usage(): string {
  const lines = Object.entries(commands).map(([name, c]) => `  ${c.usage.padEnd(60)} ${c.summary}`);
  return `usage: npm run cli -- <command> [options]\n\ncommands:\n${lines.join('\n')}\n`;
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
