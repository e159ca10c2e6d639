import { readFileSync } from 'node:fs';

/**
 * How many connections the listener takes at once. Each costs a file descriptor, and so does
 * everything else the process opens (PostgreSQL, Redis, SMTP, /proc reads): with every descriptor
 * taken by clients, the next of those fails with EMFILE — @fastify/under-pressure's once-a-second
 * process.memoryUsage() among them, an uncaught error that ended the process (DoS review, session
 * 32: one client holding idle kept-alive connections). Past the limit Node closes new connections
 * at once; those already open are served as before.
 *
 * Default: the open-file limit less a quarter of it (at least 128, at most 1,024 descriptors kept
 * for the rest), at most DEFAULT_CEILING (about 7 KiB of memory each); without a known limit
 * (not Linux) the ceiling.
 */
export const DEFAULT_CEILING = 10_000;

/** Descriptors left for everything but clients: a quarter of the limit, at least 128, at most 1,024. */
const keptFor = (openFileLimit: number): number => Math.min(1024, Math.max(128, Math.floor(openFileLimit / 4)));

export function defaultMaxConnections(openFileLimit: number | null): number {
  if (openFileLimit === null) return DEFAULT_CEILING;
  return Math.max(1, Math.min(DEFAULT_CEILING, openFileLimit - keptFor(openFileLimit)));
}

/** Whether a configured limit leaves fewer descriptors for the rest than the default keeps (warned about at start). */
export function leavesTooFewDescriptors(maxConnections: number, openFileLimit: number | null): boolean {
  return openFileLimit !== null && maxConnections > openFileLimit - keptFor(openFileLimit);
}

/** The soft open-file limit of this process (Node raised it to the hard one at start), from /proc/self/limits; null elsewhere. */
export function openFileLimit(limits = readLimits()): number | null {
  const soft = /^Max open files\s+(\d+|unlimited)\s/m.exec(limits ?? '')?.[1];
  return soft === undefined || soft === 'unlimited' ? null : Number(soft);
}

function readLimits(): string | null {
  try {
    return readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return null;
  }
}
