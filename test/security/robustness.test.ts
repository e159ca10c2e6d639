import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import t, { type Test } from 'tap';
import { sha256Hex } from '../../src/lib/tokens.js';
import { buildTestApp } from '../helpers/app.js';
import { checkContract } from '../helpers/contract.js';
import {
  allowsNull,
  branches,
  callerWith,
  fillPath,
  listOperations,
  rolesFor,
  sampleValue,
  wrongType,
  type Caller,
  type JsonSchema,
  type OpenApiDoc,
  type Operation,
} from '../helpers/openapi-ops.js';

/**
 * Robustness of every operation (security.md item 28, issue 7 item 6), driven by the app's own
 * OpenAPI document — a new route is covered the day it is added:
 *  - with a request body: malformed JSON → 400 malformed_json; an array / null / a scalar, a wrong
 *    type, a missing required field → 400 validation_failed whose `errors` name the field; an unknown
 *    field → 400 (no mass assignment); > 16 KiB → 413 payload_too_large; text/plain → 415;
 *  - with path parameters: ids that are not UUIDs → 400 or 404;
 *  - every answer application/problem+json with a `code`, declared in the document, never a 5xx;
 *  - and none of it changes anything in the database.
 * Callers send a valid credential (a user whose roles grant the route's permission, or the service
 * client), so the checks reach validation instead of stopping at authentication.
 */

const CLIENT_ID = 'robustness-client';
const CLIENT_SECRET = 'robustness-client-secret-0123456789';
const BASIC = `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`;

type Sent = { status: number; headers: Record<string, unknown>; body: any; violation?: string };

async function send(
  app: FastifyInstance,
  op: Operation,
  url: string,
  headers: Record<string, string>,
  payload?: string | Buffer,
): Promise<Sent> {
  const res = await app.inject({ method: op.method, url, headers, ...(payload === undefined ? {} : { payload }) });
  const type = res.headers['content-type'] as string | undefined;
  let body: unknown = res.body;
  if (type?.includes('json') && res.body) {
    try {
      body = JSON.parse(res.body);
    } catch {
      body = res.body;
    }
  }
  const violation = checkContract(app, op.method, url, res.statusCode, type, res.body === '' ? undefined : body, res.headers);
  return { status: res.statusCode, headers: res.headers, body, ...(violation ? { violation } : {}) };
}

/** What every answer of this suite must be: a problem+json with a code, declared, never 5xx. */
function assertProblem(t: Test, res: Sent, label: string, statuses: number[], code?: string) {
  t.ok(statuses.includes(res.status), `${label}: status ${res.status} is one of ${statuses.join('/')}`, { body: res.body });
  t.ok(res.status < 500, `${label}: not a 5xx`);
  t.match(String(res.headers['content-type']), /^application\/problem\+json/, `${label}: problem+json`);
  t.type(res.body?.code, 'string', `${label}: has a code`);
  if (code) t.equal(res.body?.code, code, `${label}: code ${code}`);
  t.notOk(res.violation, `${label}: declared in the document`, { violation: res.violation });
}

/** The errors list of a validation_failed answer must name the field (by path or in its message). */
function assertNames(t: Test, res: Sent, label: string, field: string) {
  const errors = res.body?.errors as { path: string; message: string }[] | undefined;
  t.ok(Array.isArray(errors) && errors.length > 0, `${label}: errors list`);
  const named = (errors ?? []).some((e) => e.path === `body.${field}` || e.path.startsWith(`body.${field}.`) || e.message.includes(`"${field}"`));
  t.ok(named, `${label}: errors name ${field}`, { errors });
}

/** Row counts of every table a request could write to. */
async function snapshot(app: FastifyInstance) {
  const db = app.ctx.db;
  const [users, organizations, mails, audit, flows, sessions, refreshTokens, factors, recoveryCodes] = await Promise.all([
    db.user.count(),
    db.organization.count(),
    db.mailOutbox.count(),
    db.auditEvent.count(),
    db.flowToken.count(),
    db.session.count(),
    db.refreshToken.count(),
    db.totpFactor.count(),
    db.recoveryCode.count(),
  ]);
  return { users, organizations, mails, audit, flows, sessions, refreshTokens, factors, recoveryCodes };
}

async function world(t: Test) {
  const testApp = await buildTestApp(t, { SERVICE_CLIENTS: `${CLIENT_ID}:${sha256Hex(CLIENT_SECRET)}:cso` });
  const { app } = testApp;
  const doc = app.swagger() as unknown as OpenApiDoc;
  const ops = listOperations(doc);
  const callers = new Map<string, Caller>();
  /** Headers that authenticate as someone allowed to call the operation. */
  const credentials = async (op: Operation): Promise<Record<string, string>> => {
    if (op.auth === 'basic') return { authorization: BASIC };
    if (op.auth === 'none') return {};
    const roles = await rolesFor(app, op);
    const key = roles.join('+');
    let caller = callers.get(key);
    if (!caller) {
      caller = await callerWith(app, roles);
      callers.set(key, caller);
    }
    return { authorization: `Bearer ${caller.token}` };
  };
  return { ...testApp, doc, ops, credentials };
}

t.test('every operation with a request body refuses bad bodies: 400/413/415 problem+json, never 5xx, nothing written', async (t) => {
  const { app, doc, ops, credentials } = await world(t);
  const withBody = ops.filter((op) => op.body);
  t.ok(withBody.length >= 20, `the document lists the body operations (${withBody.length})`);

  // Resolve every caller first, so the snapshot below is taken after all test data exists.
  const auth = new Map<string, Record<string, string>>();
  for (const op of withBody) auth.set(op.operationId, await credentials(op));
  const before = await snapshot(app);
  const nullable: string[] = [];

  for (const op of withBody) {
    await t.test(`${op.method} ${op.path} (${op.operationId})`, async (t) => {
      const url = fillPath(op.path, {}); // random (unknown) UUIDs: validation comes first anyway
      const headers = auth.get(op.operationId)!;
      const json = { ...headers, 'content-type': 'application/json' };
      const valid = sampleValue(doc, op.body!) as Record<string, unknown>;
      const bad = async (label: string, payload: string, statuses: number[], code?: string, ctype: Record<string, string> = json) => {
        const res = await send(app, op, url, ctype, payload);
        assertProblem(t, res, label, statuses, code);
        return res;
      };

      await bad('malformed JSON', '{"email": "a@', [400], 'malformed_json');
      await bad('truncated JSON', JSON.stringify(valid).slice(0, -1), [400], 'malformed_json');
      for (const [label, payload] of [
        ['a JSON array', JSON.stringify([valid])],
        ['JSON null', 'null'],
        ['a JSON string', '"text"'],
        ['a JSON number', '42'],
      ] as const) {
        const res = await bad(label, payload, [400], 'validation_failed');
        t.ok(Array.isArray(res.body?.errors) && res.body.errors.length > 0, `${label}: errors list`);
      }
      await bad('empty body', '', [400], 'validation_failed');

      // Field by field, for each alternative the body allows (anyOf: e.g. code or recoveryCode).
      for (const branch of branches(doc, op.body!)) {
        const base = sampleValue(doc, branch) as Record<string, unknown>;
        for (const [field, schema] of Object.entries(branch.properties ?? {})) {
          const withField = { ...base, [field]: base[field] ?? sampleValue(doc, schema as JsonSchema, field) };
          const wrong = await bad(`${field}: wrong type`, JSON.stringify({ ...withField, [field]: wrongType(doc, schema as JsonSchema) }), [400], 'validation_failed');
          assertNames(t, wrong, `${field}: wrong type`, field);
          // null is a value where the document says so (e.g. `language: null`: back to the default).
          if (allowsNull(doc, schema as JsonSchema)) nullable.push(`${op.operationId}.${field}`);
          else {
            const nul = await bad(`${field}: null`, JSON.stringify({ ...withField, [field]: null }), [400], 'validation_failed');
            assertNames(t, nul, `${field}: null`, field);
          }
        }
        for (const field of branch.required ?? []) {
          const { [field]: _removed, ...rest } = base;
          const missing = await bad(`${field}: missing`, JSON.stringify(rest), [400], 'validation_failed');
          assertNames(t, missing, `${field}: missing`, field);
        }
        // Mass assignment: fields a client must never set.
        for (const extra of ['isAdmin', 'roles', 'organizationId', 'status', 'id']) {
          if (branch.properties?.[extra]) continue;
          const res = await bad(`unknown field ${extra}`, JSON.stringify({ ...base, [extra]: extra === 'roles' ? ['SUPPORT'] : true }), [400], 'validation_failed');
          assertNames(t, res, `unknown field ${extra}`, extra);
        }
      }

      await bad('body over 16 KiB', JSON.stringify({ ...valid, padding: 'x'.repeat(17 * 1024) }), [413], 'payload_too_large');
      await bad('body of 1 MiB', `{"padding": "${'x'.repeat(1024 * 1024)}"}`, [413], 'payload_too_large');
      await bad('text/plain', JSON.stringify(valid), [415], 'unsupported_media_type', { ...headers, 'content-type': 'text/plain' });
      await bad('no content type', JSON.stringify(valid), [415], 'unsupported_media_type', { ...headers });
      await bad('application/xml', '<a/>', [415], 'unsupported_media_type', { ...headers, 'content-type': 'application/xml' });
    });
  }

  t.same(await snapshot(app), before, 'no refused request wrote anything (users, mails, audit, flows, sessions, ...)');
  t.same(nullable, ['updateOrganization.language'], 'the only field where null is a value (not tried as a bad one)');
});

t.test('every operation with path parameters refuses ids that are not UUIDs: 400/404 problem+json', async (t) => {
  const { app, doc, ops, credentials } = await world(t);
  const withParams = ops.filter((op) => op.pathParams.length > 0);
  t.ok(withParams.length >= 15, `the document lists the operations with ids (${withParams.length})`);
  const auth = new Map<string, Record<string, string>>();
  for (const op of withParams) auth.set(op.operationId, await credentials(op));
  const before = await snapshot(app);

  const notUuids = [
    'not-a-uuid',
    '123',
    '0',
    '-1',
    'null',
    randomUUID().slice(0, 35), // one character short
    `${randomUUID()}x`,
    randomUUID().replaceAll('-', ''),
    `{${randomUUID()}}`,
    "1' OR '1'='1",
    '../../etc/passwd',
    '%00',
    '\u0000',
    'Grüße-😀',
    'x'.repeat(101), // longer than the router's parameter limit
    'a'.repeat(2000),
  ];
  for (const op of withParams) {
    await t.test(`${op.method} ${op.path} (${op.operationId})`, async (t) => {
      const headers = { ...auth.get(op.operationId)! };
      const payload = op.body ? JSON.stringify(sampleValue(doc, op.body)) : undefined;
      if (payload) headers['content-type'] = 'application/json';
      for (const id of notUuids) {
        const url = fillPath(op.path, Object.fromEntries(op.pathParams.map((p) => [p.name, id])));
        const res = await send(app, op, url, headers, payload);
        assertProblem(t, res, `id ${JSON.stringify(id.length > 40 ? `${id.slice(0, 10)}…(${id.length})` : id)}`, [400, 404]);
      }
      // Not even valid percent-encoding (the router cannot decode it).
      for (const raw of ['%E0%A4%A', '%zz', '%']) {
        const res = await send(app, op, op.path.replace(/\{[^}]+\}/g, raw), headers, payload);
        assertProblem(t, res, `id ${raw} (raw)`, [400, 404]);
      }
      // A well-formed id that does not exist: 404 (or 400/409 where the route checks state first), never 5xx.
      const unknown = await send(app, op, fillPath(op.path, {}), headers, payload);
      t.ok(unknown.status < 500, `unknown UUID: not a 5xx (${unknown.status})`);
      t.notOk(unknown.violation, 'unknown UUID: declared', { violation: unknown.violation });
    });
  }
  t.same(await snapshot(app), before, 'nothing was written');
});

t.test('an invalid invitation creates no user, no mail and no audit row', async (t) => {
  const { app, ops, credentials } = await world(t);
  const invite = ops.find((op) => op.operationId === 'inviteOrganizationUser');
  t.ok(invite, 'the invite operation is in the document');
  const headers = { ...(await credentials(invite!)), 'content-type': 'application/json' };
  const before = await snapshot(app);
  const email = `victim-${randomUUID().slice(0, 8)}@example.test`;
  const bodies: [string, unknown][] = [
    ['SUPPORT role', { email, name: 'Eve', roles: ['SUPPORT'] }],
    ['unknown field', { email, name: 'Eve', organizationId: randomUUID() }],
    ['status', { email, name: 'Eve', status: 'ACTIVE' }],
    ['empty name', { email, name: '' }],
    ['name too long', { email, name: 'x'.repeat(201) }],
    ['roles not a list', { email, name: 'Eve', roles: 'CUSTOMER_ADMIN' }],
    ['three roles', { email, name: 'Eve', roles: ['USER', 'CUSTOMER_ADMIN', 'USER'] }],
    ['not an e-mail address', { email: 'not-an-email', name: 'Eve' }],
    ['NUL in the name', { email, name: 'Eve\u0000' }],
  ];
  for (const [label, body] of bodies) {
    const res = await send(app, invite!, invite!.path, headers, JSON.stringify(body));
    assertProblem(t, res, label, [400, 422]);
  }
  t.equal(await app.ctx.db.user.count({ where: { email: { contains: 'victim-' } } }), 0, 'no user row');
  t.equal(await app.ctx.db.mailOutbox.count({ where: { toAddress: { contains: 'victim-' } } }), 0, 'no outbox row');
  t.same(await snapshot(app), before, 'nothing else either');
});
