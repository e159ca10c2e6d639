import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { Test } from 'tap';
import { TEST_ENCRYPTION_KEYS } from './keys.js';

/**
 * `src/server.ts` as the image starts it, in a process of its own (killed at the test's end), on a
 * free port, without the mail worker or the retention sweep; `env` adds to or overrides that (a
 * variable given as undefined is not set at all).
 */
export function spawnServer(t: Test, env: Record<string, string | undefined>): ChildProcessWithoutNullStreams {
  const merged: Record<string, string | undefined> = {
    PATH: process.env.PATH ?? '',
    NODE_ENV: 'test',
    LOG_LEVEL: 'info',
    PORT: '0',
    ENCRYPTION_KEYS: TEST_ENCRYPTION_KEYS,
    APP_BASE_URL: 'https://shop.example.test',
    MAIL_WORKER_ENABLED: 'false',
    RETENTION_SWEEP_INTERVAL_SECONDS: '0',
    ...env,
  };
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: new URL('../../', import.meta.url),
    env: Object.fromEntries(Object.entries(merged).filter((entry): entry is [string, string] => entry[1] !== undefined)),
  });
  t.teardown(() => void child.kill('SIGKILL'));
  return child;
}
