import type { FastifyInstance } from 'fastify';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { deref, type JsonSchema, type OpenApiDoc } from './openapi-ops.js';

/**
 * Validates a response against the app's own OpenAPI document: the status must be declared for
 * the operation, every header the document declares required for that status must be there (Retry-After,
 * WWW-Authenticate), the body must match the declared schema for its content type, and an error's
 * `code` must be named in the operation's summary or description or in the status's description.
 */
type Operation = { responses?: Record<string, { headers?: Record<string, { required?: boolean }>; content?: Record<string, { schema?: unknown }> }> };
type Doc = { paths: Record<string, Record<string, Operation>>; components?: unknown };

const cache = new WeakMap<FastifyInstance, { doc: Doc; ajv: Ajv2020; matchers: [RegExp, string][]; compiled: Map<string, ValidateFunction> }>();

function contractFor(app: FastifyInstance) {
  let entry = cache.get(app);
  if (!entry) {
    const doc = app.swagger() as unknown as Doc;
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    (addFormats as unknown as (a: Ajv2020) => void)(ajv);
    ajv.addSchema({ ...(doc as object), $id: 'openapi' });
    const matchers = Object.keys(doc.paths).map(
      (p) => [new RegExp(`^${p.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+')}$`), p] as [RegExp, string],
    );
    entry = { doc, ajv, matchers, compiled: new Map() };
    cache.set(app, entry);
  }
  return entry;
}

export type ContractViolation = string;

export function checkContract(
  app: FastifyInstance,
  method: string,
  url: string,
  status: number,
  contentType: string | undefined,
  body: unknown,
  headers: Record<string, unknown> = {},
): ContractViolation | undefined {
  const { doc, ajv, matchers, compiled } = contractFor(app);
  const path = url.split('?')[0]!;
  const template = matchers.find(([re]) => re.test(path))?.[1];
  if (!template) return status === 404 ? undefined : `no documented path matches ${method} ${path}`;
  const operation = doc.paths[template]?.[method.toLowerCase()];
  if (!operation) return status === 404 ? undefined : `${method} ${template} is not documented`;
  const response = operation.responses?.[String(status)];
  if (!response) return `${method} ${template} answered ${status}, which the document does not declare`;
  const missing = Object.entries(response.headers ?? {})
    .filter(([name, header]) => header.required === true && headers[name.toLowerCase()] === undefined)
    .map(([name]) => name);
  if (missing.length > 0) return `${method} ${template} ${status} lacks the header(s) the document declares: ${missing.join(', ')}`;
  if (!response.content) return body === undefined || body === '' ? undefined : `${status} declares no body`;
  const type = (contentType ?? '').split(';')[0]!.trim();
  const media = response.content[type];
  if (!media) return `${method} ${template} ${status} declares no content type ${type}`;
  if (!media.schema) return undefined;
  const pointer = `openapi#/paths/${template.replaceAll('~', '~0').replaceAll('/', '~1')}/${method.toLowerCase()}/responses/${status}/content/${type.replaceAll('/', '~1')}/schema`;
  let validate = compiled.get(pointer);
  if (!validate) {
    validate = ajv.compile({ $ref: pointer });
    compiled.set(pointer, validate);
  }
  if (!validate(body)) return `${method} ${template} ${status} body does not match the document: ${ajv.errorsText(validate.errors)}`;
  // Problem schemas are open (RFC 9457 allows extension members), so the match above accepts any
  // member; but a member the document does not declare is one a generated client cannot type.
  if (type === 'application/problem+json' && body !== null && typeof body === 'object') {
    const declared = declaredMembers(doc, media.schema);
    const undeclared = Object.keys(body).filter((member) => !declared.has(member));
    if (undeclared.length > 0) return `${method} ${template} ${status} answered member(s) the document does not declare: ${undeclared.join(', ')}`;
  }
  // A problem's code must be named where a client reads about the answer: the operation's summary
  // or description, or the description of the status.
  const code = (body as { code?: unknown } | undefined)?.code;
  if (status >= 400 && typeof code === 'string') {
    const op = operation as Operation & { description?: string; summary?: string };
    const text = `${op.summary ?? ''} ${op.description ?? ''} ${(response as { description?: string }).description ?? ''}`;
    if (!new RegExp(`\\b${code}\\b`).test(text)) return `${method} ${template} ${status} answered code ${code}, which the document does not name for it`;
  }
  return undefined;
}

/** The members an object schema declares (following $ref, and through anyOf / oneOf / allOf). */
function declaredMembers(doc: Doc, schema: unknown): Set<string> {
  const node = deref(doc as unknown as OpenApiDoc, schema as JsonSchema);
  const members = new Set(Object.keys(node.properties ?? {}));
  for (const part of [...(node.anyOf ?? []), ...(node.oneOf ?? []), ...(node.allOf ?? [])]) {
    for (const member of declaredMembers(doc, part)) members.add(member);
  }
  return members;
}
