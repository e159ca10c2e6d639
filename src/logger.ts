import type { FastifyServerOptions } from 'fastify';
import type { Config } from './config.js';

/** Field names whose values must never reach a log line, at any depth we log. */
const SECRET_FIELDS = [
  'password', 'currentPassword', 'newPassword', 'code', 'recoveryCode', 'recoveryCodes', 'token',
  'challengeToken', 'refreshToken', 'accessToken', 'secret', 'otpauthUri', 'authorization', 'cookie',
  'passwordHash', 'secretCiphertext', 'clientSecret', 'link', 'url', 'pngDataUrl', 'svg',
];

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  ...SECRET_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]),
];

type SerializableRequest = { method: string; url: string; id: string; ip?: string; headers: Record<string, unknown> };

export function loggerOptions(config: Config): FastifyServerOptions['logger'] {
  return {
    level: config.logLevel,
    redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
    serializers: {
      // Only the path: a query string may carry something secret someone put there by mistake.
      req: (req: SerializableRequest) => ({
        id: req.id,
        method: req.method,
        path: req.url.split('?')[0],
        ip: req.ip,
        userAgent: req.headers['user-agent'],
      }),
    },
  };
}
