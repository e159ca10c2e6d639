import type { Test } from 'tap';
import { sha256Hex } from '../../../src/lib/tokens.js';
import { buildTestApp } from '../../helpers/app.js';
import { cli, cliEnv } from '../../helpers/cli.js';
import { createUser } from '../../helpers/factories.js';
import { api } from '../../helpers/http.js';

/**
 * The operator's commands for SUPPORT accounts (the API refuses them: support_staff_protected):
 * a test app whose database the commands run against (as child processes), and HTTP helpers to
 * check their effect. Each CLI run costs seconds, so the tests are spread over several files.
 */

const SECRET = 'cli-support-introspection-secret';
const BASIC = `Basic ${Buffer.from(`ops:${SECRET}`).toString('base64')}`;

/** How every operator command is audited: no actor, no IP, the CLI's user agent, no organisation. */
export const CLI_AUDIT = { actorUserId: null, ip: null, userAgent: 'webshop-auth-cli', organizationId: null };

export async function staffWorld(t: Test) {
  const base = await buildTestApp(t, { SERVICE_CLIENTS: `ops:${sha256Hex(SECRET)}:cso` });
  const request = api(base.app);
  const db = base.app.ctx.db;
  return {
    ...base,
    db,
    request,
    /** A SUPPORT user (default ACTIVE with TOTP) written to the database. */
    support: (email: string, options: Parameters<typeof createUser>[2] = {}) =>
      createUser(db, base.app, { roles: ['SUPPORT'], organizationId: null, email, ...options }),
    run: (...args: string[]) => cli(args, cliEnv(base.databaseUrl)),
    /** The raw introspection answer for an access token. */
    introspect: async (token: string) => (await request({ url: '/v1/tokens/introspect', headers: { authorization: BASIC }, body: { token } })).raw,
    login: (email: string, password: string | null) => request({ method: 'POST', url: '/v1/auth/login', body: { email, password } }),
  };
}
