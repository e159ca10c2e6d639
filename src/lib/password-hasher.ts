import { randomBytes } from 'node:crypto';
import argon2 from 'argon2';
import type { HashOptions } from 'argon2';

export type PasswordHasherOptions = {
  /** KiB */
  memoryCost: number;
  timeCost: number;
  parallelism: number;
  maxConcurrent: number;
  maxQueued: number;
};

export type PasswordHasher = {
  hash(password: string): Promise<string>;
  verify(hash: string, password: string): Promise<{ valid: boolean; needsRehash: boolean }>;
  verifyDummy(password: string): Promise<void>;
  stats(): { running: number; queued: number; runs: HashRuns };
};

/** argon2 runs finished since start, by kind: real verifications, dummy ones, new hashes. */
export type HashRuns = { verify: number; dummy: number; hash: number };

// Thrown instead of queueing without bound: each argon2 run holds memoryCost KiB, so a login
// flood must be shed (HTTP 503 + Retry-After) rather than exhaust memory or the libuv pool.
export class HashQueueFullError extends Error {
  readonly code = 'service_overloaded';

  constructor() {
    super('Too many password hashing operations are waiting.');
    this.name = 'HashQueueFullError';
  }
}

export type Argon2Params = {
  algorithm: 'argon2id' | 'argon2i' | 'argon2d';
  version: number;
  memoryCost: number;
  timeCost: number;
  parallelism: number;
};

// @phc/format (used by argon2) writes parameters sorted by name ("m=..,p=..,t=.."), other
// libraries write "m=..,t=..,p=..": accept any order, but each of m, t, p exactly once.
const PHC = /^\$(argon2id|argon2i|argon2d)\$(?:v=(\d+)\$)?([mtp]=\d+,[mtp]=\d+,[mtp]=\d+)\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/;
const ARGON2_VERSION = 0x13;

export function parseArgon2Hash(hash: string): Argon2Params | undefined {
  const match = PHC.exec(hash);
  if (!match) return undefined;
  const params = new Map((match[3] ?? '').split(',').map((kv) => [kv[0], Number(kv.slice(2))] as const));
  const [m, t, p] = [params.get('m'), params.get('t'), params.get('p')];
  if (m === undefined || t === undefined || p === undefined) return undefined;
  return {
    algorithm: match[1] as Argon2Params['algorithm'],
    // PHC strings from before version 1.3 omit v=.
    version: match[2] === undefined ? 0x10 : Number(match[2]),
    memoryCost: m,
    timeCost: t,
    parallelism: p,
  };
}

function assertCount(name: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) throw new RangeError(`${name} must be an integer ≥ ${min}`);
}

export function createPasswordHasher(options: PasswordHasherOptions): PasswordHasher {
  const { memoryCost, timeCost, parallelism, maxConcurrent, maxQueued } = options;
  assertCount('maxConcurrent', maxConcurrent, 1);
  assertCount('maxQueued', maxQueued, 0);
  const hashOptions: HashOptions = { type: argon2.argon2id, memoryCost, timeCost, parallelism, version: ARGON2_VERSION };

  let running = 0;
  const waiting: Array<() => void> = [];
  const runs: HashRuns = { verify: 0, dummy: 0, hash: 0 };

  async function schedule<T>(kind: keyof HashRuns, task: () => Promise<T>): Promise<T> {
    if (running < maxConcurrent) {
      running++;
    } else {
      if (waiting.length >= maxQueued) throw new HashQueueFullError();
      // The finishing task hands its slot over directly, so `running` stays counted.
      await new Promise<void>((resolve) => waiting.push(resolve));
    }
    try {
      return await task();
    } finally {
      runs[kind]++;
      const next = waiting.shift();
      if (next) next();
      else running--;
    }
  }

  // Parameters weaker than configured mean the config was raised since this hash was made;
  // stronger ones are left alone so lowering the config by mistake never downgrades hashes.
  const isOutdated = (p: Argon2Params): boolean =>
    p.algorithm !== 'argon2id' ||
    p.version !== ARGON2_VERSION ||
    p.memoryCost < memoryCost ||
    p.timeCost < timeCost ||
    p.parallelism < parallelism;

  let dummyHash: Promise<string> | undefined;
  const getDummyHash = (): Promise<string> =>
    (dummyHash ??= argon2.hash(randomBytes(32).toString('base64url'), hashOptions).catch((err: unknown) => {
      dummyHash = undefined;
      throw err;
    }));

  const verifyDummy = (password: string): Promise<void> =>
    schedule('dummy', async () => {
      await argon2.verify(await getDummyHash(), password);
    });

  return {
    hash: (password) => schedule('hash', () => argon2.hash(password, hashOptions)),

    async verify(hash, password) {
      const params = parseArgon2Hash(hash);
      if (!params) {
        // A corrupt row must not answer faster than a real one, or it becomes an oracle.
        await verifyDummy(password);
        return { valid: false, needsRehash: true };
      }
      // argon2 throws on parameters it cannot run (e.g. impossible memory); that is a failed
      // verification, not a server error.
      const check = () => argon2.verify(hash, password).catch(() => false);
      if (!isOutdated(params)) return { valid: await schedule('verify', check), needsRehash: false };
      // Made with weaker parameters than configured (they were raised since): this check is
      // quicker than the dummy an unknown address gets, and would tell the two apart by time
      // (security.md item 5). The dummy runs beside it, in the same slot (so it is never refused
      // on its own, and waits in no queue of its own): the answer comes no sooner than an unknown
      // address's would, given a spare core; only until the user signs in once and the hash is renewed.
      const valid = await schedule('verify', async () => {
        const [checked] = await Promise.all([check(), argon2.verify(await getDummyHash(), password)]);
        runs.dummy++;
        return checked;
      });
      return { valid, needsRehash: true };
    },

    verifyDummy,

    stats: () => ({ running, queued: waiting.length, runs: { ...runs } }),
  };
}
