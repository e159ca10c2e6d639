import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createWriteStream, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import argon2 from 'argon2';
import pg from 'pg';
import { defaultHashConcurrency } from '../src/config.js';
import { openDatabase } from '../src/db/client.js';
import { migrate } from '../src/db/migrate.js';
import { createPasswordHasher } from '../src/lib/password-hasher.js';
import { generateKey, parseKeyring } from '../src/lib/secret-box.js';
import { generateTotpSecret, timeStep, totpCode } from '../src/lib/totp.js';
import { sha256Hex } from '../src/lib/tokens.js';
import { sealTotpSecret } from '../src/modules/mfa/totp-secret.js';
import { freePort } from '../scripts/free-port.js';
import { busyCores, coresBetween, coresOver, cpuSeconds, cpuSnapshot, describeCores, loweredThreads, type CpuShare, type CpuSnapshot } from './cpu-accounting.js';

/**
 * `bench/run`: starts the real server on the local PostgreSQL (fresh database webshop_auth_bench,
 * migrated, seeded with BENCH_USERS users that have a password hashed at production argon2
 * parameters and an active TOTP factor) and measures, in one run, on loopback only:
 *
 *   raw argon2 verifications/s (baseline, worker count = cores, interleaved with the slices of
 *   the hashing phases: SLICES) · POST /v1/auth/login ·
 *   /healthz and activation-inspect latency while logins saturate · full login (password + TOTP) · refresh ·
 *   GET /v1/me next to a bare Fastify route that gets the same requests and runs the same
 *   queries · introspection next to the same · peak RSS (and, with BENCH_SOAK_SECONDS, a mixed
 *   load of that length).
 *
 * Every phase is bounded (BENCH_DURATION seconds, default 10); phases whose route the server
 * does not have are skipped. Results: a Markdown table on stdout and bench/results/<time>.json.
 */

type Histogram = { average: number; p50: number; p90: number; p99: number; max: number };
type AutocannonResult = {
  requests: { average: number; total: number };
  latency: Histogram;
  '2xx': number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodeStats: Record<string, { count: number }>;
  duration: number;
};
type Ctx = Record<string, unknown>;
type AutocannonRequest = {
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  body?: string;
  setupRequest?: (req: AutocannonRequest, context: Ctx) => AutocannonRequest | null;
  onResponse?: (status: number, body: string, context: Ctx) => void;
};
type AutocannonOptions = {
  url: string;
  connections: number;
  duration: number;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  requests?: AutocannonRequest[];
  overallRate?: number;
  timeout?: number;
};
const require = createRequire(import.meta.url);
const autocannon = require('autocannon') as (opts: AutocannonOptions) => Promise<AutocannonResult>;

const DURATION = Number(process.env.BENCH_DURATION ?? 10);
// A full login uses a user once per 30-s step (replay protection): 60+ logins/s over the slices need 2,000 and more.
const USERS = Number(process.env.BENCH_USERS ?? 4000);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const SOAK_SECONDS = Number(process.env.BENCH_SOAK_SECONDS ?? 0);
const ADMIN_URL = process.env.BENCH_ADMIN_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const DB_NAME = process.env.BENCH_DATABASE ?? 'webshop_auth_bench';
const CORES = availableParallelism();
/** The server's argon2 slots; default as in production (src/config.ts defaultHashConcurrency). */
const HASH_MAX_CONCURRENT = Number(
  process.env.BENCH_HASH_MAX_CONCURRENT ?? defaultHashConcurrency(CORES, Number(process.env.UV_THREADPOOL_SIZE ?? 4)),
);
const CPU_PROF = process.env.BENCH_CPU_PROF === '1';
/**
 * The hashing phases (login, full login) run as BENCH_SLICES slices of BENCH_DURATION / 2 seconds
 * each, with a raw argon2 run of the same length before, between and after them: this VM's speed
 * drifts by up to 30 % within seconds, so each slice is compared with the raw runs right next to it.
 */
const SLICES = Math.max(1, Number(process.env.BENCH_SLICES ?? 4));
const SLICE_SECONDS = Math.max(2, DURATION / 2);
/** BENCH_PHASES=me,introspect (say): only these phases are measured and reported (all by default). */
const PHASES = new Set((process.env.BENCH_PHASES ?? 'login,fullLogin,refresh,me,introspect,soak').split(',').map((p) => p.trim()));
/** Wall-clock start/end of each measured phase (to slice a CPU profile of the server). */
const phaseTimes: Record<string, { start: number; end: number }> = {};
async function timed<T>(name: string, run: () => Promise<T>): Promise<T> {
  const start = Date.now();
  try {
    return await run();
  } finally {
    // A phase in slices (SLICES): from the first slice's start to the last one's end.
    phaseTimes[name] = { start: phaseTimes[name]?.start ?? start, end: Date.now() };
  }
}
const PASSWORD = 'Correct horse battery staple, bench edition';
const ARGON2 = { memoryCost: 19456, timeCost: 2, parallelism: 1 }; // production minimum (security.md item 4)
const ROOT = new URL('..', import.meta.url);
const RESULTS_DIR = new URL('bench/results/', ROOT);

const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);

// ---------- helpers ----------

function dbUrl(name: string): string {
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  return url.toString();
}


function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function summarize(latenciesMs: number[]) {
  const sorted = [...latenciesMs].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), n: sorted.length };
}

const round = (n: number, digits = 1) => (Number.isFinite(n) ? Number(n.toFixed(digits)) : n);

function statusSummary(r: AutocannonResult): string {
  return Object.entries(r.statusCodeStats ?? {})
    .map(([code, s]) => `${code}×${s.count}`)
    .join(' ');
}

function rssKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

function machine() {
  const sh = (cmd: string, args: string[]) => {
    try {
      return execFileSync(cmd, args, { encoding: 'utf8' }).trim();
    } catch {
      return 'n/a';
    }
  };
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    nproc: sh('nproc', []),
    memory: sh('free', ['-h']).split('\n')[1]?.replace(/\s+/g, ' ') ?? `${Math.round(totalmem() / 2 ** 30)} GiB`,
    node: process.version,
    postgres: sh('psql', ['--version']),
    kernel: sh('uname', ['-sr']),
  };
}

// ---------- database ----------

type SeededUser = { id: string; email: string; totpSecret: string; lastStep: number };

/**
 * The database of the run: BENCH_USERS active users with a TOTP factor, and one invited user
 * with a live activation link, whose token the activation-inspect probe sends.
 */
async function prepareDatabase(keyringSpec: string): Promise<{ users: SeededUser[]; activationToken: string }> {
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS "${DB_NAME}" WITH (FORCE)`);
  await admin.query(`CREATE DATABASE "${DB_NAME}"`);
  await admin.end();
  await migrate(dbUrl(DB_NAME), { info: () => undefined, warn: (m) => log(m) });

  // One real hash at production parameters, shared by every user (verifying it costs the same).
  const hasher = createPasswordHasher({ ...ARGON2, maxConcurrent: 1, maxQueued: 1 });
  const passwordHash = await hasher.hash(PASSWORD.normalize('NFKC'));
  const keyring = parseKeyring(keyringSpec);
  const database = openDatabase(dbUrl(DB_NAME), { max: 4 });
  try {
    const now = new Date();
    const org = await database.db.organization.create({ data: { name: 'Bench Reseller GmbH', customerNumber: 'BENCH-1' } });
    const users: SeededUser[] = Array.from({ length: USERS }, (_, i) => ({
      id: randomUUID(),
      email: `bench-${i}@bench.example`,
      totpSecret: generateTotpSecret(),
      lastStep: -1,
    }));
    for (let i = 0; i < users.length; i += 500) {
      const batch = users.slice(i, i + 500);
      await database.db.user.createMany({
        data: batch.map((u) => ({
          id: u.id,
          organizationId: org.id,
          email: u.email,
          name: `Bench User ${u.email}`,
          status: 'ACTIVE' as const,
          roles: ['USER' as const],
          passwordHash,
          passwordChangedAt: now,
          emailVerifiedAt: now,
          termsVersion: '2026-01',
          termsAcceptedAt: now,
          createdAt: now,
        })),
      });
      await database.db.totpFactor.createMany({
        data: batch.map((u) => ({
          userId: u.id,
          status: 'ACTIVE' as const,
          ...sealTotpSecret(keyring, u.id, u.totpSecret),
          createdAt: now,
          activatedAt: now,
        })),
      });
    }
    const invited = await database.db.user.create({
      data: { organizationId: org.id, email: 'bench-invited@bench.example', name: 'Bench Invited', status: 'INVITED', roles: ['USER'], createdAt: now },
    });
    const activationToken = randomBytes(32).toString('base64url');
    await database.db.flowToken.create({
      data: {
        userId: invited.id,
        purpose: 'ACTIVATION',
        tokenHash: sha256Hex(activationToken),
        expiresAt: new Date(now.getTime() + 7 * 86_400_000),
        createdAt: now,
      },
    });
    return { users, activationToken };
  } finally {
    await database.close();
  }
}

// ---------- processes ----------

async function waitReady(url: string, child: ChildProcess, ms = 60_000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${url}: the process exited with ${child.exitCode}`);
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error(`${url} did not become ready`);
    await sleep(200);
  }
}

// Whatever happens (an exception inside autocannon's callbacks included), no server outlives the bench.
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
});
// A signal sent to the bench alone (not to its process group, as Ctrl-C does) would end it without
// the 'exit' event, leaving the server and the bare baseline running.
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(128 + (signal === 'SIGINT' ? 2 : 15)));

function startProcess(script: string, env: Record<string, string>, logFile: string, nodeArgs: string[] = []): ChildProcess {
  const out = createWriteStream(new URL(logFile, RESULTS_DIR));
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', script], {
    cwd: new URL('.', ROOT).pathname,
    env: { PATH: process.env.PATH ?? '', UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? String(Math.max(4, CORES)), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.pipe(out);
  child.stderr!.pipe(out);
  children.add(child);
  return child;
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(15_000)]);
  if (child.exitCode === null) child.kill('SIGKILL');
}

// ---------- phases ----------

type Row = {
  phase: string;
  rps: number;
  p50: number;
  p99: number;
  statuses: string;
  baseline?: string;
  note?: string;
};

type RawRun = { perSecond: number; meanMs: number; cores: number; cpuMsPerHash: number };

async function rawArgon2(seconds: number): Promise<RawRun> {
  const hash = await argon2.hash(PASSWORD, { type: argon2.argon2id, ...ARGON2 });
  let done = 0;
  const cpuBefore = cpuSeconds(process.pid);
  const started = performance.now();
  const until = started + seconds * 1000;
  await Promise.all(
    Array.from({ length: CORES }, async () => {
      while (performance.now() < until) {
        await argon2.verify(hash, PASSWORD);
        done++;
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const cpu = cpuSeconds(process.pid) - cpuBefore;
  return { perSecond: done / elapsed, meanMs: (elapsed * 1000 * CORES) / done, cores: cpu / elapsed, cpuMsPerHash: (cpu / done) * 1000 };
}

/** The newest earlier results file in bench/results/ (this machine's previous run), by phase. */
function previousRun(): { file: string; rows: Map<string, Pick<Row, 'rps' | 'p99'>> } | null {
  const files = readdirSync(RESULTS_DIR).filter((f) => f.endsWith('.json')).sort();
  const file = files.at(-1);
  if (!file) return null;
  try {
    const earlier = JSON.parse(readFileSync(new URL(file, RESULTS_DIR), 'utf8')) as { rows?: Row[] };
    return { file, rows: new Map((earlier.rows ?? []).map((r) => [r.phase, { rps: r.rps ?? NaN, p99: r.p99 ?? NaN }])) };
  } catch {
    return null;
  }
}

/**
 * The `duration` that makes an autocannon run end on its sample tick at `seconds` (whole seconds).
 * autocannon stops a run at its first 1-s sample tick after `duration` has passed (the connections
 * keep sending until then). For a whole number of seconds the stop timer and that tick are due in
 * the same millisecond, and when the tick fires first the run goes on for another second: in about
 * one login slice in ten the /healthz probe ran 6.01 s next to the 5.01-s logins, so the slice's
 * CPU window held a second without logins (0.25 cores "idle", the slice's hashing share 10 points
 * low). Half a second before the tick is never a tie.
 */
const endingOnTick = (seconds: number): number => Math.max(0.5, Math.round(seconds) - 0.5);

/** Several runs against one target as one: the total rate, the mean of the p50s, the worst p99, all statuses. */
function combined(runs: AutocannonResult[]): AutocannonResult {
  const seconds = runs.reduce((sum, r) => sum + r.duration, 0);
  const total = runs.reduce((sum, r) => sum + r.requests.total, 0);
  const statusCodeStats: Record<string, { count: number }> = {};
  for (const r of runs) {
    for (const [code, s] of Object.entries(r.statusCodeStats ?? {})) statusCodeStats[code] = { count: (statusCodeStats[code]?.count ?? 0) + s.count };
  }
  return {
    ...runs[0]!,
    duration: seconds,
    requests: { ...runs[0]!.requests, total, average: round(total / seconds) },
    latency: { ...runs[0]!.latency, p50: round(runs.reduce((sum, r) => sum + r.latency.p50, 0) / runs.length), p99: Math.max(...runs.map((r) => r.latency.p99)) },
    statusCodeStats,
  };
}

/**
 * Where the CPU went during a hashing phase (bench/cpu-accounting.ts), and the share of the CPU
 * its hashes got against the raw runs next to it. Unlike the rate ratio, that share does not move
 * with the VM's speed: it is what the ratio would be if both ran at the same speed, and the CPU
 * per hash (server vs raw) shows whether they did.
 */
function cpuRow(phase: string, cpu: CpuShare, perSecond: number, raws: RawRun[]): Row {
  const rawCores = raws.reduce((sum, r) => sum + r.cores, 0) / raws.length;
  const rawMsPerHash = raws.reduce((sum, r) => sum + r.cpuMsPerHash, 0) / raws.length;
  const statuses =
    `${describeCores(cpu, perSecond)}; hashing got ${cpu.hashing.toFixed(2)} cores against ${rawCores.toFixed(2)} for raw argon2 ` +
    `(**${((cpu.hashing / rawCores) * 100).toFixed(0)} %**); CPU per hash ${((cpu.hashing / perSecond) * 1000).toFixed(1)} ms, raw ${rawMsPerHash.toFixed(1)} ms`;
  log(`  CPU during the ${phase}: ${statuses}`);
  return { phase: `CPU during the ${phase} (cores)`, rps: NaN, p50: NaN, p99: NaN, statuses };
}

/**
 * Waits (at most 5 s) until the server and PostgreSQL use under 0.05 cores: the requests cut off
 * at a slice's end have finished and do not slow the raw run after it.
 */
async function quiet(serverPid: number): Promise<void> {
  const until = performance.now() + 5000;
  let before = cpuSnapshot(serverPid);
  while (performance.now() < until) {
    await sleep(200);
    const now = cpuSnapshot(serverPid);
    if (busyCores(before, now) < 0.05) return;
    before = now;
  }
}

/** A probe whose answers are not all 200 measured something else (an error answer is cheaper): stop the bench. */
function allAnswered200(what: string, r: AutocannonResult): AutocannonResult {
  const other = Object.entries(r.statusCodeStats ?? {}).filter(([code]) => code !== '200');
  if (other.length > 0 || r.non2xx > 0 || r.errors > 0 || r.timeouts > 0) {
    throw new Error(`${what}: not every answer was 200 (${statusSummary(r)}; errors ${r.errors}, timeouts ${r.timeouts})`);
  }
  return r;
}

function row(phase: string, r: AutocannonResult, extra: Partial<Row> = {}): Row {
  log(`  ${phase}: ${r.requests.average} req/s, p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms, ${statusSummary(r)}`);
  return { phase, rps: round(r.requests.average), p50: r.latency.p50, p99: r.latency.p99, statuses: statusSummary(r), ...extra };
}

async function main(): Promise<void> {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const started = Date.now();
  const loadBefore = loadavg();
  const keyringSpec = `bench:${generateKey()}`;
  const clientSecret = randomBytes(24).toString('base64url');
  const clientBasic = `Basic ${Buffer.from(`bench:${clientSecret}`).toString('base64')}`;

  log(`load average ${loadBefore.map((l) => l.toFixed(2)).join(' / ')}; machine: ${CORES} cores; users ${USERS}; ${DURATION} s per phase; ${CONNECTIONS} connections`);
  log(`preparing database ${DB_NAME} ...`);
  const { users, activationToken } = await prepareDatabase(keyringSpec);

  // Raw argon2, interleaved with the slices of the hashing phases (SLICES above).
  const rawRuns: (RawRun & { when: string })[] = [];
  const measureRaw = async (when: string) => {
    const r = await rawArgon2(SLICE_SECONDS);
    log(`  raw argon2id verify ${when}: ${r.perSecond.toFixed(1)}/s (${r.meanMs.toFixed(1)} ms each, ${CORES} concurrent)`);
    rawRuns.push({ when, ...r });
    return r;
  };
  const hashing = PHASES.has('login') || PHASES.has('fullLogin');

  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = startProcess(
    'src/server.ts',
    {
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: String(port),
      DATABASE_URL: dbUrl(DB_NAME),
      SMTP_URL: 'smtp://127.0.0.1:1', // never used: the mail worker is off
      MAIL_WORKER_ENABLED: 'false',
      RETENTION_SWEEP_INTERVAL_SECONDS: '0', // a sweep landing in a phase would skew it (production: hourly, cheap)
      APP_BASE_URL: 'https://shop.bench.example',
      JWT_ISSUER: 'https://auth.bench.example',
      ENCRYPTION_KEYS: keyringSpec,
      SERVICE_CLIENTS: `bench:${createHash('sha256').update(clientSecret).digest('hex')}:cso`,
      METRICS_TOKEN: randomBytes(24).toString('base64url'),
      ARGON2_MEMORY_KIB: String(ARGON2.memoryCost),
      ARGON2_TIME_COST: String(ARGON2.timeCost),
      ARGON2_PARALLELISM: String(ARGON2.parallelism),
      HASH_MAX_CONCURRENT: String(HASH_MAX_CONCURRENT),
      // Nice value of the server's hashing threads (src/lib/threadpool-priority.ts); 0 = as before.
      HASH_THREAD_NICE: process.env.BENCH_HASH_THREAD_NICE ?? '10',
      // One client IP sends everything here: per-IP limits would measure the limiter.
      RATE_LIMIT_ENABLED: 'false',
      LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
    },
    'server.log',
    // BENCH_CPU_PROF=1: V8 CPU profile of the server (bench/results/prof/), sliced per phase by
    // bench/profile-summary.ts with the phase times recorded in the results JSON.
    // BENCH_NODE_ARGS: more flags for the server's node (e.g. --perf-basic-prof for Linux perf).
    [
      ...(CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${new URL('prof/', RESULTS_DIR).pathname}`] : []),
      ...(process.env.BENCH_TRACE_GC === '1' ? ['--trace-gc'] : []),
      ...(process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? []),
    ],
  );
  const baselinePort = await freePort();
  const baselineBase = `http://127.0.0.1:${baselinePort}`;
  const baseline = startProcess(
    'bench/baseline-server.ts',
    { DATABASE_URL: dbUrl(DB_NAME), PORT: String(baselinePort) },
    'baseline.log',
    CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${new URL('prof-bare/', RESULTS_DIR).pathname}`] : [],
  );
  const rows: Row[] = [];
  const results: Record<string, unknown> = {};

  try {
    await waitReady(`${base}/readyz`, server);
    await waitReady(`${baselineBase}/healthz`, baseline);
    const doc = (await (await fetch(`${base}/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
    const has = (method: string, path: string) => Boolean(doc.paths[path]?.[method]);
    log(`server up on ${base} (pid ${server.pid}); baseline on ${baselineBase}`);
    // Session 21's first run measured a server whose hashing threads kept the event loop's
    // priority (it had not found them; the log said so) and reported a hashing share of 0 %: a
    // server unlike production's is not measured.
    if ((process.env.BENCH_HASH_THREAD_NICE ?? '10') !== '0' && process.platform === 'linux' && loweredThreads(server.pid!) === 0) {
      throw new Error('the server did not lower its hashing threads (bench/results/server.log): not measuring a server unlike production');
    }
    const rawRow: Row | null = hashing
      ? { phase: 'argon2id verify, raw, in-process (baseline; the p50 column is the mean per verification)', rps: NaN, p50: NaN, p99: NaN, statuses: 'not run' }
      : null;
    if (rawRow) rows.push(rawRow);

    /**
     * A hashing phase in slices, each between two raw argon2 runs (raw, slice, raw, ..., raw),
     * the server and PostgreSQL let go quiet before each raw run. Each slice's rate is compared
     * with the mean of the raw runs on either side; the phase's ratio is the mean of its slices'.
     */
    const interleaved = async <T>(name: string, slice: (seconds: number) => Promise<{ value: T; completed: number; seconds: number }>) => {
      const raws: RawRun[] = [await measureRaw(`before the first ${name} slice`)];
      const windows: [CpuSnapshot, CpuSnapshot][] = [];
      const values: T[] = [];
      const ratios: number[] = [];
      let completed = 0;
      let seconds = 0;
      for (let k = 1; k <= SLICES; k++) {
        const before = cpuSnapshot(server.pid!);
        const s = await timed(name, () => slice(SLICE_SECONDS));
        const window: [CpuSnapshot, CpuSnapshot] = [before, cpuSnapshot(server.pid!)];
        windows.push(window);
        values.push(s.value);
        completed += s.completed;
        seconds += s.seconds;
        await quiet(server.pid!);
        const after = await measureRaw(k === SLICES ? `after the last ${name} slice` : `after ${name} slice ${k}`);
        const rate = s.completed / s.seconds;
        ratios.push(rate / ((raws.at(-1)!.perSecond + after.perSecond) / 2));
        const c = coresBetween(...window);
        log(
          `  ${name} slice ${k}: ${rate.toFixed(1)}/s = ${(ratios.at(-1)! * 100).toFixed(0)} % of the raw runs next to it ` +
            `(cores: hashing ${c.hashing.toFixed(2)}, idle ${c.idle.toFixed(2)}, I/O wait ${c.iowait.toFixed(2)}, PostgreSQL ${c.postgres.toFixed(2)})`,
        );
        raws.push(after);
      }
      const perSecond = completed / seconds;
      const meanRatio = ratios.reduce((sum, r) => sum + r, 0) / ratios.length;
      const againstRaw =
        `${(meanRatio * 100).toFixed(0)} % of raw argon2 (mean over ${SLICES} slices of ${SLICE_SECONDS} s, each against the mean of the raw runs ` +
        `just before and after it; slices ${ratios.map((r) => (r * 100).toFixed(0)).join(' / ')} %; raw runs ${raws.map((r) => round(r.perSecond)).join(', ')}/s)`;
      return { values, perSecond, raws, cpu: coresOver(windows), againstRaw };
    };
    /** Unmeasured warm-up of a target (JIT, pool, Prisma's query plans), 2 s. */
    const warm = (url: string, requests: AutocannonRequest[]) => autocannon({ url, connections: 4, duration: 2, requests });

    let next = 0;
    const nextUser = (): SeededUser => users[next++ % users.length]!;
    const loginBody = (u: SeededUser) => JSON.stringify({ email: u.email, password: PASSWORD });
    const json = { 'content-type': 'application/json' };
    const loginRequests: AutocannonRequest[] = [
      { method: 'POST', path: '/v1/auth/login', headers: json, setupRequest: (req) => ({ ...req, body: loginBody(nextUser()) }) },
    ];

    // Warm-up (JIT, the pool's connections, prepared statements, the hashing threads), not
    // measured; the /healthz warm-up also lets the last warm-up logins finish.
    if (PHASES.has('login') && has('post', '/v1/auth/login')) await warm(base, loginRequests);
    await autocannon({ url: `${base}/healthz`, connections: 4, duration: 2 });

    const idleHealth = await autocannon({ url: `${base}/healthz`, connections: 1, duration: 3, overallRate: 50 });
    rows.push(row('GET /healthz, idle (50 req/s)', idleHealth));
    // A non-hashing route with a database query: the invited user's activation link, inspected.
    // 20 req/s: at 50 its own CPU (≈ 0.05 cores, a query and the stack each) took ≈ 3 points off the login ratio.
    const INSPECT_RATE = 20;
    const inspectRequests: AutocannonRequest[] = [
      { method: 'POST', path: '/v1/activation/inspect', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: activationToken }) },
    ];
    const inspectProbe = async (duration: number) =>
      allAnswered200('activation inspect', await autocannon({ url: base, connections: 1, duration, overallRate: INSPECT_RATE, requests: inspectRequests }));
    await warm(base, inspectRequests);
    const idleInspect = await inspectProbe(3);
    rows.push(row(`POST /v1/activation/inspect, idle (${INSPECT_RATE} req/s)`, idleInspect));

    if (PHASES.has('login') && has('post', '/v1/auth/login')) {
      log(`POST /v1/auth/login, saturating, with a /healthz probe alongside, ${SLICES} slices of ${SLICE_SECONDS} s between raw argon2 runs ...`);
      const phase = await interleaved('login', async (seconds) => {
        const [login, probe, inspect] = await Promise.all([
          autocannon({ url: base, connections: CONNECTIONS, duration: endingOnTick(seconds), timeout: 30, requests: loginRequests }),
          autocannon({ url: `${base}/healthz`, connections: 1, duration: endingOnTick(seconds), overallRate: 50 }),
          inspectProbe(endingOnTick(seconds)),
        ]);
        // Only password steps that passed count: an error answered without a hash would inflate the rate.
        return { value: { login, probe, inspect }, completed: login.statusCodeStats?.['200']?.count ?? 0, seconds: login.duration };
      });
      const login = combined(phase.values.map((v) => v.login));
      const probe = combined(phase.values.map((v) => v.probe));
      const inspect = combined(phase.values.map((v) => v.inspect));
      rows.push(row('POST /v1/auth/login (password step)', login, { baseline: phase.againstRaw }));
      rows.push(cpuRow('login phase', phase.cpu, phase.perSecond, phase.raws));
      rows.push(row('GET /healthz during the login saturation (50 req/s)', probe, { baseline: `idle p99 ${idleHealth.latency.p99} ms`, note: `p99: the worst of the ${SLICES} slices` }));
      rows.push(
        row(`POST /v1/activation/inspect during the login saturation (${INSPECT_RATE} req/s)`, inspect, {
          baseline: `idle p99 ${idleInspect.latency.p99} ms`,
          note: `p99: the worst of the ${SLICES} slices`,
        }),
      );
      results.login = { login, probe, inspect, cpu: phase.cpu, againstRaw: phase.againstRaw };
    } else if (PHASES.has('login')) rows.push({ phase: 'POST /v1/auth/login', rps: NaN, p50: NaN, p99: NaN, statuses: 'skipped: route missing' });

    // Full login: password step, then the TOTP code for the challenge. Each user's code works
    // once per 30-s step (replay protection), so users are picked whose current step is unused.
    const sessions: { accessToken: string; refreshToken: string }[] = [];
    const fullLoginLatencies: number[] = [];
    /** The code step alone (POST /v1/auth/login/mfa), while other connections' password steps hash. */
    const codeStepLatencies: number[] = [];
    // A code counts as used only when the server accepted it; users in the middle of a login are
    // not handed out twice. When none is free (BENCH_USERS too small) one is reused: its code is
    // then rejected as a replay and shows up as a 401 in the statuses.
    const inFlight = new Set<SeededUser>();
    let starved = 0;
    const pickForTotp = (): SeededUser => {
      const step = timeStep(Math.floor(Date.now() / 1000));
      for (let i = 0; i < users.length; i++) {
        const u = nextUser();
        if (u.lastStep < step && !inFlight.has(u)) {
          inFlight.add(u);
          return u;
        }
      }
      starved++;
      return nextUser();
    };
    const fullLoginRequests = (collect: boolean): AutocannonRequest[] => [
      {
        method: 'POST',
        path: '/v1/auth/login',
        headers: json,
        setupRequest: (req, context) => {
          const u = pickForTotp();
          context.user = u;
          context.t0 = performance.now();
          return { ...req, body: loginBody(u) };
        },
        onResponse: (status, body, context) => {
          if (status === 200) context.challengeToken = (JSON.parse(body) as { challengeToken: string }).challengeToken;
          else inFlight.delete(context.user as SeededUser);
        },
      },
      {
        method: 'POST',
        path: '/v1/auth/login/mfa',
        headers: json,
        setupRequest: (req, context) => {
          if (typeof context.challengeToken !== 'string') return null;
          const u = context.user as SeededUser;
          context.t1 = performance.now();
          return { ...req, body: JSON.stringify({ challengeToken: context.challengeToken, code: totpCode(u.totpSecret, Math.floor(Date.now() / 1000)) }) };
        },
        onResponse: (status, body, context) => {
          const u = context.user as SeededUser;
          inFlight.delete(u);
          codeStepLatencies.push(performance.now() - (context.t1 as number));
          if (status !== 200) return;
          u.lastStep = timeStep(Math.floor(Date.now() / 1000));
          fullLoginLatencies.push(performance.now() - (context.t0 as number));
          if (collect && sessions.length < 5000) {
            const t = JSON.parse(body) as { accessToken: string; refreshToken: string };
            sessions.push({ accessToken: t.accessToken, refreshToken: t.refreshToken });
          }
        },
      },
    ];

    if (!PHASES.has('fullLogin') && has('post', '/v1/auth/login/mfa')) {
      // Only the sessions are needed (refresh, /me, introspection): a short unreported full login.
      log('full login, not measured, for sessions ...');
      await autocannon({ url: base, connections: CONNECTIONS, duration: Math.min(DURATION, 5), timeout: 30, requests: fullLoginRequests(true) });
    } else if (has('post', '/v1/auth/login/mfa')) {
      log('full login (password + TOTP) ...');
      // Warm-up of the code step, not measured; then a moment for its last hashes to finish.
      await warm(base, fullLoginRequests(false));
      await sleep(500);
      fullLoginLatencies.length = 0;
      codeStepLatencies.length = 0;
      starved = 0;
      const phase = await interleaved('fullLogin', async (seconds) => {
        const before = fullLoginLatencies.length;
        const run = await autocannon({ url: base, connections: CONNECTIONS, duration: endingOnTick(seconds), timeout: 30, requests: fullLoginRequests(true) });
        return { value: run, completed: fullLoginLatencies.length - before, seconds: run.duration };
      });
      const full = combined(phase.values);
      const { cpu, perSecond } = phase;
      const s = summarize(fullLoginLatencies);
      const fullRow: Row = {
        phase: 'full login: password + TOTP code (2 requests)',
        rps: round(perSecond),
        p50: round(s.p50),
        p99: round(s.p99),
        statuses: statusSummary(full),
        note: `rate and latency of complete logins${starved ? `; ${starved} times no unused user was free` : ''}`,
      };
      fullRow.baseline = phase.againstRaw;
      rows.push(fullRow);
      const code = summarize(codeStepLatencies);
      rows.push({
        phase: 'code step alone (POST /v1/auth/login/mfa) during that phase, hashes running',
        rps: round(code.n / full.duration),
        p50: round(code.p50),
        p99: round(code.p99),
        statuses: `${code.n} answers`,
      });
      rows.push(cpuRow('full login phase', cpu, perSecond, phase.raws));
      results.fullLogin = { full, completed: s.n, perSecond, latency: s, codeStep: code, cpu, againstRaw: phase.againstRaw };
    } else rows.push({ phase: 'full login', rps: NaN, p50: NaN, p99: NaN, statuses: 'skipped: route missing' });

    if (sessions.length < CONNECTIONS) {
      log(`only ${sessions.length} sessions from the full-login phase: refresh, /me and introspection are skipped`);
    } else {
      if (PHASES.has('refresh') && has('post', '/v1/auth/refresh')) {
        log('POST /v1/auth/refresh (each connection rotates its own token family) ...');
        // A shared pool: each request takes a family's current refresh token and puts the new one back.
        const pool = sessions.slice(0, Math.max(CONNECTIONS * 2, 64)).map((s) => s.refreshToken);
        const refresh = await timed('refresh', () => autocannon({
          url: base,
          connections: CONNECTIONS,
          duration: DURATION,
          requests: [
            {
              method: 'POST',
              path: '/v1/auth/refresh',
              headers: json,
              setupRequest: (req) => {
                const token = pool.shift();
                return token ? { ...req, body: JSON.stringify({ refreshToken: token }) } : null;
              },
              onResponse: (status, body) => {
                if (status === 200) pool.push((JSON.parse(body) as { refreshToken: string }).refreshToken);
              },
            },
          ],
        }));
        rows.push(row('POST /v1/auth/refresh (rotation)', refresh, { baseline: 'n/a' }));
        results.refresh = refresh;
      }

      const tokens = sessions.map((s) => s.accessToken);
      let t = 0;
      const nextToken = () => tokens[t++ % tokens.length]!;

      // The bare-Fastify baseline gets the very same requests (baseline-server.ts). The two are
      // measured in four alternating rounds of DURATION/2 s (service, bare, bare, service, service,
      // bare, bare, service), so a drift of the machine's speed during the phase hits both alike.
      // CPU time per request is counted for the target (all its threads) and for the load generator
      // (this process): steadier than req/s on a machine whose cores all three share.
      // Each side's answers are checked (`answered`: status and body), so a ratio never compares
      // with a side that failed: session 9's bare /me answered 500 to every request (its context
      // lacked the pool) and the ratio it printed meant nothing.
      type Side = { name: string; runs: AutocannonResult[]; pid: number; cpu: number; loadCpu: number; wrong: number };
      const alternating = async (
        requests: AutocannonRequest[],
        answered: (status: number, body: string) => boolean,
      ): Promise<[AutocannonResult, AutocannonResult, string]> => {
        const service: Side = { name: 'service', runs: [], pid: server.pid!, cpu: 0, loadCpu: 0, wrong: 0 };
        const bare: Side = { name: 'bare baseline', runs: [], pid: baseline.pid!, cpu: 0, loadCpu: 0, wrong: 0 };
        const checked = (side: Side): AutocannonRequest[] =>
          requests.map((r) => ({
            ...r,
            onResponse: (status: number, body: string) => {
              if (!answered(status, body)) side.wrong++;
            },
          }));
        for (const [first, second] of [[service, bare], [bare, service], [service, bare], [bare, service]] as const) {
          for (const side of [first, second]) {
            const url = side === service ? base : baselineBase;
            const cpuBefore = cpuSeconds(side.pid);
            const loadBefore = process.cpuUsage();
            side.runs.push(await autocannon({ url, connections: CONNECTIONS, duration: Math.max(1, DURATION / 2), requests: checked(side) }));
            side.cpu += cpuSeconds(side.pid) - cpuBefore;
            const load = process.cpuUsage(loadBefore);
            side.loadCpu += (load.user + load.system) / 1e6;
          }
        }
        const perRequest = (side: Side) => {
          const n = side.runs.reduce((sum, r) => sum + r.requests.total, 0);
          return { target: (side.cpu / n) * 1e6, load: (side.loadCpu / n) * 1e6 };
        };
        for (const side of [service, bare]) {
          if (side.wrong > 0) {
            throw new Error(`the ${side.name} gave ${side.wrong} wrong answers (${statusSummary(combined(side.runs))}): its numbers would mean nothing`);
          }
        }
        const s = perRequest(service);
        const b = perRequest(bare);
        const cpu =
          `CPU per request: service ${s.target.toFixed(0)} µs, bare ${b.target.toFixed(0)} µs (${((b.target / s.target) * 100).toFixed(0)} %); ` +
          `load generator ${s.load.toFixed(0)} / ${b.load.toFixed(0)} µs`;
        log(`  ${cpu}`);
        return [combined(service.runs), combined(bare.runs), cpu];
      };
      if (PHASES.has('me') && has('get', '/v1/me')) {
        log('GET /v1/me and its bare-Fastify baseline ...');
        const meRequests: AutocannonRequest[] = [
          { method: 'GET', path: '/v1/me', setupRequest: (req) => ({ ...req, headers: { authorization: `Bearer ${nextToken()}` } }) },
        ];
        await warm(base, meRequests);
        await warm(baselineBase, meRequests);
        const [me, bare, cpu] = await timed('me', () => alternating(meRequests, (status, body) => status === 200 && body.includes('"requiredActions"')));
        rows.push(row('GET /v1/me', me, { baseline: `bare Fastify, same requests and queries: ${round(bare.requests.average)} req/s, p50 ${bare.latency.p50} / p99 ${bare.latency.p99} ms (${((me.requests.average / bare.requests.average) * 100).toFixed(0)} %); ${cpu}` }));
        results.me = { me, bare, cpu };
      }

      if (PHASES.has('introspect') && has('post', '/v1/tokens/introspect')) {
        log('POST /v1/tokens/introspect and its bare-Fastify baseline ...');
        const introspectRequests: AutocannonRequest[] = [
          {
            method: 'POST',
            path: '/v1/tokens/introspect',
            headers: { ...json, authorization: clientBasic },
            setupRequest: (req) => ({ ...req, body: JSON.stringify({ token: nextToken() }) }),
          },
        ];
        await warm(base, introspectRequests);
        await warm(baselineBase, introspectRequests);
        const [introspect, bare, cpu] = await timed('introspect', () =>
          alternating(introspectRequests, (status, body) => status === 200 && body.includes('"active":true')),
        );
        rows.push(
          row('POST /v1/tokens/introspect', introspect, {
            baseline: `bare Fastify, same requests and query: ${round(bare.requests.average)} req/s, p50 ${bare.latency.p50} / p99 ${bare.latency.p99} ms (${((introspect.requests.average / bare.requests.average) * 100).toFixed(0)} %); ${cpu}`,
          }),
        );
        results.introspect = { introspect, bare, cpu };
      }

      if (PHASES.has('soak') && SOAK_SECONDS > 0) {
        log(`mixed load for ${SOAK_SECONDS} s (login, full login, /me, introspection), sampling RSS ...`);
        let peakRss = 0;
        const sampler = setInterval(() => {
          peakRss = Math.max(peakRss, rssKiB(server.pid!, 'VmRSS'));
        }, 1000);
        const c = Math.max(1, Math.floor(CONNECTIONS / 4));
        const mixed = await Promise.all([
          autocannon({
            url: base,
            connections: c,
            duration: SOAK_SECONDS,
            timeout: 30,
            requests: [{ method: 'POST', path: '/v1/auth/login', headers: json, setupRequest: (req) => ({ ...req, body: loginBody(nextUser()) }) }],
          }),
          autocannon({ url: base, connections: c, duration: SOAK_SECONDS, timeout: 30, requests: fullLoginRequests(false) }),
          autocannon({
            url: base,
            connections: c,
            duration: SOAK_SECONDS,
            requests: [{ method: 'GET', path: '/v1/me', setupRequest: (req) => ({ ...req, headers: { authorization: `Bearer ${nextToken()}` } }) }],
          }),
          autocannon({
            url: base,
            connections: c,
            duration: SOAK_SECONDS,
            requests: [
              {
                method: 'POST',
                path: '/v1/tokens/introspect',
                headers: { ...json, authorization: clientBasic },
                setupRequest: (req) => ({ ...req, body: JSON.stringify({ token: nextToken() }) }),
              },
            ],
          }),
        ]);
        clearInterval(sampler);
        const names = ['login', 'full login', '/me', 'introspect'];
        rows.push({
          phase: `mixed load ${SOAK_SECONDS} s (${c} connections each)`,
          rps: round(mixed.reduce((sum, r) => sum + r.requests.average, 0)),
          p50: NaN,
          p99: Math.max(...mixed.map((r) => r.latency.p99)),
          statuses: mixed.map((r, i) => `${names[i]}: ${statusSummary(r)}`).join('; '),
          note: `peak RSS during the mixed load ${(peakRss / 1024).toFixed(0)} MiB`,
        });
        results.soak = { mixed, peakRssKiB: peakRss };
      }
    }

    if (rawRow && rawRuns.length > 0) {
      const best = rawRuns.reduce((a, b) => (b.perSecond > a.perSecond ? b : a));
      rawRow.rps = round(best.perSecond);
      rawRow.p50 = round(best.meanMs);
      rawRow.statuses = `${CORES} concurrent verifications, the best of ${rawRuns.length} runs: ${rawRuns.map((r) => `${round(r.perSecond)} ${r.when}`).join('; ')}`;
    }
    results.rawArgon2 = rawRuns;

    const peak = rssKiB(server.pid!, 'VmHWM');
    rows.push({ phase: 'server peak RSS over the whole run (VmHWM)', rps: NaN, p50: NaN, p99: NaN, statuses: `${(peak / 1024).toFixed(0)} MiB` });
    results.peakRssKiB = peak;
  } finally {
    await stopProcess(server);
    results.serverExitedAt = Date.now(); // anchors the end of a CPU profile (BENCH_CPU_PROF) in wall time
    results.phaseTimes = phaseTimes;
    await stopProcess(baseline);
    results.baselineExitedAt = Date.now(); // the same for the baseline's profile (bench/profile-summary.ts)
  }

  const fmt = (n: number) => (Number.isFinite(n) ? String(n) : '–');
  const previous = previousRun();
  const table = [
    `| phase | req/s | p50 ms | p99 ms | statuses | baseline (same run) | previous run${previous ? ` (${previous.file})` : ''}: req/s, p99 ms |`,
    '| --- | ---: | ---: | ---: | --- | --- | --- |',
    ...rows.map((r) => {
      const before = previous?.rows.get(r.phase);
      const then = before ? `${fmt(before.rps)}, ${fmt(before.p99)}` : '';
      return `| ${r.phase} | ${fmt(r.rps)} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${r.statuses}${r.note ? ` (${r.note})` : ''} | ${r.baseline ?? ''} | ${then} |`;
    }),
  ].join('\n');
  const info = machine();
  const header = `machine: ${info.cpu}; nproc ${info.nproc}; memory ${info.memory}; node ${info.node}; ${info.postgres}; ${info.kernel}\n` +
    `settings: ${DURATION} s per phase, ${CONNECTIONS} connections, ${USERS} users, argon2id m=${ARGON2.memoryCost} t=${ARGON2.timeCost} p=${ARGON2.parallelism}, ` +
    `HASH_MAX_CONCURRENT=${HASH_MAX_CONCURRENT}, HASH_THREAD_NICE=${process.env.BENCH_HASH_THREAD_NICE ?? '10'}, rate limits off, LOG_LEVEL=${process.env.BENCH_LOG_LEVEL ?? 'warn'}; total ${Math.round((Date.now() - started) / 1000)} s; ` +
    `load average before (1/5/15 min) ${loadBefore.map((l) => l.toFixed(2)).join(' / ')} (anything else running skews the numbers)\n`;
  process.stdout.write(`\n${header}\n${table}\n`);
  const file = new URL(`${new Date().toISOString().replaceAll(':', '-')}.json`, RESULTS_DIR);
  writeFileSync(file, JSON.stringify({ machine: info, settings: { DURATION, USERS, CONNECTIONS, SOAK_SECONDS, ARGON2, HASH_MAX_CONCURRENT, loadBefore }, rows, results }, null, 2));
  log(`wrote ${file.pathname}`);
}

const fail = (err: unknown) => {
  process.stderr.write(`[bench] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
};
process.on('uncaughtException', fail);
main().then(() => process.exit(0), fail);
