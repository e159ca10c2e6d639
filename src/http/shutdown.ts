import type { FastifyInstance } from 'fastify';

/**
 * The timeline of a graceful shutdown, counted from the signal (SIGTERM), all inside the 10 s a
 * container runtime waits before it kills (docker stop; Kubernetes waits 30 s):
 *
 * - 0 s: the drain begins. /readyz answers 503, every other request is served as usual, those
 *   arriving from now on with `Connection: close` (a kept-alive connection ends after its next answer), the instance
 *   still listens, and the mail worker claims no more mail. A balancer polling /readyz — over a
 *   kept-alive connection too: Node closes only idle connections, and only once the server closes —
 *   sees the 503 and stops sending new work before the listener goes away (the pattern of
 *   Keycloak's shutdown delay, of a Kubernetes preStop sleep).
 * - READY_DELAY_MS: the server stops listening and closes idle connections; requests in flight finish.
 * - MAIL_LIMIT_MS: a mail still being handed to an SMTP server that has not answered is handed back
 *   to the outbox (due now, for the next instance) instead of staying leased for its 10 minutes.
 * - DRAIN_LIMIT_MS: connections still open are cut (Node stops enforcing the request timeout once
 *   the server closes: a request whose body stalls would otherwise hold the drain until the kill).
 * - KILL_MS: close-with-grace exits, whatever is left.
 */
export const SHUTDOWN = {
  READY_DELAY_MS: 2_000,
  MAIL_LIMIT_MS: 5_000,
  DRAIN_LIMIT_MS: 6_000,
  KILL_MS: 8_000,
} as const;

/** Where this instance is in its shutdown; `begin()` is idempotent. */
export type Drain = {
  /** performance.now() when the drain began; null while serving normally. */
  readonly since: number | null;
  begin(): void;
  /** What is left of a limit counted from the start of the drain (0 once it has passed). */
  remaining(limitMs: number): number;
  /** Runs `listener` when the drain begins (at once if it already has). */
  onBegin(listener: () => void): void;
};

declare module 'fastify' {
  interface FastifyInstance {
    drain: Drain;
  }
}

function createDrain(): Drain {
  let since: number | null = null;
  const listeners: (() => void)[] = [];
  return {
    get since() {
      return since;
    },
    begin() {
      if (since !== null) return;
      since = performance.now();
      for (const listener of listeners.splice(0)) listener();
    },
    remaining(limitMs) {
      return since === null ? limitMs : Math.max(0, limitMs - (performance.now() - since));
    },
    onBegin(listener) {
      if (since === null) listeners.push(listener);
      else listener();
    },
  };
}

/**
 * Decorates the app with its Drain: every request arriving during the drain is answered with `Connection: close`,
 * `app.close()` begins the drain if nothing did (tests, an error exit), and connections still open
 * at DRAIN_LIMIT_MS are cut.
 */
export function registerDrain(app: FastifyInstance): Drain {
  const drain = createDrain();
  app.decorate('drain', drain);
  // A request that arrives during the drain gets `Connection: close` (as Fastify does once it
  // closes); one already in flight when it began keeps its connection, so that a request pipelined
  // behind it is still read and answered.
  app.addHook('onRequest', (_request, reply, done) => {
    if (drain.since !== null) reply.header('connection', 'close');
    done();
  });
  let cut: NodeJS.Timeout | undefined;
  app.addHook('preClose', (done) => {
    drain.begin();
    cut = setTimeout(() => app.server.closeAllConnections(), drain.remaining(SHUTDOWN.DRAIN_LIMIT_MS)).unref();
    done();
  });
  app.addHook('onClose', (_instance, done) => {
    clearTimeout(cut);
    done();
  });
  return drain;
}

/** What SIGTERM does (server.ts): the drain, READY_DELAY_MS of serving with /readyz at 503, then app.close(). */
export async function shutDown(app: FastifyInstance): Promise<void> {
  app.drain.begin();
  await new Promise((resolve) => setTimeout(resolve, app.drain.remaining(SHUTDOWN.READY_DELAY_MS)));
  await app.close();
}
