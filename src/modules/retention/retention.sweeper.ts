import type { AppContext } from '../../context.js';
import { purgeEnded, type PurgeReport } from './retention.js';

type SweepLog = { info(obj: object, msg: string): void; error(obj: object, msg: string): void };

/**
 * Runs purgeEnded every RETENTION_SWEEP_INTERVAL_SECONDS in this instance (first after a random
 * part of a minute, so instances started together do not sweep together). Errors (database down,
 * ...) are logged and the next sweep comes as planned; `stop()` waits for the sweep in flight.
 */
export function startRetentionSweeper(
  ctx: Pick<AppContext, 'db' | 'clock' | 'config'>,
  log: SweepLog,
  onPurged: (report: PurgeReport) => void,
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
        const report = await purgeEnded(ctx);
        onPurged(report);
        log.info({ purged: report }, 'retention sweep done');
      } catch (err) {
        log.error({ err: err instanceof Error ? err.message : String(err) }, 'retention sweep failed; next one as planned');
      }
      running = undefined;
      schedule(intervalMs);
    })();
  }

  schedule(Math.min(intervalMs, Math.floor(Math.random() * 60_000)));
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
