import { pbkdf2 } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/** Samples of the threads' states while the pool is busy; a pool thread is runnable in nearly all. */
const SAMPLES = 12;
/** Pauses before the looks after a failed one (≈ 1.5 s in all; each look costs ≈ 100 ms of CPU per pool thread). */
const RETRY_PAUSES_MS = [100, 200, 400, 800];

/**
 * Lowers the CPU scheduling priority (nice) of libuv's thread-pool threads, and of nothing else.
 *
 * Why: argon2 runs on the thread pool and keeps HASH_MAX_CONCURRENT threads busy for as long as
 * logins arrive. With one hashing thread per core, the main thread (HTTP parsing, token checks,
 * TOTP codes, /healthz, every query's result) has to wait for a time slice behind them: /healthz
 * p99 went from ~1 ms idle to 130 ms during a login flood on two cores. With the hashing threads
 * at nice 10 the scheduler gives the main thread the CPU whenever it has work and hashes take
 * the rest (the CPU is never idle while hashes wait). Measured in bench/README.md.
 *
 * How: on Linux, setpriority(PRIO_PROCESS, tid) with a thread id changes only that thread, and a
 * process may lower its own threads' priority without privileges. libuv 1.46 (Node 20) does not
 * name its threads (and per-thread CPU times are too coarse on some VMs), so they are found by
 * what they do: one CPU-bound pbkdf2 job per pool thread (≈ 100 ms each, once, at startup) and,
 * while all of them run, a few samples of /proc/self/task/<tid>/stat: the threads that are
 * runnable (state R) in (nearly) every sample, other than the main thread and the threads that were
 * already runnable just before the jobs began, are the pool. When their count is not the pool size
 * (something else was busy too: V8 compiling the just-built app, in session 21's bench) the look is
 * repeated after a pause, up to five looks; then nothing is changed. libuv creates every pool thread
 * at its first use, so none appears later. No-op on other platforms.
 *
 * `nice` is counted from the main thread's own nice value (capped at 19): started under `nice -n 15`
 * or systemd's `Nice=`, the pool goes to 19, never to an absolute 10 — which would fail with EACCES
 * without privileges (lowering a nice value needs them) and, as root, would put the hashes above the
 * event loop. Any refusal by the kernel leaves every thread as it was: the start goes on.
 */
export async function lowerThreadpoolPriority(options: { nice: number; poolSize: number }): Promise<number[]> {
  const { nice, poolSize } = options;
  if (process.platform !== 'linux' || nice <= 0) return [];
  const own = getPriority(process.pid);
  const target = Math.min(19, own + nice);
  if (target <= own) return [];
  let pool = await findPoolThreads(poolSize);
  for (const pause of RETRY_PAUSES_MS) {
    if (pool.length > 0) break;
    await new Promise((resolve) => setTimeout(resolve, pause));
    pool = await findPoolThreads(poolSize);
  }
  if (pool.length === 0) return [];
  const before = pool.map((tid) => getPriority(tid));
  try {
    for (const tid of pool) setPriority(tid, target);
  } catch {
    pool.forEach((tid, i) => {
      try {
        setPriority(tid, before[i]!);
      } catch {
        // the thread keeps what it had, or what it was given: never above the main thread
      }
    });
    return [];
  }
  return pool;
}

/**
 * One look for the pool's threads: the threads runnable in (nearly) every sample while one job per
 * pool thread runs, less the main thread and any thread already runnable before the jobs began
 * (V8 compiling, a worker, a pool thread still busy with another job). [] unless exactly poolSize.
 */
async function findPoolThreads(poolSize: number): Promise<number[]> {
  const busyBefore = new Set(runnableThreads());
  let running = poolSize;
  const jobs = Array.from({ length: poolSize }, () => new Promise((resolve, reject) => {
    pbkdf2('warm-up', 'threadpool', 100_000, 32, 'sha512', (err) => {
      running--;
      if (err) reject(err);
      else resolve(undefined);
    });
  }));
  const runnable = new Map<number, number>();
  for (let i = 0; i < SAMPLES && running === poolSize; i++) {
    await new Promise((resolve) => setTimeout(resolve, 4));
    if (running !== poolSize) break;
    for (const tid of runnableThreads()) runnable.set(tid, (runnable.get(tid) ?? 0) + 1);
  }
  const samples = Math.max(...runnable.values(), 0);
  await Promise.all(jobs);
  const pool = [...runnable]
    .filter(([tid, n]) => tid !== process.pid && !busyBefore.has(tid) && samples >= 3 && n >= samples - 1)
    .map(([tid]) => tid);
  return pool.length === poolSize ? pool : [];
}

/** Threads of this process that are running or waiting for a CPU (state R). */
function runnableThreads(): number[] {
  const tids: number[] = [];
  for (const entry of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${entry}/stat`, 'utf8');
      if (stat[stat.lastIndexOf(')') + 2] === 'R') tids.push(Number(entry));
    } catch {
      // the thread ended meanwhile
    }
  }
  return tids;
}
