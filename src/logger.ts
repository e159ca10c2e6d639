import type { FastifyBaseLogger, FastifyServerOptions } from 'fastify';
import { stdSerializers } from 'pino';
import type { Config } from './config.js';

/** Field names whose values must never reach a log line, at any depth we log. */
const SECRET_FIELDS = [
  'password', 'currentPassword', 'newPassword', 'recoveryCode', 'recoveryCodes', 'token',
  'challengeToken', 'refreshToken', 'accessToken', 'secret', 'otpauthUri', 'authorization', 'cookie',
  'passwordHash', 'secretCiphertext', 'clientSecret', 'link', 'url', 'pngDataUrl', 'svg',
];

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  ...SECRET_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]),
  // A TOTP code is `code` in a request body; elsewhere `code` is an error's (a problem's code, a
  // SQLSTATE, ECONNREFUSED), which operators need to read.
  'body.code',
  '*.body.code',
  'input.code',
  '*.input.code',
];

function withoutRawPacket(err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const { rawPacket: _raw, ...rest } = stdSerializers.err(err) as ReturnType<typeof stdSerializers.err> & { rawPacket?: unknown };
  return rest;
}

/** The most of a request's path and user agent a log line holds (as the audit rows keep of the user agent). */
const LOGGED_TEXT_MAX = 512;
const clipped = (text: unknown) => (typeof text === 'string' ? text.slice(0, LOGGED_TEXT_MAX) : text);

/** Where a request's child logger keeps its request id (see requestChildLogger). */
const REQUEST_ID = Symbol('requestId');
/** And who made the request, once authenticated (logWho). */
const WHO = Symbol('who');
type Who = { userId: string; sessionId: string; organizationId: string | null } | { clientId: string };
type RequestLogger = FastifyBaseLogger & { [REQUEST_ID]?: string; [WHO]?: Who };

/**
 * Names who made the request on every line its logger writes from then on, "request completed"
 * included: the signed-in user with session and organisation, or the service client. Reads are not
 * audited (the audit log records changes), so these lines are what shows which data an account or
 * a client read, e.g. after a takeover (DPO review, session 30: no line named the reader). Nothing
 * is built unless a line is written.
 */
export function logWho(log: FastifyBaseLogger, who: Who): void {
  (log as RequestLogger)[WHO] = who;
}

type SerializableRequest = { method: string; url: string; id: string; ip?: string; headers: Record<string, unknown> };

export function loggerOptions(config: Config): FastifyServerOptions['logger'] {
  return {
    level: config.logLevel,
    redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
    // Adds the request id to every line a request's logger writes (see requestChildLogger).
    mixin: (_object: object, _level: number, logger: RequestLogger) => {
      const reqId = logger[REQUEST_ID];
      if (reqId === undefined) return {};
      const who = logger[WHO];
      return who === undefined ? { reqId } : { reqId, ...who };
    },
    serializers: {
      // Node attaches the raw bytes of a malformed request to its parse error (`rawPacket`: headers
      // and body, Authorization and passwords included), which Fastify logs at trace. Without them,
      // the error's code and message remain; an `err` that is a message stays as it is (Fastify's
      // type says every `err` is an error, pino passes whatever was logged).
      err: withoutRawPacket as unknown as (err: Error) => ReturnType<typeof stdSerializers.err>,
      // Only the path: a query string may carry something secret someone put there by mistake. Path
      // and user agent at most LOGGED_TEXT_MAX characters: a 15-KB user agent on /healthz, which no
      // limit counts, wrote 15 KB of log per request (DoS review, session 32).
      req: (req: SerializableRequest) => ({
        id: req.id,
        method: req.method,
        path: clipped(req.url.split('?')[0]),
        ip: req.ip,
        userAgent: clipped(req.headers['user-agent']),
      }),
    },
  };
}

/**
 * Fastify's child logger for each request, without pino's cost per child: pino serialises a child's
 * bindings (here the request id) through every wildcard redaction path when the child is created,
 * ≈ 7 µs on every request although most requests write no line at all (LOG_LEVEL=warn). The child
 * keeps the request id as a plain property instead, and the mixin of loggerOptions writes it into
 * the lines the request does log, where the redaction covers it like any other field.
 */
export const requestChildLogger: NonNullable<FastifyServerOptions['childLoggerFactory']> = (logger, bindings, options) => {
  const child: RequestLogger = logger.child({}, options);
  child[REQUEST_ID] = String(bindings.reqId);
  return child;
};
