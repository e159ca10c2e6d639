import { readFile } from 'node:fs/promises';
import t from 'tap';
import SwaggerParser from '@apidevtools/swagger-parser';
import { buildTestApp } from '../../helpers/app.js';
import { renderOpenApi } from '../../../scripts/openapi-document.js';

t.test('the committed openapi/openapi.json is what the app produces', async (t) => {
  const { app } = await buildTestApp(t);
  const committed = await readFile(new URL('../../../openapi/openapi.json', import.meta.url), 'utf8');
  t.equal(committed, renderOpenApi(app), 'run `npm run openapi` and commit the result');
});

t.test('the document is valid OpenAPI 3.1', async (t) => {
  const { app } = await buildTestApp(t);
  const doc = JSON.parse(renderOpenApi(app));
  await t.resolves(SwaggerParser.validate(doc));
  for (const [path, ops] of Object.entries<Record<string, { operationId?: string; responses?: object }>>(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      t.ok(op.operationId, `${method.toUpperCase()} ${path} has an operationId`);
      t.ok(op.responses && Object.keys(op.responses).some((s) => s.startsWith('2')), `${method.toUpperCase()} ${path} documents a success response`);
    }
  }
});
