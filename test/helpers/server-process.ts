import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { Test } from 'tap';
import { TEST_ENCRYPTION_KEYS } from './keys.js';

/**
 * `src/server.ts` as the image starts it, in a process of its own (killed at the test's end), on a
 * free port, without the mail worker or the retention sweep; `env` adds to or overrides that.
 */
export function spawnServer(t: Test, env: Record<string, string>): ChildProcessWithoutNullStreams {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: new URL('../../', import.meta.url),
    env: {
      PATH: process.env.PATH ?? '',
      NODE_ENV: 'test',
      LOG_LEVEL: 'info',
      PORT: '0',
      ENCRYPTION_KEYS: TEST_ENCRYPTION_KEYS,
      APP_BASE_URL: 'https://shop.example.test',
      MAIL_WORKER_ENABLED: 'false',
      RETENTION_SWEEP_INTERVAL_SECONDS: '0',
      ...env,
    },
  });
  t.teardown(() => void child.kill('SIGKILL'));
  return child;
}
