import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { decodeJwt } from 'jose';
import t from 'tap';
import { sha256Hex } from '../../src/lib/tokens.js';
import { issueFlowToken } from '../../src/modules/flows/flow-tokens.js';
import { issueLoginChallenge } from '../../src/modules/login/challenge.js';
import { GOOD_PASSWORD, inviteUser } from '../helpers/accounts.js';
import { buildTestApp } from '../helpers/app.js';
import { createOrganization, createUser, currentTotp, signIn, type CreatedUser } from '../helpers/factories.js';
import { api } from '../helpers/http.js';
import {
  branches,
  callerWith,
  deref,
  fillPath,
  listOperations,
  rolesFor,
  sampleValue,
  typeOf,
  type Caller,
  type JsonSchema,
  type OpenApiDoc,
  type Operation,
  type Parameter,
} from '../helpers/openapi-ops.js';

/**
 * A generated negative-input run over every operation of the committed contract
 * (openapi/openapi.json) — what portman's fuzzing would do, with a hand-written driver (issue 7
 * item 7). For each operation a valid request is built from its schemas (with real tokens, ids and
 * passwords where the field needs one, so mutations of one field reach the code behind the others),
 * then one thing at a time is broken: each required field removed; each string a number, empty,
 * 10 KB, Unicode, NUL; each number a string, negative, huge, fractional; enums an unknown value;
 * arrays empty / too long / of the wrong items; nested objects likewise; extra and prototype-polluting
 * properties; bad query parameters and path ids; missing and garbage credentials.
 * Every request goes through api(), which validates the answer against the document; the suite
 * fails on any 5xx or any undeclared answer. About 900 requests, a few seconds.
 */

const CLIENT_ID = 'fuzz-client';
const CLIENT_SECRET = 'fuzz-client-secret-0123456789abc';
const BASIC = `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`;
const TEN_KB = 'x'.repeat(10 * 1024);
const UNICODE = 'Grüße 😀 \u202eevil\u202c ﷽ \ud800';
const NUL = 'a\u0000b';

type Mutation = [label: string, value: unknown];

/** The broken values for a field, by its schema. */
function mutationsOf(doc: OpenApiDoc, schema: JsonSchema): Mutation[] {
  const s = deref(doc, schema);
  const out: Mutation[] = [['null', null]];
  if (s.enum) out.push(['unknown enum value', 'NOT_A_VALUE'], ['enum in lower case', String(s.enum[0]).toLowerCase()]);
  switch (typeOf(doc, s)) {
    case 'string':
      out.push(['a number', 12345], ['empty', ''], ['10 KB', TEN_KB], ['unicode', UNICODE], ['NUL', NUL]);
      break;
    case 'integer':
    case 'number':
      out.push(['a string', 'abc'], ['negative', -1], ['huge', 1e20], ['fraction', 1.5]);
      break;
    case 'boolean':
      out.push(['a string', 'true'], ['a number', 1]);
      break;
    case 'array':
      out.push(['a string', 'x'], ['empty array', []], ['array of unknown', ['NOT_A_VALUE']], ['100 items', Array.from({ length: 100 }, (_, i) => `v${i}`)], ['array of null', [null]]);
      break;
    case 'object':
      out.push(['a string', 'x'], ['empty object', {}], ['an array', []]);
      break;
  }
  return out;
}

/** Every (path, mutation) for a body: top-level fields and one level of nested objects. */
function bodyVariations(doc: OpenApiDoc, base: Record<string, unknown>, schema: JsonSchema): [string, unknown][] {
  const out: [string, unknown][] = [];
  const s = deref(doc, schema);
  for (const field of s.required ?? []) {
    const { [field]: _gone, ...rest } = base;
    out.push([`${field} removed`, rest]);
  }
  for (const [field, fieldSchema] of Object.entries(s.properties ?? {})) {
    for (const [label, value] of mutationsOf(doc, fieldSchema)) out.push([`${field}: ${label}`, { ...base, [field]: value }]);
    const nested = deref(doc, fieldSchema);
    if (typeOf(doc, nested) === 'object' && nested.properties) {
      const inner = (base[field] ?? sampleValue(doc, nested)) as Record<string, unknown>;
      for (const [label, value] of bodyVariations(doc, inner, nested)) out.push([`${field}.${label}`, { ...base, [field]: value }]);
      out.push([`${field}: extra property`, { ...base, [field]: { ...inner, isAdmin: true } }]);
    }
  }
  out.push(['extra property', { ...base, isAdmin: true }], ['extra role', { ...base, role: 'SUPPORT', organizationId: randomUUID() }]);
  return out;
}

/** Broken values for a query or path parameter (as they appear in a URL). */
function parameterMutations(p: Parameter): Mutation[] {
  const s = p.schema;
  // (An empty path segment is another URL, not an empty id: a blank stands in for it.)
  const out: Mutation[] = [p.in === 'path' ? ['blank', ' '] : ['empty', ''], ['10 KB', TEN_KB.slice(0, p.in === 'path' ? 300 : 10_240)], ['unicode', 'Grüße 😀'], ['NUL', NUL], ["quote", "' OR '1'='1"]];
  if (s.enum) out.push(['unknown enum value', 'NOT_A_VALUE']);
  if (s.format === 'uuid') out.push(['not a uuid', 'not-a-uuid'], ['unknown uuid', randomUUID()]);
  if (s.format === 'date-time') out.push(['not a date', 'yesterday'], ['impossible date', '2026-13-45T25:61:00Z']);
  if (s.type === 'integer' || s.type === 'number') out.push(['a string', 'abc'], ['negative', '-1'], ['zero', '0'], ['huge', '99999999999999999999'], ['fraction', '1.5']);
  return out;
}

type Fixture = { headers: Record<string, string>; params: Record<string, string>; body?: Record<string, unknown> };

t.test('negative inputs over every operation of openapi/openapi.json: no 5xx, every answer declared', async (t) => {
  const { app, config, clock } = await buildTestApp(t, { SERVICE_CLIENTS: `${CLIENT_ID}:${sha256Hex(CLIENT_SECRET)}:cso` });
  const doc = JSON.parse(readFileSync(new URL('../../openapi/openapi.json', import.meta.url), 'utf8')) as OpenApiDoc;
  const ops = listOperations(doc);
  t.ok(ops.length >= 45, `operations in the document: ${ops.length}`);
  const db = app.ctx.db;
  const request = api(app);

  /** A user the operation acts on (login, reset, ...), with password, TOTP and recovery codes. */
  const subject = (organizationId: string | null, withTotp = true) =>
    createUser(db, app, { organizationId, withTotp, recoveryCodes: withTotp ? 3 : 0, termsAccepted: true, preferencesSet: true });
  const flow = async (user: { id: string }, purpose: 'PASSWORD_RESET' | 'MFA_RESET') =>
    (await db.$transaction((tx) => issueFlowToken(tx, app.ctx.clock, { userId: user.id, purpose, ttlSeconds: 3600 }))).token;
  const challenge = async (user: { id: string }, next: 'mfa' | 'mfa_enrollment') =>
    (await db.$transaction((tx) => issueLoginChallenge(tx, app.ctx, user.id, next))).challengeToken;

  /** A valid request for the operation: who calls, on which ids, with which (realistic) body. */
  async function fixture(op: Operation): Promise<Fixture> {
    const headers: Record<string, string> = {};
    let caller: Caller | undefined;
    if (op.auth === 'basic') headers.authorization = BASIC;
    if (op.auth === 'bearer') {
      caller = await callerWith(app, await rolesFor(app, op));
      headers.authorization = `Bearer ${caller.token}`;
    }
    const orgId = caller?.organizationId ?? (await createOrganization(db)).id;
    const target: CreatedUser = await subject(orgId);

    const params: Record<string, string> = {};
    for (const p of op.pathParams) {
      if (op.path.includes('/sessions/')) params[p.name] = String(decodeJwt((await signIn(app, caller!.user)).accessToken).sid);
      else if (op.path.includes('/organizations/')) params[p.name] = orgId;
      else params[p.name] = target.user.id;
    }
    if (!op.body) return { headers, params };

    const id = op.operationId;
    const seeds: Record<string, () => Promise<unknown> | unknown> = {
      email: () => (id === 'login' || id === 'forgotPassword' ? target.user.email : id === 'acceptTerms' ? caller!.user.email : `fuzz-${randomUUID().slice(0, 8)}@example.test`),
      password: () => (id === 'login' ? target.password : id === 'activateAccount' || id === 'resetPassword' ? `${GOOD_PASSWORD} ${randomUUID().slice(0, 4)}` : caller?.password),
      currentPassword: () => caller!.password,
      newPassword: () => `${GOOD_PASSWORD} ${randomUUID().slice(0, 4)}`,
      token: async () =>
        id === 'introspectToken'
          ? (await signIn(app, target.user)).accessToken
          : id === 'resetPassword'
            ? flow(target.user, 'PASSWORD_RESET')
            : id === 'confirmMfaReset'
              ? flow(target.user, 'MFA_RESET')
              : (await inviteUser(app, { organizationId: orgId })).token,
      challengeToken: async () =>
        id === 'completeLoginWithMfa' ? challenge(target.user, 'mfa') : challenge((await subject(orgId, false)).user, 'mfa_enrollment'),
      code: () => (id === 'completeLoginWithMfa' ? currentTotp(app, target.totpSecret!) : '123456'),
      recoveryCode: () => target.recoveryCodes![0],
      refreshToken: async () => (await signIn(app, target.user)).refreshToken,
      version: () => config.termsVersion,
      userId: () => target.user.id,
      roles: () => ['USER'],
    };
    const body: Record<string, unknown> = {};
    const first = branches(doc, op.body)[0]!;
    for (const [field, schema] of Object.entries(first.properties ?? {})) {
      if (!(first.required ?? []).includes(field) && field !== 'roles') continue;
      body[field] = seeds[field] ? await seeds[field]() : sampleValue(doc, schema as JsonSchema, field);
    }
    return { headers, params, body };
  }

  const failures: string[] = [];
  const statuses = new Map<number, number>();
  let sent = 0;
  const fire = async (op: Operation, label: string, url: string, headers: Record<string, string>, payload?: string) => {
    sent++;
    try {
      const res = await request({ method: op.method, url, headers, ...(payload === undefined ? {} : { payload }) });
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (res.status >= 500) failures.push(`${op.operationId} [${label}]: ${res.status} ${res.raw.slice(0, 200)}`);
    } catch (err) {
      failures.push(`${op.operationId} [${label}]: ${(err as Error).message.slice(0, 300)}`);
    }
  };

  const started = Date.now();
  for (const op of ops) {
    clock.advance(30); // a fresh TOTP step for every operation's seeded code
    const fx = await fixture(op);
    const url = fillPath(op.path, fx.params);
    const json = { ...fx.headers, 'content-type': 'application/json' };

    if (op.body && fx.body) {
      const schemas = branches(doc, op.body);
      for (const [i, branch] of schemas.entries()) {
        // Other anyOf branches start from their own sample (e.g. recoveryCode instead of code).
        const base = i === 0 ? fx.body : { ...(sampleValue(doc, branch) as object), ...Object.fromEntries(Object.entries(fx.body).filter(([k]) => branch.properties?.[k])) };
        for (const [label, body] of bodyVariations(doc, base, branch)) await fire(op, label, url, json, JSON.stringify(body));
      }
      await fire(op, 'prototype pollution', url, json, `{"__proto__": {"isAdmin": true}, "constructor": {"prototype": {"roles": ["SUPPORT"]}}, ${JSON.stringify(fx.body).slice(1)}`);
      await fire(op, 'deeply nested', url, json, `${'['.repeat(2000)}${']'.repeat(2000)}`);
      await fire(op, 'duplicate keys', url, json, `${JSON.stringify(fx.body).slice(0, -1)}${Object.keys(fx.body).length ? ',' : ''}"${Object.keys(fx.body)[0] ?? 'x'}": 12345}`);
      await fire(op, 'form-encoded', url, { ...fx.headers, 'content-type': 'application/x-www-form-urlencoded' }, 'a=1&b=%00');
    } else {
      await fire(op, 'unexpected body', url, json, '{"isAdmin": true}');
    }

    for (const p of op.queryParams) {
      for (const [label, value] of parameterMutations(p)) await fire(op, `?${p.name}: ${label}`, `${url}?${p.name}=${encodeURIComponent(String(value))}`, fx.headers);
      await fire(op, `?${p.name} twice`, `${url}?${p.name}=a&${p.name}=b`, fx.headers);
    }
    await fire(op, 'unknown query parameter', `${url}?unknownParameter=1`, fx.headers);
    for (const p of op.pathParams) {
      for (const [label, value] of parameterMutations(p)) {
        await fire(op, `{${p.name}}: ${label}`, fillPath(op.path, { ...fx.params, [p.name]: String(value) }), fx.headers, op.body ? JSON.stringify(fx.body) : undefined);
      }
    }
    if (op.auth !== 'none') {
      const body = op.body ? JSON.stringify(fx.body) : undefined;
      const plain: Record<string, string> = op.body ? { 'content-type': 'application/json' } : {};
      await fire(op, 'no credentials', url, plain, body);
      await fire(op, 'garbage credentials', url, { ...plain, authorization: op.auth === 'basic' ? 'Basic %%%' : 'Bearer a.b.c' }, body);
      await fire(op, 'other scheme', url, { ...plain, authorization: op.auth === 'basic' ? `Bearer ${randomUUID()}` : BASIC }, body);
    }
    // Finally the valid request itself: the seeds reach the code behind validation.
    await fire(op, 'valid', url, op.body ? json : fx.headers, op.body ? JSON.stringify(fx.body) : undefined);
  }
  const seconds = (Date.now() - started) / 1000;

  t.comment(`${sent} requests over ${ops.length} operations in ${seconds.toFixed(1)} s; statuses: ${[...statuses].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`).join(' ')}`);
  t.ok(sent >= 500 && sent <= 1500, `a bounded run (${sent} requests)`);
  t.ok([...statuses.keys()].some((s) => s >= 200 && s < 300), 'some requests were valid enough to succeed');
  t.same(failures, [], 'no 5xx and no answer the document does not declare');
});
