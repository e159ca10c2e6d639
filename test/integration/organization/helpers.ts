import type { FastifyInstance } from 'fastify';
import type { Test } from 'tap';
import { buildTestApp, type TestApp } from '../../helpers/app.js';
import { createOrganization, createUser, signIn, type CreatedUser, type CreateUserOptions } from '../../helpers/factories.js';
import { api } from '../../helpers/http.js';
import { outboxMails } from '../../helpers/outbox.js';

/**
 * Two organisations (A and B), each with an administrator, plus a support user, all signed in.
 * Tests of the administration routes start from here.
 */
export type AdminWorld = TestApp & {
  request: ReturnType<typeof api>;
  orgA: { id: string; name: string };
  orgB: { id: string; name: string };
  adminA: CreatedUser & { token: string };
  adminB: CreatedUser & { token: string };
  support: CreatedUser & { token: string };
  /** Creates a user (default: USER, ACTIVE, TOTP enrolled) in an organisation. */
  member(organizationId: string | null, options?: Omit<CreateUserOptions, 'organizationId'>): Promise<CreatedUser>;
  /** Signs a user in (a real session) and returns the access token. */
  tokenFor(user: { id: string }): Promise<string>;
};

export async function adminWorld(t: Test, env: Record<string, string> = {}): Promise<AdminWorld> {
  const base = await buildTestApp(t, env);
  const { app } = base;
  const db = app.ctx.db;
  const orgA = await createOrganization(db, { name: 'Alpha Reseller' });
  const orgB = await createOrganization(db, { name: 'Beta Reseller' });
  const member: AdminWorld['member'] = (organizationId, options = {}) =>
    createUser(db, app, { organizationId, ...options, ...(options.status === 'INVITED' ? { withTotp: false } : {}) });
  const tokenFor = async (user: { id: string }) => (await signIn(app, user)).accessToken;
  const withToken = async (u: CreatedUser) => ({ ...u, token: await tokenFor(u.user) });
  const adminA = await withToken(await member(orgA.id, { roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Alice Admin' }));
  const adminB = await withToken(await member(orgB.id, { roles: ['USER', 'CUSTOMER_ADMIN'], name: 'Bob Admin' }));
  const support = await withToken(await member(null, { roles: ['SUPPORT'], name: 'Sam Support' }));
  return { ...base, request: api(app), orgA, orgB, adminA, adminB, support, member, tokenFor };
}

/**
 * Outbox rows for an address (exactly, in any letter case: not Prisma's insensitive `equals`, an
 * ILIKE where `_` matches any character), oldest first, bodies readable (mail is written in the
 * same transaction as the change).
 */
export async function mailsTo(app: FastifyInstance, address: string) {
  const rows = await app.ctx.db.$queryRaw<{ id: string }[]>`SELECT id FROM mail_outbox WHERE to_address::citext = ${address}::citext`;
  return outboxMails(app, { where: { id: { in: rows.map((r) => r.id) } } });
}

export async function auditOf(app: FastifyInstance, type: string, subjectUserId?: string) {
  return app.ctx.db.auditEvent.findMany({ where: { type, ...(subjectUserId ? { subjectUserId } : {}) }, orderBy: { createdAt: 'asc' } });
}
