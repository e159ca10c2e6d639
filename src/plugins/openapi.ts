import fp from 'fastify-plugin';
import swagger, { type SwaggerTransformObject } from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { errorCatalogue } from '../errors.js';

export const API_VERSION = '1.0.0';

const description = `Headless authentication for the B2B webshop and the CSO 3.0 complaints portal:
e-mail + password + mandatory TOTP, rotating refresh tokens, JWKS, user administration.

Errors are RFC 9457 \`application/problem+json\` with a stable \`code\`; see the error catalogue below.`;

/** OpenAPI 3.1 generated from the same zod schemas that validate requests and responses. */
export const openapi = fp(
  async (app) => {
    await app.register(swagger, {
      openapi: {
        openapi: '3.1.0',
        info: { title: 'webshop-auth', version: API_VERSION, description },
        components: {
          securitySchemes: {
            bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'Access token from login or refresh' },
            clientBasic: { type: 'http', scheme: 'basic', description: 'Service client id and secret (introspection)' },
            metricsToken: { type: 'http', scheme: 'bearer', description: 'METRICS_TOKEN, required by /metrics only when it is configured' },
          },
        },
      },
      transform: jsonSchemaTransform,
      transformObject: ((documentObject) => {
        const doc = jsonSchemaTransformObject(documentObject);
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
