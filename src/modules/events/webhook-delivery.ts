import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { Webhook } from 'standardwebhooks';
import type { AppContext } from '../../context.js';
import type { EventWebhookConfig } from '../../config.js';
import { addSeconds } from '../../lib/clock.js';
import { startPeriodicTask, type PeriodicTask } from '../../lib/periodic-task.js';
import { backoffSeconds } from '../../lib/retry.js';
import type { MailLog } from '../mail/mail.worker.js';
import { z } from 'zod';
import { FEED_EVENT_TYPES, FeedEventSchema, countFeedEvents, currentFeedEnd, readFeedEvents, type FeedEvent } from './event-feed.js';

/**
 * Pushes the event feed (event-feed.ts) to the webhooks in EVENT_WEBHOOKS, so CSO 3.0 and others
 * learn of a block or an erasure without polling GET /v1/events. Each event is one POST, signed as
 * Standard Webhooks (standardwebhooks.com) specify: headers `webhook-id` (the event id, the same on
 * every retry: receivers drop what they already have), `webhook-timestamp` (seconds, when sent) and
 * `webhook-signature` (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per configured
 * secret, so a receiver can change its secret without losing events); body
 * `{"type", "timestamp", "data": <the feed event>}`.
 *
 * In feed order, one event at a time: the next only after the receiver accepted this one (2xx
 * within WEBHOOK_TIMEOUT_MS; a redirect is a failure). A failure is retried after 5 s, 10 s, ...
 * up to 10 min apart, for as long as it takes: nothing is skipped or given up while the audit rows
 * are kept (AUDIT_RETENTION_DAYS). At least once: an event the receiver accepted is sent again
 * when the service could not record that (the process died in between).
 *
 * Several instances may run this. Each webhook's row (`event_webhooks`) holds its cursor; an
 * instance that finds events waiting claims the row for WEBHOOK_LEASE_SECONDS with a token of its
 * own, renewed with every event, and writes to the row only while it still holds that token —
 * one instance delivers to a webhook at a time, and a dead one's lease runs out. A new webhook
 * starts at the feed's end when first seen (what happened before is in GET /v1/events).
 */

export const WEBHOOK_TIMEOUT_MS = 10_000;
export const WEBHOOK_LEASE_SECONDS = 60;
export const WEBHOOK_RETRY_BASE_SECONDS = 5;
export const WEBHOOK_RETRY_MAX_SECONDS = 600;
const ERROR_TEXT_MAX = 500;

export type WebhookCtx = Pick<AppContext, 'db' | 'pool' | 'clock'>;

/** Delay before the next attempt after `attempts` consecutive failures. */
export function webhookRetryDelaySeconds(attempts: number): number {
  return backoffSeconds(attempts, WEBHOOK_RETRY_BASE_SECONDS, WEBHOOK_RETRY_MAX_SECONDS);
}

/** The body of a webhook's POST: the OpenAPI document's `webhooks.feedEvent` (openApiWebhooks). */
export const WebhookPayloadSchema = z
  .object({
    type: z.enum(FEED_EVENT_TYPES).describe('The event type (as data.type)'),
    timestamp: z.iso.datetime().describe('When it happened (as data.occurredAt)'),
    data: FeedEventSchema,
  })
  .meta({ id: 'FeedWebhookPayload' });

type WebhookPayload = z.infer<typeof WebhookPayloadSchema>;

const signatureHeader = (name: string, description: string) => ({ name, in: 'header', required: true, schema: { type: 'string' }, description });

/**
 * The webhooks in the OpenAPI document (3.1 `webhooks`): what a receiver gets and answers, so an
 * integrator generates the receiver's types from the same document as the client's (integrator
 * review, session 30: the payload was described in prose only).
 */
export const openApiWebhooks = {
  feedEvent: {
    post: {
      operationId: 'receiveFeedEvent',
      tags: ['tokens'],
      summary: 'One event of the feed, pushed to each EVENT_WEBHOOKS receiver (Standard Webhooks)',
      description:
        'One POST per event, in feed order; the next only after the receiver accepted this one. Verify the signature with any ' +
        'Standard Webhooks library and the secret from EVENT_WEBHOOK_SECRETS, refuse a webhook-timestamp more than 5 minutes ' +
        'away, and drop a webhook-id already seen (at least once: the same event may come again).',
      parameters: [
        signatureHeader('webhook-id', 'The event id (data.id): the same on every retry'),
        signatureHeader('webhook-timestamp', 'Seconds since the epoch, when this attempt was sent'),
        signatureHeader('webhook-signature', '`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, one per configured secret, space-separated'),
      ],
      requestBody: { required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/FeedWebhookPayload' } } } },
      responses: {
        '2XX': { description: `Accepted (within ${WEBHOOK_TIMEOUT_MS / 1000} s): the next event follows` },
        default: {
          description: `Anything else, a redirect, or no answer within ${WEBHOOK_TIMEOUT_MS / 1000} s: the same event again after 5 s, 10 s, … up to ${WEBHOOK_RETRY_MAX_SECONDS / 60} min apart, until accepted`,
        },
      },
    },
  },
};

/** The signed request for one event (exported for the tests' receiver). */
export function signedRequest(webhook: EventWebhookConfig, event: FeedEvent, at: Date): { headers: Record<string, string>; body: string } {
  const payload: WebhookPayload = { type: event.type, timestamp: event.occurredAt, data: event };
  const body = JSON.stringify(payload);
  const signatures = webhook.secrets.map((secret) => new Webhook(secret).sign(event.id, at, body));
  return {
    body,
    headers: {
      'content-type': 'application/json',
      'webhook-id': event.id,
      'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
      'webhook-signature': signatures.join(' '),
    },
  };
}

/** Sends one event; answers null when the receiver accepted it, else what went wrong. `abort`: the process is stopping. */
async function send(webhook: EventWebhookConfig, event: FeedEvent, at: Date, abort: AbortSignal | undefined): Promise<string | null> {
  const { headers, body } = signedRequest(webhook, event, at);
  const timeout = AbortSignal.timeout(WEBHOOK_TIMEOUT_MS);
  try {
    const signal = abort ? AbortSignal.any([timeout, abort]) : timeout;
    const res = await fetch(webhook.url, { method: 'POST', headers, body, redirect: 'manual', signal });
    await res.body?.cancel();
    return res.status >= 200 && res.status < 300 ? null : `HTTP ${res.status}`;
  } catch (err) {
    // fetch's own message ("fetch failed") says nothing; its cause names the socket error.
    const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
    const reason = timeout.aborted ? `no answer within ${WEBHOOK_TIMEOUT_MS} ms` : (e.cause?.code ?? e.cause?.message ?? e.message ?? String(err));
    return reason.slice(0, ERROR_TEXT_MAX);
  }
}

type Row = { cursor: string; due: boolean };

/** The webhook's row, made at the feed's end when it is new. */
async function loadRow(ctx: WebhookCtx, name: string): Promise<Row> {
  const now = ctx.clock.now();
  const read = () => ctx.db.$queryRaw<Row[]>`
    SELECT cursor, (next_attempt_at <= ${now} AND (locked_until IS NULL OR locked_until <= ${now})) AS due
      FROM event_webhooks WHERE name = ${name}`;
  const [row] = await read();
  if (row) return row;
  await ctx.db.$executeRaw`
    INSERT INTO event_webhooks (name, cursor, next_attempt_at, created_at) VALUES (${name}, ${await currentFeedEnd(ctx.pool)}, ${now}, ${now})
    ON CONFLICT (name) DO NOTHING`;
  return (await read())[0]!;
}

export type WebhookResult = { delivered: number; failed: boolean };

/**
 * Delivers up to `limit` waiting events to one webhook, if it is due and no other instance holds
 * it. Tests call this directly.
 */
export async function deliverWebhookEvents(
  ctx: WebhookCtx,
  webhook: EventWebhookConfig,
  options: { limit?: number; log?: MailLog; stopping?: () => boolean; abort?: AbortSignal } = {},
): Promise<WebhookResult> {
  const { limit = 100, log, stopping = () => false, abort } = options;
  const result: WebhookResult = { delivered: 0, failed: false };
  const row = await loadRow(ctx, webhook.name);
  if (!row.due) return result;
  let entries = await readFeedEvents(ctx.pool, row.cursor, limit);
  if (entries.length === 0) return result;

  // Claimed only with events waiting (an idle poll writes nothing), and only at the cursor just read.
  const claimToken = randomUUID();
  const lease = () => addSeconds(ctx.clock.now(), WEBHOOK_LEASE_SECONDS);
  const now = ctx.clock.now();
  const [claimed] = await ctx.db.$queryRaw<{ attempts: number }[]>`
    UPDATE event_webhooks SET locked_until = ${lease()}, claim_token = ${claimToken}::uuid
     WHERE name = ${webhook.name} AND cursor = ${row.cursor}
       AND next_attempt_at <= ${now} AND (locked_until IS NULL OR locked_until <= ${now})
    RETURNING attempts`;
  if (!claimed) return result;
  // Only this claim writes the row while it holds it: the count it read (reset by each success) is the count.
  let failuresInARow = claimed.attempts;

  try {
    while (entries.length > 0) {
      for (const { event, cursor } of entries) {
        if (stopping()) return result;
        const error = await send(webhook, event, ctx.clock.now(), abort);
        // Cut short by a shutdown: not the receiver's failure; the next instance sends it again.
        if (error !== null && abort?.aborted) return result;
        if (error !== null) {
          result.failed = true;
          const attempts = failuresInARow + 1;
          const retryInSeconds = webhookRetryDelaySeconds(attempts);
          await ctx.db.$executeRaw`
            UPDATE event_webhooks SET attempts = ${attempts}, last_error = ${error}, next_attempt_at = ${addSeconds(ctx.clock.now(), retryInSeconds)}
             WHERE name = ${webhook.name} AND claim_token = ${claimToken}::uuid`;
          log?.warn({ webhook: webhook.name, eventId: event.id, attempts, retryInSeconds, err: error }, 'webhook delivery failed; will retry');
          return result;
        }
        const moved = await ctx.db.$executeRaw`
          UPDATE event_webhooks SET cursor = ${cursor}, attempts = 0, last_error = NULL, last_delivered_at = ${ctx.clock.now()}, locked_until = ${lease()}
           WHERE name = ${webhook.name} AND claim_token = ${claimToken}::uuid`;
        result.delivered++;
        failuresInARow = 0;
        if (moved !== 1) {
          log?.warn({ webhook: webhook.name, eventId: event.id }, 'webhook event delivered after the lease was lost; another instance may send it again');
          return result;
        }
        if (result.delivered >= limit) return result;
      }
      entries = await readFeedEvents(ctx.pool, entries.at(-1)!.cursor, limit - result.delivered);
    }
    return result;
  } finally {
    await ctx.db.$executeRaw`
      UPDATE event_webhooks SET locked_until = NULL, claim_token = NULL WHERE name = ${webhook.name} AND claim_token = ${claimToken}::uuid`;
  }
}

/** Counted up to this many (list-webhooks): beyond, the receiver is far behind either way. */
const WAITING_COUNT_MAX = 10_000;

/** Each configured webhook's delivery state (the CLI's list-webhooks); `started: false` before the first delivery pass. */
export async function webhookStates(pool: pg.Pool, webhooks: readonly EventWebhookConfig[]) {
  const { rows } = await pool.query<{ name: string; cursor: string; attempts: number; next_attempt_at: Date; last_error: string | null; last_delivered_at: Date | null }>(
    'SELECT name, cursor, attempts, next_attempt_at, last_error, last_delivered_at FROM event_webhooks WHERE name = ANY($1::text[])',
    [webhooks.map((w) => w.name)],
  );
  // The query string may carry a receiver's token: shown as "?…" (output ends up in tickets).
  const shown = (url: string) => {
    const u = new URL(url);
    return u.search ? `${u.origin}${u.pathname}?…` : url;
  };
  return Promise.all(
    webhooks.map(async (webhook) => {
      const row = rows.find((r) => r.name === webhook.name);
      const url = shown(webhook.url);
      if (!row) return { name: webhook.name, url, started: false };
      const waiting = await countFeedEvents(pool, row.cursor, WAITING_COUNT_MAX);
      return {
        name: webhook.name,
        url,
        started: true,
        eventsWaiting: waiting >= WAITING_COUNT_MAX ? `${WAITING_COUNT_MAX}+` : waiting,
        failuresInARow: row.attempts,
        nextAttemptAt: row.attempts > 0 ? row.next_attempt_at.toISOString() : null,
        lastError: row.last_error,
        lastDeliveredAt: row.last_delivered_at?.toISOString() ?? null,
      };
    }),
  );
}

export type WebhookWorker = PeriodicTask;

/** delivered: events the receiver accepted; failed: attempts it refused or missed (retried); error: passes that failed on our side. */
export type WebhookOutcome = 'delivered' | 'failed' | 'error';

/**
 * One loop per webhook, each polling every `intervalMs` (at once again while full batches keep
 * coming): a receiver that is slow, even one that does answer 2xx, holds up only its own events.
 */
export function startWebhookWorker(
  ctx: WebhookCtx,
  webhooks: readonly EventWebhookConfig[],
  log: MailLog,
  options: { intervalMs?: number; batchSize?: number; onDelivered?: (webhook: string, outcome: WebhookOutcome, count: number) => void } = {},
): WebhookWorker {
  const intervalMs = options.intervalMs ?? 1000;
  const batchSize = options.batchSize ?? 100;
  // A shutdown does not wait up to WEBHOOK_TIMEOUT_MS for a receiver that is slow to answer.
  const shutdown = new AbortController();
  const tasks = webhooks.map((webhook) =>
    startPeriodicTask({
      firstDelayMs: 0,
      async pass(stopping) {
        const { delivered, failed } = await deliverWebhookEvents(ctx, webhook, { limit: batchSize, log, stopping, abort: shutdown.signal });
        if (delivered > 0) options.onDelivered?.(webhook.name, 'delivered', delivered);
        if (failed) options.onDelivered?.(webhook.name, 'failed', 1);
        return delivered === batchSize ? 0 : intervalMs;
      },
      failed(err) {
        // Our side (the database unreachable, a table the service role may not use): counted apart
        // from the receiver's failures, which the webhook's row records.
        options.onDelivered?.(webhook.name, 'error', 1);
        log.error({ webhook: webhook.name, err: err instanceof Error ? err.message : String(err) }, 'webhook delivery pass failed; retrying');
        return intervalMs;
      },
    }),
  );
  return {
    async stop() {
      shutdown.abort();
      await Promise.all(tasks.map((task) => task.stop()));
    },
    wake() {
      for (const task of tasks) task.wake();
    },
  };
}
