import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Runs `work`, and again after a pause when it throws an error `retryable` accepts (any, by
 * default): `tries` runs in all, pausing `firstDelayMs`, then twice as long each time. The last
 * error is thrown. For a single statement whose loss costs more than a moment's wait (a mail sent
 * twice, a correct password left counted as a failure).
 */
export async function retrying<T>(
  work: () => Promise<T>,
  options: { tries: number; firstDelayMs: number; retryable?: (err: unknown) => boolean },
): Promise<T> {
  for (let tried = 1; ; tried++) {
    try {
      return await work();
    } catch (err) {
      if (tried >= options.tries || !(options.retryable?.(err) ?? true)) throw err;
      await sleep(options.firstDelayMs * 2 ** (tried - 1));
    }
  }
}

/** Exponential back-off: `baseSeconds` after the first failure, doubling with each one after, at most `maxSeconds`. */
export function backoffSeconds(failures: number, baseSeconds: number, maxSeconds: number): number {
  return Math.min(baseSeconds * 2 ** Math.min(Math.max(failures - 1, 0), 20), maxSeconds);
}
