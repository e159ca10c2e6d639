import type { AppContext } from '../../context.js';
import { startPeriodicTask, type PeriodicTask } from '../../lib/periodic-task.js';
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
): PeriodicTask {
  const intervalMs = ctx.config.retentionSweepIntervalSeconds * 1000;
  const nextSweep = () => intervalMs * (0.9 + Math.random() * 0.2);
  return startPeriodicTask({
    firstDelayMs: Math.random() * intervalMs,
    async pass(stopping) {
      const report: PurgeReport = await purgeEnded(ctx, { shouldStop: stopping, onBatch });
      log.info({ purged: report }, 'retention sweep done');
      return nextSweep();
    },
    failed(err) {
      log.error({ err: err instanceof Error ? err.message : String(err) }, 'retention sweep failed; next one as planned');
      return nextSweep();
    },
  });
}
