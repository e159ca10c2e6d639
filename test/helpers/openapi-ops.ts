import { randomBytes, randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Role } from '../../src/generated/prisma/enums.js';
import { createOrganization, createUser, signIn, type CreatedUser } from './factories.js';

/**
 * Reading an OpenAPI document the way a generic client (or a fuzzer) does: the operations, their
 * request body / path / query schemas (with $refs resolved), and schema-valid sample values. Used by
 * the robustness and negative-input suites, which are driven by the document, not by a route list.
 */

export type JsonSchema = {
  $ref?: string;
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  minItems?: number;
  maxItems?: number;
  enum?: unknown[];
  const?: unknown;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  format?: string;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  example?: unknown;
  default?: unknown;
};

export type Parameter = { name: string; in: 'path' | 'query' | 'header' | 'cookie'; required?: boolean; schema: JsonSchema };

export type OpenApiDoc = {
  paths: Record<string, Record<string, RawOperation>>;
  components?: { schemas?: Record<string, JsonSchema> };
};

type RawOperation = {
  operationId: string;
  parameters?: (Parameter | { $ref: string })[];
  requestBody?: { required?: boolean; content?: Record<string, { schema?: JsonSchema }> };
  security?: Record<string, string[]>[];
  responses: Record<string, unknown>;
};

export type Operation = {
  operationId: string;
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** The document's path template, e.g. /v1/organization/users/{id}. */
  path: string;
  /** The JSON request body schema ($refs resolved at the top), if the operation takes a body. */
  body?: JsonSchema;
  pathParams: Parameter[];
  queryParams: Parameter[];
  /** 'bearer' (a user's access token), 'basic' (service client) or 'none'. */
  auth: 'bearer' | 'basic' | 'none';
  responses: string[];
};

const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const;

/** Resolves a local $ref (#/components/...) — once, at the top of the schema. */
export function deref(doc: OpenApiDoc, schema: JsonSchema | undefined): JsonSchema {
  let s = schema ?? {};
  for (let i = 0; s.$ref && i < 10; i++) {
    const parts = s.$ref.replace(/^#\//, '').split('/');
    let target: unknown = doc;
    for (const p of parts) target = (target as Record<string, unknown>)[p.replaceAll('~1', '/').replaceAll('~0', '~')];
    if (!target) throw new Error(`unresolvable $ref ${s.$ref}`);
    s = target as JsonSchema;
  }
  return s;
}

export function listOperations(doc: OpenApiDoc): Operation[] {
  const ops: Operation[] = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of METHODS) {
      const raw = item[method];
      if (!raw) continue;
      const params = (raw.parameters ?? []).map((p) => ('$ref' in p ? (deref(doc, p as JsonSchema) as unknown as Parameter) : p));
      const json = raw.requestBody?.content?.['application/json'];
      const schemes = (raw.security ?? []).flatMap((r) => Object.keys(r));
      ops.push({
        operationId: raw.operationId,
        method: method.toUpperCase() as Operation['method'],
        path,
        ...(json ? { body: deref(doc, json.schema) } : {}),
        pathParams: params.filter((p) => p.in === 'path').map((p) => ({ ...p, schema: deref(doc, p.schema) })),
        queryParams: params.filter((p) => p.in === 'query').map((p) => ({ ...p, schema: deref(doc, p.schema) })),
        // /metrics declares [{}, {metricsToken}]: optional, and not a user token.
        auth: schemes.includes('bearerAuth') ? 'bearer' : schemes.includes('clientBasic') ? 'basic' : 'none',
        responses: Object.keys(raw.responses),
      });
    }
  }
  return ops;
}

/** The alternatives of a schema (anyOf/oneOf branches), or the schema itself. */
export function branches(doc: OpenApiDoc, schema: JsonSchema): JsonSchema[] {
  const s = deref(doc, schema);
  const alts = s.anyOf ?? s.oneOf;
  return alts ? alts.flatMap((a) => branches(doc, a)) : [s];
}

/** Whether null is a valid value of the schema (`type: [..., 'null']`, or an alternative that is). */
export function allowsNull(doc: OpenApiDoc, schema: JsonSchema): boolean {
  const s = deref(doc, schema);
  if (s.type === 'null' || (Array.isArray(s.type) && s.type.includes('null'))) return true;
  return (s.anyOf ?? s.oneOf ?? []).some((alt) => allowsNull(doc, alt));
}

export function typeOf(doc: OpenApiDoc, schema: JsonSchema): string {
  const s = deref(doc, schema);
  if (s.enum) return typeof s.enum[0] === 'string' ? 'string' : typeof s.enum[0];
  const t = Array.isArray(s.type) ? s.type.find((x) => x !== 'null') : s.type;
  if (t) return t;
  if (s.properties) return 'object';
  const alts = s.anyOf ?? s.oneOf;
  return alts?.[0] ? typeOf(doc, alts[0]) : 'unknown';
}

const fresh = () => randomBytes(4).toString('hex');

/** A string that satisfies a string schema (length, pattern, format); keyed hints make it realistic. */
export function sampleString(s: JsonSchema, key = ''): string {
  if (s.format === 'uuid') return randomUUID();
  if (s.format === 'date-time') return new Date().toISOString();
  const min = s.minLength ?? 0;
  const max = s.maxLength ?? 10_000;
  const candidates = [
    ...(/email/i.test(key) ? [`probe-${fresh()}@example.test`] : []),
    ...(s.example !== undefined ? [String(s.example)] : []),
    `probe-${fresh()}@example.test`,
    '123456',
    `K-${fresh()}`,
    `Sample ${fresh()} value`,
    'x'.repeat(Math.max(min, 8)),
  ];
  const re = s.pattern ? new RegExp(s.pattern, 'u') : undefined;
  const ok = candidates.find((c) => c.length >= min && c.length <= max && (!re || re.test(c)));
  if (ok === undefined) throw new Error(`no sample string for ${JSON.stringify(s)}`);
  return ok;
}

/** A value that satisfies the schema: every required property (and only those), first anyOf branch. */
export function sampleValue(doc: OpenApiDoc, schema: JsonSchema, key = ''): unknown {
  const s = deref(doc, schema);
  if ('const' in s) return s.const;
  if (s.enum) return s.enum[0];
  const alts = s.anyOf ?? s.oneOf;
  if (alts?.[0]) return sampleValue(doc, alts[0], key);
  switch (typeOf(doc, s)) {
    case 'object': {
      const out: Record<string, unknown> = {};
      for (const name of s.required ?? []) out[name] = sampleValue(doc, s.properties?.[name] ?? {}, name);
      return out;
    }
    case 'array':
      return Array.from({ length: Math.max(1, s.minItems ?? 0) }, () => sampleValue(doc, s.items ?? {}, key));
    case 'string':
      return sampleString(s, key);
    case 'integer':
    case 'number':
      return s.minimum ?? 1;
    case 'boolean':
      return true;
    case 'null':
      return null;
    default:
      return 'x';
  }
}

/** A value of the wrong JSON type for the schema. */
export function wrongType(doc: OpenApiDoc, schema: JsonSchema): unknown {
  switch (typeOf(doc, schema)) {
    case 'string':
      return 12345;
    case 'integer':
    case 'number':
      return 'not a number';
    case 'boolean':
      return 'yes';
    case 'array':
      return 'not an array';
    case 'object':
      return 'not an object';
    default:
      return { unexpected: true };
  }
}

/** Fills a path template: {id} → the given value (URL-encoded). */
export function fillPath(template: string, values: Record<string, string>): string {
  return template.replace(/\{([^}]+)\}/g, (_m, name: string) => encodeURIComponent(values[name] ?? randomUUID()));
}

// ---------------------------------------------------------------------------------------------
// Who may call an operation. The document says only "bearerAuth"; the permission behind it is in
// the route config, which the document does not carry. So we ask the app: a throw-away user of each
// role sends a request that cannot change anything (malformed body / invalid id); the first role
// that is not answered 403 `forbidden` is the one that holds the permission.

export const ROLE_LADDER: Role[][] = [['USER'], ['USER', 'CUSTOMER_ADMIN'], ['SUPPORT']];

export type Caller = CreatedUser & { token: string; organizationId: string | null };

/** A signed-in user with the given roles (SUPPORT staff belong to no organisation), TOTP enrolled. */
export async function callerWith(app: FastifyInstance, roles: Role[], organizationId?: string): Promise<Caller> {
  const orgId = roles.includes('SUPPORT') ? null : (organizationId ?? (await createOrganization(app.ctx.db)).id);
  const created = await createUser(app.ctx.db, app, { organizationId: orgId, roles, termsAccepted: true, preferencesSet: true, recoveryCodes: 3 });
  const { accessToken } = await signIn(app, created.user);
  return { ...created, token: accessToken, organizationId: orgId };
}

export async function rolesFor(app: FastifyInstance, op: Operation): Promise<Role[]> {
  if (op.auth !== 'bearer') return [];
  for (const roles of ROLE_LADDER) {
    const probe = await callerWith(app, roles);
    const url = fillPath(op.path, Object.fromEntries(op.pathParams.map((p) => [p.name, 'not-a-uuid'])));
    const res = await app.inject({
      method: op.method,
      url,
      headers: { authorization: `Bearer ${probe.token}`, ...(op.body ? { 'content-type': 'application/json' } : {}) },
      ...(op.body ? { payload: '{"probe": ' } : {}),
    });
    const code = res.headers['content-type']?.toString().includes('json') ? (JSON.parse(res.body) as { code?: string }).code : undefined;
    if (!(res.statusCode === 403 && code === 'forbidden')) return roles;
  }
  throw new Error(`no role is allowed to call ${op.method} ${op.path}`);
}
