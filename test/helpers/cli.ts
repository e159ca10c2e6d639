import { spawn } from 'node:child_process';
import { TEST_ENCRYPTION_KEYS } from './keys.js';

/** The operator CLI, run as the operator runs it (a child process), against a test database. */

export type CliRun = { code: number | null; stdout: string; stderr: string };

export function cli(args: string[], env: Record<string, string>): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], {
      cwd: new URL('../../', import.meta.url),
      env: { PATH: process.env.PATH ?? '', NODE_ENV: 'test', LOG_LEVEL: 'warn', ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * What the CLI needs to reach a test app's database (links are built on the test apps' APP_BASE_URL),
 * with the test apps' ENCRYPTION_KEYS, so the app opens the mail bodies the CLI sealed.
 */
export function cliEnv(databaseUrl: string): Record<string, string> {
  return { DATABASE_URL: databaseUrl, ENCRYPTION_KEYS: TEST_ENCRYPTION_KEYS, APP_BASE_URL: 'https://shop.example.test' };
}

/**
 * Runs CLI invocations two at a time, answers in the given order: each run boots node and tsx
 * (seconds of CPU), and many at once starve the other test files running beside this one.
 */
export async function cliInTurn<T extends (() => Promise<CliRun>)[]>(runs: [...T]): Promise<{ [K in keyof T]: CliRun }> {
  const results: CliRun[] = [];
  for (let i = 0; i < runs.length; i += 2) results.push(...(await Promise.all(runs.slice(i, i + 2).map((run) => run()))));
  return results as { [K in keyof T]: CliRun };
}
