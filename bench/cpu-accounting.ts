import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

/**
 * Where a phase's CPU goes, from /proc: the server's event loop (its main thread), its hashing
 * threads (the libuv pool threads it lowered to HASH_THREAD_NICE), its other threads (V8's GC and
 * compiler helpers), PostgreSQL (every `postgres` process), the load generator (this process) and
 * what the machine left idle or the hypervisor took (steal). Linux only; elsewhere all NaN.
 */

const TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime (s), stime alone, and nice of a /proc stat line. */
function parseStat(text: string): { cpu: number; system: number; nice: number; comm: string } {
  const close = text.lastIndexOf(')');
  const comm = text.slice(text.indexOf('(') + 1, close);
  const fields = text.slice(close + 2).split(' ');
  // fields[0] is field 3 (state): utime is field 14, stime 15, nice 19.
  return { cpu: (Number(fields[11]) + Number(fields[12])) / TICKS, system: Number(fields[12]) / TICKS, nice: Number(fields[16]), comm };
}

const read = (path: string): string | null => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
};

type ThreadCpu = { tid: number; cpu: number; system: number; lowered: boolean };

/** Each thread of a process: its CPU so far, and whether its nice value is above the main thread's (a lowered hashing thread). */
function threadsOf(pid: number): ThreadCpu[] {
  const stats = readdirSync(`/proc/${pid}/task`).flatMap((tid) => {
    const text = read(`/proc/${pid}/task/${tid}/stat`);
    return text ? [{ tid: Number(tid), ...parseStat(text) }] : [];
  });
  const own = stats.find((s) => s.tid === pid)?.nice ?? 0;
  return stats.map(({ tid, cpu, system, nice }) => ({ tid, cpu, system, lowered: nice > own }));
}

/** How many threads of a process run below its main thread's priority: the lowered hashing threads. */
export function loweredThreads(pid: number): number {
  return threadsOf(pid).filter((thread) => thread.lowered).length;
}

/** CPU seconds (user + system, all threads) a process has used so far. */
export function cpuSeconds(pid: number): number {
  const text = read(`/proc/${pid}/stat`);
  return text ? parseStat(text).cpu : NaN;
}

type Counters = {
  eventLoop: number;
  /** The event loop's time in the kernel (system calls: sockets above all). */
  eventLoopKernel: number;
  hashing: number;
  otherThreads: number;
  loadGenerator: number;
  idle: number;
  /** Idle with a disk read or write outstanding (PostgreSQL's WAL flushes, say). */
  iowait: number;
  steal: number;
};

export type CpuSnapshot = Counters & {
  at: number;
  /**
   * CPU seconds of each `postgres` process by pid: a backend that exits between two snapshots
   * (the pool closing an idle connection) must not take its whole lifetime's CPU off the sum.
   */
  postgres: ReadonlyMap<number, number>;
};

export function cpuSnapshot(serverPid: number): CpuSnapshot {
  let eventLoop = NaN;
  let eventLoopKernel = NaN;
  let hashing = 0;
  let otherThreads = 0;
  for (const { tid, cpu, system, lowered } of threadsOf(serverPid)) {
    if (tid === serverPid) {
      eventLoop = cpu;
      eventLoopKernel = system;
    }
    else if (lowered) hashing += cpu;
    else otherThreads += cpu;
  }
  const postgres = new Map<number, number>();
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const text = read(`/proc/${pid}/stat`);
    if (!text) continue;
    const { cpu, comm } = parseStat(text);
    if (comm.startsWith('postgres')) postgres.set(Number(pid), cpu);
  }
  const self = process.cpuUsage();
  // /proc/stat "cpu" line: user nice system idle iowait irq softirq steal ...
  const total = (read('/proc/stat') ?? '').split('\n')[0]!.split(/\s+/).slice(1).map(Number);
  return {
    at: performance.now(),
    eventLoop,
    eventLoopKernel,
    hashing,
    otherThreads,
    postgres,
    loadGenerator: (self.user + self.system) / 1e6,
    idle: (total[3] ?? NaN) / TICKS,
    iowait: (total[4] ?? NaN) / TICKS,
    steal: (total[7] ?? NaN) / TICKS,
  };
}

export type CpuShare = Record<keyof Counters | 'postgres', number>;

/** PostgreSQL's CPU seconds between two snapshots: the processes alive at the second, each from the first (or from its start). */
function postgresBetween(before: CpuSnapshot, after: CpuSnapshot): number {
  let seconds = 0;
  for (const [pid, cpu] of after.postgres) seconds += cpu - (before.postgres.get(pid) ?? 0);
  return seconds;
}

/** Cores used by each part between two snapshots (CPU seconds per wall second). */
export function coresBetween(before: CpuSnapshot, after: CpuSnapshot): CpuShare {
  return coresOver([[before, after]]);
}

/** Cores used by each part over several windows together (their CPU seconds over their wall seconds). */
export function coresOver(windows: readonly (readonly [CpuSnapshot, CpuSnapshot])[]): CpuShare {
  const seconds = windows.reduce((sum, [before, after]) => sum + (after.at - before.at) / 1000, 0);
  const cores = (k: keyof Counters) => windows.reduce((sum, [before, after]) => sum + after[k] - before[k], 0) / seconds;
  return {
    eventLoop: cores('eventLoop'),
    eventLoopKernel: cores('eventLoopKernel'),
    hashing: cores('hashing'),
    otherThreads: cores('otherThreads'),
    postgres: windows.reduce((sum, [before, after]) => sum + postgresBetween(before, after), 0) / seconds,
    loadGenerator: cores('loadGenerator'),
    idle: cores('idle'),
    iowait: cores('iowait'),
    steal: cores('steal'),
  };
}

/** The server's and PostgreSQL's cores between two snapshots (the load generator left out). */
export function busyCores(before: CpuSnapshot, after: CpuSnapshot): number {
  const c = coresBetween(before, after);
  return c.eventLoop + c.hashing + c.otherThreads + c.postgres;
}

/** "event loop 0.16 · hashing 1.62 · ..." cores, and ms per operation at `perSecond`. */
export function describeCores(share: CpuShare, perSecond: number): string {
  const parts: [string, number][] = [
    ['event loop', share.eventLoop],
    ['of which in the kernel', share.eventLoopKernel],
    ['other server threads', share.otherThreads],
    ['PostgreSQL', share.postgres],
    ['load generator', share.loadGenerator],
    ['hashing', share.hashing],
    ['idle', share.idle],
    ['I/O wait', share.iowait],
    ['steal', share.steal],
  ];
  const cores = parts.map(([name, c]) => `${name} ${c.toFixed(2)}`).join(' · ');
  const notHashing = share.eventLoop + share.otherThreads + share.postgres + share.loadGenerator;
  return `cores: ${cores}; besides hashing ${((notHashing / perSecond) * 1000).toFixed(1)} ms CPU per operation`;
}
