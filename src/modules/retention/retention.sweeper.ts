import type { AppContext } from '../../context.js';
import { purgeEnded, type PurgeReport, type RetentionStep } from './retention.js';

type SweepLog = { info(obj: object, msg: string): void; error(obj: object, msg: string): void };

/**
 * Runs purgeEnded every RETENTION_SWEEP_INTERVAL_SECONDS (± 10 %) in this instance; the first sweep
 * comes at a random point of the first interval, so a restart or a rolling deploy does not sweep
 * at once and instances drift apart. Errors (database down, ...) are logged and the next sweep
 * comes as planned; `stop()` ends a sweep in flight after its current batch.
 */
export function startRetentionSweeper(
  ctx: Pick<AppContext, 'db' | 'clock' | 'config'>,
  log: SweepLog,
  onBatch: (step: RetentionStep, rows: number) => void,
): { stop(): Promise<void> } {
  const intervalMs = ctx.config.retentionSweepIntervalSeconds * 1000;
  let stopped = false;
  let running: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;

  const schedule = (ms: number) => {
    if (stopped) return;
    timer = setTimeout(sweep, ms);
    timer.unref();
  };
  function sweep(): void {
    running = (async () => {
      try {
        const report: PurgeReport = await purgeEnded(ctx, { shouldStop: () => stopped, onBatch });
        log.info({ purged: report }, 'retention sweep done');
      } catch (err) {
        log.error({ err: err instanceof Error ? err.message : String(err) }, 'retention sweep failed; next one as planned');
      }
      running = undefined;
      schedule(intervalMs * (0.9 + Math.random() * 0.2));
    })();
  }

  schedule(Math.random() * intervalMs);
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
