import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { Test } from 'tap';
import { TEST_ENCRYPTION_KEYS } from './keys.js';

/**
 * `src/server.ts` as the image starts it, in a process of its own (killed at the test's end), on a
 * free port, without the mail worker, the retention sweep or load shedding (a loaded CI machine's
 * start-up lag is no overload: shed logins never reach the code under test); `env` adds to or
 * overrides that (a variable given as undefined is not set at all).
 */
export function spawnServer(t: Test, env: Record<string, string | undefined>, options: { launcher?: string[] } = {}): ChildProcessWithoutNullStreams {
  const merged: Record<string, string | undefined> = {
    PATH: process.env.PATH ?? '',
    NODE_ENV: 'test',
    LOG_LEVEL: 'info',
    PORT: '0',
    ENCRYPTION_KEYS: TEST_ENCRYPTION_KEYS,
    APP_BASE_URL: 'https://shop.example.test',
    MAIL_WORKER_ENABLED: 'false',
    RETENTION_SWEEP_INTERVAL_SECONDS: '0',
    LOAD_SHED_MAX_EVENT_LOOP_DELAY_MS: '0',
    ...env,
  };
  // `launcher`: a command that starts the server in turn, e.g. prlimit with its options.
  const [command, ...args] = [...(options.launcher ?? []), process.execPath, '--import', 'tsx', 'src/server.ts'];
  const child = spawn(command!, args, {
    cwd: new URL('../../', import.meta.url),
    env: Object.fromEntries(Object.entries(merged).filter((entry): entry is [string, string] => entry[1] !== undefined)),
  });
  t.teardown(() => void child.kill('SIGKILL'));
  return child;
}

export type WatchedServer = {
  /** Everything the server wrote so far, stdout and stderr. */
  output(): string;
  /** Its base URL once it listens; null when it exits before (its output says why). */
  listening: Promise<string | null>;
  /** Its exit code. */
  closed: Promise<number | null>;
};

const LISTENING = /"msg":"Server listening at (http:\/\/127\.0\.0\.1:\d+)"/;

/** Collects a spawned server's output and tells when it listens, or that it ended without. */
export function watchServer(child: ChildProcessWithoutNullStreams): WatchedServer {
  let output = '';
  let listened: (base: string | null) => void = () => undefined;
  const listening = new Promise<string | null>((resolve) => (listened = resolve));
  const collect = (chunk: Buffer) => {
    output += chunk.toString();
    const base = LISTENING.exec(output)?.[1];
    if (base) listened(base);
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  const closed = new Promise<number | null>((resolve) =>
    child.on('close', (code) => {
      listened(LISTENING.exec(output)?.[1] ?? null);
      resolve(code);
    }),
  );
  return { output: () => output, listening, closed };
}

/**
 * /readyz of a server that has just started, asked as a load balancer does: again every 200 ms while
 * it answers 503 (opening its pool, or a loaded machine), at most `tries` times; the last answer's status.
 */
export async function readyzAfterStart(base: string, tries = 50): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const status = (await fetch(`${base}/readyz`)).status;
    if (status !== 503 || attempt >= tries) return status;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
