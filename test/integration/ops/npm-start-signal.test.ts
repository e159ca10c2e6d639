import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { TEST_ENCRYPTION_KEYS } from '../../helpers/keys.js';
import { createTestDatabase } from '../../helpers/database.js';

/**
 * Found by session 15's operator review: SIGTERM to `npm start` (what a process manager sends)
 * ended npm and its `sh -c`, and left the server running on its own, still serving. The script now
 * execs node, so the signal npm passes on reaches the server, which shuts down gracefully.
 */
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

t.test('SIGTERM to `npm start` shuts the server down gracefully', async (t) => {
  const { url } = await createTestDatabase(t);
  const npm = spawn('npm', ['start', '--silent'], {
    cwd: new URL('../../../', import.meta.url),
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      NODE_ENV: 'test',
      LOG_LEVEL: 'info',
      PORT: '0',
      DATABASE_URL: url,
      ENCRYPTION_KEYS: TEST_ENCRYPTION_KEYS,
      MAIL_WORKER_ENABLED: 'false',
      RETENTION_SWEEP_INTERVAL_SECONDS: '0',
    },
  });
  let out = '';
  npm.stdout.on('data', (c: Buffer) => (out += c.toString()));
  npm.stderr.on('data', (c: Buffer) => (out += c.toString()));
  let serverPid: number | undefined;
  t.teardown(() => {
    npm.kill('SIGKILL');
    if (serverPid && alive(serverPid)) process.kill(serverPid, 'SIGKILL');
  });
  for (let i = 0; i < 300 && !/Server listening/.test(out); i++) await sleep(100);
  const listening = /"pid":(\d+),[^\n]*"msg":"Server listening at (http:\/\/[^"]+)"/.exec(out);
  t.ok(listening, 'the server started');
  serverPid = Number(listening![1]);
  t.equal((await fetch(`${listening![2]}/healthz`)).status, 200);

  npm.kill('SIGTERM');
  await once(npm, 'close');
  for (let i = 0; i < 100 && alive(serverPid); i++) await sleep(100);
  t.notOk(alive(serverPid), 'the server process is gone too');
  t.match(out, /"signal":"SIGTERM","msg":"shutting down: \/readyz answers 503, then in-flight requests are finished"/, 'after a graceful shutdown');
});
