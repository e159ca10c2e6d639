import { execFile, execFileSync } from 'node:child_process';
import { chown, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from '../../scripts/free-port.js';

/**
 * A PostgreSQL cluster of the test's own: initdb into a temp folder, its own free port, started and
 * stopped at will (fault tests stop it under load). Never the machine's shared server on 5432.
 *
 * PostgreSQL refuses to run as root, and CI runs the tests as root: then every cluster command runs
 * as the `postgres` user (runuser), and the folder belongs to that user. As any other user the
 * commands run directly. Nothing is skipped: missing binaries fail the test.
 */

export const PG_BIN = process.env.TEST_PG_BIN ?? '/usr/lib/postgresql/15/bin';

type TestLike = { teardown(fn: () => unknown): void };

export type PrivatePostgres = {
  port: number;
  /** The cluster's data directory (owned by the postgres user when the tests run as root). */
  dataDir: string;
  /** Runs a PostgreSQL binary or shell command as the cluster's user. */
  runAsOwner(command: string, args: string[]): Promise<string>;
  /** A connection URL for a database of this cluster. */
  url(database?: string): string;
  createDatabase(name: string): Promise<string>;
  start(): Promise<void>;
  /** fast: clean shutdown (sessions are terminated); immediate: like a crash (recovery at start). */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** The server's own log, for failure messages. */
  log(): Promise<string>;
};

function run(command: string, args: string[], timeoutMs = 60_000): Promise<string> {
  const asRoot = process.getuid?.() === 0;
  const [cmd, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
  return new Promise((resolve, reject) => {
    execFile(cmd, argv, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${command} ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

function idOf(flag: '-u' | '-g'): Promise<number> {
  return new Promise((resolve, reject) =>
    execFile('id', [flag, 'postgres'], (err, stdout) => (err ? reject(new Error(`no postgres user: ${err.message}`)) : resolve(Number(stdout.trim())))),
  );
}


/**
 * `nextXid`: the cluster starts counting transactions there instead of near the start (pg_resetwal
 * -x, with the commit-log segment that xid falls in created as PostgreSQL's docs say), as a cluster
 * that has run for a while would.
 */
export async function startPrivatePostgres(t: TestLike, setup: { nextXid?: bigint } = {}): Promise<PrivatePostgres> {
  const root = await mkdtemp(join(tmpdir(), 'webshop-auth-fault-'));
  if (process.getuid?.() === 0) await chown(root, await idOf('-u'), await idOf('-g'));
  const dataDir = join(root, 'data');
  const logFile = join(root, 'postgres.log');
  const port = await freePort();

  const options = [`-p ${port}`, `-k ${root}`, '-c listen_addresses=127.0.0.1', '-c fsync=off', '-c full_page_writes=off', '-c max_connections=50'].join(' ');
  const start = async () => {
    await run(`${PG_BIN}/pg_ctl`, ['-D', dataDir, '-l', logFile, '-w', '-t', '30', '-o', options, 'start']);
  };
  const stop = async (mode: 'fast' | 'immediate' = 'fast') => {
    await run(`${PG_BIN}/pg_ctl`, ['-D', dataDir, '-m', mode, '-w', '-t', '30', 'stop']);
  };
  // If the process ends without its teardowns (a timeout, an uncaught error), still stop the server.
  const onExit = () => {
    try {
      const argv = ['-D', dataDir, '-m', 'immediate', '-w', '-t', '10', 'stop'];
      if (process.getuid?.() === 0) execFileSync('runuser', ['-u', 'postgres', '--', `${PG_BIN}/pg_ctl`, ...argv], { stdio: 'ignore' });
      else execFileSync(`${PG_BIN}/pg_ctl`, argv, { stdio: 'ignore' });
    } catch {
      // not running
    }
  };
  process.once('exit', onExit);
  // Whatever happened: stop the cluster (like a crash: nothing to keep), then remove its folder.
  t.teardown(async () => {
    process.removeListener('exit', onExit);
    // Always tried (a start that timed out may still have left a server running).
    await run(`${PG_BIN}/pg_ctl`, ['-D', dataDir, '-m', 'immediate', '-w', '-t', '30', 'stop']).catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  });
  await run(`${PG_BIN}/initdb`, ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--no-locale']);
  if (setup.nextXid !== undefined) {
    // 32768 transactions per 8-KiB commit-log page, 32 pages per segment file.
    const segment = join(dataDir, 'pg_xact', (setup.nextXid / 32768n / 32n).toString(16).toUpperCase().padStart(4, '0'));
    // A whole segment of zeros ("in progress"); initdb's first one has only the pages it used: extended.
    await writeFile(segment, Buffer.alloc(0), { flag: 'a' });
    await truncate(segment, 32 * 8192);
    if (process.getuid?.() === 0) await chown(segment, await idOf('-u'), await idOf('-g'));
    await run(`${PG_BIN}/pg_resetwal`, ['-x', setup.nextXid.toString(), '-D', dataDir]);
  }
  await start();

  const url = (database = 'postgres') => `postgresql://postgres@127.0.0.1:${port}/${database}`;
  return {
    port,
    dataDir,
    runAsOwner: (command, args) => run(command, args),
    url,
    async createDatabase(name) {
      const client = new pg.Client({ connectionString: url() });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE "${name}"`);
      } finally {
        await client.end();
      }
      return url(name);
    },
    start,
    stop,
    async log() {
      const { readFile } = await import('node:fs/promises');
      return readFile(logFile, 'utf8').catch(() => '');
    },
  };
}
