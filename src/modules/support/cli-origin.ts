import { userInfo } from 'node:os';
import { displayText } from '../../lib/display-text.js';
import type { ChangeOrigin } from '../organization/user-admin.service.js';

/**
 * The origin of every change the operator CLI makes: no actor (the operator is no account of this
 * service), no IP, the CLI's user agent, and in each audit row's `details.cli` the `operator` (the
 * OS account that ran the command) and, when given, the `reason` (--reason).
 */

export type CliOrigin = ChangeOrigin & { by: 'cli' };

/** --reason: why the operator runs the command (e.g. a ticket number); one line of visible text (displayText). */
export const OperatorReasonSchema = displayText(500);

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
