import { userInfo } from 'node:os';
import { z } from 'zod';
import type { ChangeOrigin } from '../organization/user-admin.service.js';

/**
 * The origin of every change the operator CLI makes: no actor (the operator is no account of this
 * service), no IP, the CLI's user agent, and in each audit row's `details.cli` the `operator` (the
 * OS account that ran the command) and, when given, the `reason` (--reason).
 */

export type CliOrigin = ChangeOrigin & { by: 'cli' };

/**
 * --reason: why the operator runs the command (e.g. a ticket number); trimmed, on one line, and
 * nothing that reads differently from what it stores: no control or format characters (line
 * breaks, tabs, bidi overrides, zero-width spaces), line or paragraph separators, private-use or
 * unassigned code points; at least one letter or digit.
 */
export const OperatorReasonSchema = z
  .string()
  .trim()
  .min(1)
  .max(500)
  .regex(/^[^\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cn}]*$/u, 'no control characters (line breaks, tabs, bidi overrides, zero-width, ...)')
  .regex(/[\p{L}\p{N}]/u, 'at least one letter or digit');

/** What is stored as the operator: an account name as systems spell them (else the next source, else null). */
const ACCOUNT_NAME = /^[\p{L}\p{N}._@$-]{1,64}$/u;

export function cliOrigin(options: { reason?: string | undefined }, env: NodeJS.ProcessEnv = process.env): CliOrigin {
  const cli = { operator: operatorAccount(env), ...(options.reason === undefined ? {} : { reason: options.reason }) };
  return { actorUserId: null, actorName: null, by: 'cli', meta: { ip: null, userAgent: 'webshop-auth-cli', cli } };
}

/** Whoever ran it through sudo, else the account running it; null when the system cannot tell (no passwd entry for the uid). */
function operatorAccount(env: NodeJS.ProcessEnv): string | null {
  if (env.SUDO_USER && ACCOUNT_NAME.test(env.SUDO_USER)) return env.SUDO_USER;
  try {
    const { username } = userInfo();
    return ACCOUNT_NAME.test(username) ? username : null;
  } catch {
    return null;
  }
}
