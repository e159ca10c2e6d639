/**
 * A background loop in this process (the mail worker, the retention sweep): one pass at a time, each
 * pass deciding when the next one comes. A failing pass is reported and the loop goes on;
 * `stop()` cancels what is planned and waits for the pass in flight, which can ask `stopping()`
 * to end early. The timer is unref'd: a loop never keeps the process alive.
 */
export type PeriodicTask = {
  stop(): Promise<void>;
  /** Runs a pass now unless one is running (e.g. the mail worker after a mail was written). */
  wake(): void;
};

export function startPeriodicTask(options: {
  firstDelayMs: number;
  /** One pass; answers the delay until the next. */
  pass: (stopping: () => boolean) => Promise<number>;
  /** Reports a failed pass; answers the delay until the next. */
  failed: (err: unknown) => number;
}): PeriodicTask {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  const stopping = () => stopped;

  const schedule = (ms: number) => {
    if (stopped) return;
    clearTimeout(timer);
    timer = setTimeout(run, ms);
    timer.unref();
  };

  function run(): void {
    if (stopped || running) return;
    running = (async () => {
      let next: number;
      try {
        next = await options.pass(stopping);
      } catch (err) {
        next = options.failed(err);
      }
      running = undefined;
      schedule(next);
    })();
  }

  schedule(options.firstDelayMs);
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
    wake() {
      if (!running) schedule(0);
    },
  };
}
