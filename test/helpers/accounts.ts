import type { FastifyInstance } from 'fastify';
import { sendActivation } from '../../src/modules/activation/activation.service.js';
import { deliverDueMail } from '../../src/modules/mail/mail.worker.js';
import { createUser, type CreateUserOptions } from './factories.js';

/**
 * Helpers for the account tests (activation, login, passwords, mail). Users and organisations come
 * from ./factories.ts; this adds invitations, e-mail links and outbox delivery.
 */

/** Passes the policy for the users below (no e-mail local part, organisation or shop name in it). */
export const GOOD_PASSWORD = 'Velvet orbit lantern 93!';
export const OTHER_PASSWORD = 'Quiet harbour pickle 58?';

/** An INVITED user with a fresh activation link, issued the way administrators do it. */
export async function inviteUser(
  app: FastifyInstance,
  input: Omit<CreateUserOptions, 'status' | 'password'> & { organizationName?: string | null } = {},
) {
  const { user } = await createUser(app.ctx.db, app, { ...input, status: 'INVITED', password: null, withTotp: false });
  const organizationName =
    input.organizationName !== undefined
      ? input.organizationName
      : input.organizationId
        ? (await app.ctx.db.organization.findUniqueOrThrow({ where: { id: input.organizationId } })).name
        : null;
  const { link, expiresAt } = await app.ctx.db.$transaction((tx) =>
    sendActivation(tx, app.ctx, { user, organizationName: organizationName ?? null, actorUserId: null, by: 'cli' }),
  );
  return { user, link, token: tokenFromLink(link), expiresAt };
}

/** The token of the first link in a text (an e-mail body or a link). */
export function tokenFromLink(text: string, path?: string): string {
  const pattern = new RegExp(`https?://[^\\s"<>]*${path ? path.replace(/[/.]/g, '\\$&') : ''}\\?token=([A-Za-z0-9_%-]+)`);
  const match = pattern.exec(text);
  if (!match?.[1]) throw new Error(`no link${path ? ` to ${path}` : ''} in: ${text.slice(0, 500)}`);
  return decodeURIComponent(match[1]);
}

/** Delivers everything due in the outbox through the app's transport (the SMTP sink in tests). */
export async function deliverMail(app: FastifyInstance) {
  return deliverDueMail(app.ctx, app.ctx.mailTransport, 100);
}

/** The audit rows about a user (or all), oldest first. */
export async function auditEvents(app: FastifyInstance, subjectUserId?: string) {
  return app.ctx.db.auditEvent.findMany({
    where: subjectUserId ? { subjectUserId } : {},
    orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
  });
}
