import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { PGlite } from '@electric-sql/pglite';
import { citext } from '@electric-sql/pglite/contrib/citext';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

/** `shared`: served by another live process (its pid), whose server this one connects to. */
export type EmbeddedPostgres = { url: string; shared: { pid: number } | null; stop(): Promise<void> };

/**
 * Development-only PostgreSQL: PGlite (WASM Postgres) served over the wire protocol on loopback,
 * so the app uses exactly the same `pg` driver path as in production.
 *
 * PGlite's data folder may be opened by one process only. The process that opens it writes
 * `embedded.json` ({ pid, url }) beside it, and a second process (the CLI while `npm start` runs)
 * connects to that server instead of opening the folder again.
 */
export async function startEmbeddedPostgres(dataDir: string, port = 0): Promise<EmbeddedPostgres> {
  const dir = resolve(join(dataDir, 'pglite'));
  const lockFile = resolve(join(dataDir, 'embedded.json'));
  const running = await runningServer(lockFile);
  if (running) return { url: running.url, shared: { pid: running.pid }, stop: async () => undefined };

  mkdirSync(dir, { recursive: true });
  const pglite = await PGlite.create(dir, { extensions: { citext } });
  const server = new PGLiteSocketServer({ db: pglite, host: '127.0.0.1', port, maxConnections: 16 });
  await server.start();
  const url = `postgresql://postgres@${server.getServerConn()}/postgres?sslmode=disable`;
  writeFileSync(lockFile, JSON.stringify({ pid: process.pid, url }), { mode: 0o600 });
  return {
    url,
    shared: null,
    async stop() {
      rmSync(lockFile, { force: true });
      await server.stop();
      await pglite.close();
    },
  };
}

/** The embedded server another live process is serving from this data folder, if any. */
async function runningServer(lockFile: string): Promise<{ url: string; pid: number } | undefined> {
  if (!existsSync(lockFile)) return undefined;
  try {
    const { pid, url } = JSON.parse(readFileSync(lockFile, 'utf8')) as { pid: number; url: string };
    process.kill(pid, 0); // throws when the process is gone
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000 });
    await client.connect();
    await client.end();
    return { url, pid };
  } catch {
    rmSync(lockFile, { force: true }); // stale: its process died without cleaning up
    return undefined;
  }
}
