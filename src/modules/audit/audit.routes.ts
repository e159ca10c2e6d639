import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { requireActor } from '../../access/actor.js';
import { isStorableInstant, NextCursor, PageQuery } from '../organization/pagination.js';
import { readAuditLog } from './audit.query.js';
import { AUDIT_EVENT_TYPES } from './audit.service.js';

const Person = z
  .object({
    id: z.uuid(),
    name: z.string().nullable(),
    email: z.string().nullable().describe("null when the account is gone, and a support employee's in an organisation's log"),
  })
  .meta({ id: 'AuditPerson' });

export const AuditEventSchema = z
  .object({
    id: z.uuid(),
    type: z.string().describe("One of the documented event types (see the `type` filter; each type, its actor, subject and details: docs/audit-events.md in the service's repository)"),
    occurredAt: z.iso.datetime(),
    organizationId: z.uuid().nullable(),
    actor: Person.nullable().describe('Who did it (null: the system, an anonymous caller, or the operator CLI)'),
    subject: Person.nullable().describe('Whom it concerns'),
    ip: z.string().nullable(),
    userAgent: z.string().nullable(),
    details: z
      .record(z.string(), z.unknown())
      .describe(
        'Fields of the event type. Rows written by the operator CLI (userAgent `webshop-auth-cli`) also carry `cli`: `{ operator, reason? }` (the OS account that ran the command, or null, and the reason the operator gave) — in the support audit log only, not in an organisation\'s',
      ),
  })
  .meta({ id: 'AuditEvent' });

const AuditPage = z.object({ items: z.array(AuditEventSchema), nextCursor: NextCursor }).meta({ id: 'AuditEventPage' });

const instant = z.iso
  .datetime({ offset: true })
  .refine((s) => isStorableInstant(new Date(s)), { message: 'must lie between the years 1970 and 9999 (UTC)' });

const filters = {
  userId: z.uuid().optional().describe('Events where this user is the subject or the actor'),
  type: z.enum(AUDIT_EVENT_TYPES).optional(),
  from: instant.optional().describe('Inclusive lower bound (RFC 3339, 1970–9999)'),
  to: instant.optional().describe('Exclusive upper bound (RFC 3339, 1970–9999)'),
  ...PageQuery,
};

const OrganizationAuditQuery = z.strictObject(filters);
const SupportAuditQuery = z.strictObject({ organizationId: z.uuid().optional(), ...filters });

const date = (s: string | undefined) => (s ? new Date(s) : undefined);

export const auditRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/v1/organization/audit-events',
    {
      config: { access: { permission: 'organization:audit:read' } },
      schema: {
        operationId: 'listOrganizationAuditEvents',
        tags: ['organization'],
        summary: "The organisation's audit log, newest first",
        querystring: OrganizationAuditQuery,
        response: { 200: AuditPage },
      },
    },
    async (request) => {
      const q = request.query;
      return readAuditLog(
        app.ctx,
        { actor: requireActor(request) },
        'own',
        { userId: q.userId, type: q.type, from: date(q.from), to: date(q.to) },
        { limit: q.limit, cursor: q.cursor },
      );
    },
  );

  app.get(
    '/v1/support/audit-events',
    {
      config: { access: { permission: 'support:audit:read' } },
      schema: {
        operationId: 'listSupportAuditEvents',
        tags: ['support'],
        summary: 'The audit log of all organisations, newest first',
        querystring: SupportAuditQuery,
        response: { 200: AuditPage },
      },
    },
    async (request) => {
      const q = request.query;
      return readAuditLog(
        app.ctx,
        { actor: requireActor(request) },
        { organizationId: q.organizationId },
        { userId: q.userId, type: q.type, from: date(q.from), to: date(q.to) },
        { limit: q.limit, cursor: q.cursor },
      );
    },
  );
};
