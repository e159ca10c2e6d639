import { writeFile } from 'node:fs/promises';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { openDatabase } from '../src/db/client.js';
import { generateKey, parseKeyring } from '../src/lib/secret-box.js';
import { renderOpenApi } from './openapi-document.js';

/** `npm run openapi`: writes openapi/openapi.json from the route schemas (no database is queried). */
const config = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'silent' });
const database = openDatabase('postgresql://unused@127.0.0.1:1/unused');
const app = await buildApp({ config, database, keyring: parseKeyring(`doc:${generateKey()}`) });
await app.ready();
await writeFile(new URL('../openapi/openapi.json', import.meta.url), renderOpenApi(app));
await app.close();
await database.close();
process.stdout.write('wrote openapi/openapi.json\n');
