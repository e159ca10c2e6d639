import fp from 'fastify-plugin';
import swagger, { type SwaggerTransformObject } from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { errorCatalogue } from '../errors.js';
import { openApiWebhooks } from '../modules/events/webhook-delivery.js';

export const API_VERSION = '1.0.0';

const description = `Headless authentication for the B2B webshop and the CSO 3.0 complaints portal:
e-mail + password + mandatory TOTP, rotating refresh tokens, JWKS, user administration.

Errors are RFC 9457 \`application/problem+json\` with a stable \`code\`; see the error catalogue below.`;

type TransformInput = Parameters<typeof jsonSchemaTransform>[0];
type ResponseEntries = Record<string, { headers?: unknown } | undefined>;

/**
 * jsonSchemaTransform (zod → JSON Schema) keeps only a response's description and content; the
 * headers an error status comes with (Retry-After: problemResponses; WWW-Authenticate:
 * standard-responses.ts) are put back, for @fastify/swagger to declare.
 */
const withResponseHeaders = (input: TransformInput) => {
  const transformed = jsonSchemaTransform(input);
  const declared = (input.schema as { response?: ResponseEntries } | undefined)?.response;
  const out = (transformed.schema as { response?: ResponseEntries } | undefined)?.response;
  if (declared && out) {
    for (const [status, entry] of Object.entries(declared)) {
      if (entry?.headers && out[status]) out[status] = { ...out[status], headers: entry.headers };
    }
  }
  return transformed;
};

type OpenApiDoc = { paths?: unknown; webhooks?: unknown; components?: { schemas?: Record<string, unknown> } };

/**
 * Drops the component schemas no operation reaches: jsonSchemaTransformObject adds an `…Input`
 * twin of every registered schema, used or not, and a generated client would make a type of each.
 */
function withoutUnusedSchemas(doc: OpenApiDoc): OpenApiDoc {
  const schemas = doc.components?.schemas;
  if (!schemas) return doc;
  const reached = new Set<string>();
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(visit);
    if (!node || typeof node !== 'object') return;
    for (const [key, value] of Object.entries(node)) {
      const name = key === '$ref' && typeof value === 'string' ? /^#\/components\/schemas\/(.+)$/.exec(value)?.[1] : undefined;
      if (name !== undefined && !reached.has(name)) {
        reached.add(name);
        visit(schemas[name]);
      } else visit(value);
    }
  };
  visit(doc.paths);
  visit(doc.webhooks);
  return { ...doc, components: { ...doc.components, schemas: Object.fromEntries(Object.entries(schemas).filter(([name]) => reached.has(name))) } };
}

type HeaderObject = { required?: boolean; schema?: Record<string, unknown> };

/**
 * A response header declared with `'x-required': true` (problem.ts, standard-responses.ts) comes with
 * every such answer: OpenAPI says so with the header object's `required`, which @fastify/swagger
 * cannot write, so the marker is moved there. Other declared headers come with some answers only.
 */
function withRequiredHeaders(doc: OpenApiDoc): OpenApiDoc {
  for (const operations of Object.values((doc.paths ?? {}) as Record<string, Record<string, { responses?: Record<string, { headers?: Record<string, HeaderObject> }> }>>)) {
    for (const operation of Object.values(operations)) {
      for (const response of Object.values(operation.responses ?? {})) {
        for (const header of Object.values(response.headers ?? {})) {
          if (header.schema?.['x-required'] !== true) continue;
          delete header.schema['x-required'];
          header.required = true;
        }
      }
    }
  }
  return doc;
}

/** OpenAPI 3.1 generated from the same zod schemas that validate requests and responses. */
export const openapi = fp(
  async (app) => {
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: { title: 'webshop-auth', version: API_VERSION, description },
        components: {
          securitySchemes: {
            bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'Access token from login or refresh. On 401 token_invalid refresh once, then sign in again' },
            clientBasic: { type: 'http', scheme: 'basic', description: 'Service client id and secret (introspection)' },
            metricsToken: { type: 'http', scheme: 'bearer', description: 'METRICS_TOKEN, required by /metrics only when it is configured' },
          },
        },
      },
      transform: withResponseHeaders,
      transformObject: ((documentObject) => {
        const transformed = jsonSchemaTransformObject(documentObject) as OpenApiDoc;
        const doc = withRequiredHeaders(withoutUnusedSchemas({ ...transformed, webhooks: openApiWebhooks }));
        const codes = [...errorCatalogue().entries()]
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([code, def]) => ({ code, status: def.status, title: def.title }));
        return { ...doc, 'x-error-codes': codes };
      }) as SwaggerTransformObject,
    });
    await app.register(swaggerUi, { routePrefix: '/docs' });

    app.get(
      '/openapi.json',
      {
        config: { access: 'public' },
        schema: {
          operationId: 'getOpenApiDocument',
          tags: ['operations'],
          summary: 'This OpenAPI 3.1 document',
          response: { 200: z.looseObject({ openapi: z.string() }) },
        },
      },
      async () => app.swagger() as unknown as { openapi: string },
    );
  },
  { name: 'openapi' },
);
