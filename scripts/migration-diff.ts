/**
 * `npm run db:diff [-- --check]`: prints the SQL that takes a database with every committed migration
 * applied (prisma/migrations) to prisma/schema.prisma — what
 * `prisma migrate diff --from-migrations prisma/migrations --to-schema prisma/schema.prisma --script`
 * prints, which cannot run here because Prisma's native schema engine cannot be downloaded.
 *
 * How: apply the committed migrations with our own runner (src/db/migrate.ts) to a scratch database on
 * the local PostgreSQL server, then ask Prisma's WASM schema engine (@prisma/schema-engine-wasm, driven
 * through @prisma/adapter-pg as the Prisma CLI does) to diff that database against the schema file.
 * The scratch database is dropped afterwards.
 *
 * Use the output as the starting point of a new hand-written migration; with `--check` nothing is
 * printed but the verdict, and the exit code is 1 when the migrations and the schema differ.
 * Server: TEST_DATABASE_URL (any database on it; the user needs CREATEDB), default
 * postgresql://postgres@127.0.0.1:5432/postgres.
 *
 * Exit codes: 0 no drift (or SQL printed without --check), 1 drift with --check, 2 error.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PrismaPg } from '@prisma/adapter-pg';
import { bindMigrationAwareSqlAdapterFactory } from '@prisma/driver-adapter-utils';
import * as runtime from '@prisma/schema-engine-wasm/schema_engine_bg';
import type { DiffParams, SchemaEngine } from '@prisma/schema-engine-wasm';
import { MIGRATIONS_DIR, migrate } from '../src/db/migrate.js';
import { urlFor, withAdmin } from './pg-admin.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SCHEMA_PATH = resolve(ROOT, 'prisma/schema.prisma');
const NO_FILTERS = { externalTables: [], externalEnums: [] };

/**
 * The engine describes the database with catalog queries whose result columns include PostgreSQL's
 * internal one-byte type `"char"` (OID 18: pg_class.relkind, pg_constraint.contype, ...). adapter-pg 7.10
 * has no mapping for it and fails with "Column type 'char' could not be deserialized from the database".
 * The values arrive as one-character strings already, so report those columns as text (OID 25).
 */
const PG_CHAR = 18;
const PG_TEXT = 25;
type Queryable = { performIO(query: unknown): Promise<{ fields: { dataTypeID: number }[] }> };

function relabelCharColumns<T extends object>(queryable: T): T {
  const q = queryable as unknown as Queryable;
  const performIO = q.performIO.bind(q);
  q.performIO = async (query) => {
    const result = await performIO(query);
    for (const field of result.fields ?? []) if (field.dataTypeID === PG_CHAR) field.dataTypeID = PG_TEXT;
    return result;
  };
  const withTx = queryable as unknown as { startTransaction?: (...a: unknown[]) => Promise<object> };
  if (typeof withTx.startTransaction === 'function') {
    const start = withTx.startTransaction.bind(queryable);
    withTx.startTransaction = async (...a) => relabelCharColumns(await start(...a));
  }
  return queryable;
}

class DescribingPrismaPg extends PrismaPg {
  override async connect() {
    return relabelCharColumns(await super.connect());
  }
  override async connectToShadowDb() {
    return relabelCharColumns(await super.connectToShadowDb());
  }
}

type WasmApi = {
  compile(bytes: Uint8Array): Promise<object>;
  instantiate(module: object, imports: Record<string, object>): Promise<{ exports: Record<string, unknown> }>;
};

/** wasm-bindgen "bundler" output: instantiate the module by hand (Node cannot `import` a .wasm file). */
async function loadEngine(adapterUrl: string, schemaFiles: [string, string][]): Promise<SchemaEngine> {
  // The engine reports Rust panics through this global (the Prisma CLI installs the same object).
  const g = globalThis as { PRISMA_WASM_PANIC_REGISTRY?: { message: string; set_message(m: string): void } };
  g.PRISMA_WASM_PANIC_REGISTRY ??= {
    message: '',
    set_message(m: string) {
      this.message = `RuntimeError: ${m}`;
    },
  };
  const require = createRequire(import.meta.url);
  const wasmPath = require.resolve('@prisma/schema-engine-wasm/schema_engine_bg').replace(/\.js$/, '.wasm');
  const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly; // tsconfig has no DOM lib
  const module = await wasm.compile(await readFile(wasmPath));
  const instance = await wasm.instantiate(module, { './schema_engine_bg.js': runtime });
  runtime.__wbg_set_wasm(instance.exports);
  (instance.exports.__wbindgen_start as () => void)();
  const adapter = bindMigrationAwareSqlAdapterFactory(new DescribingPrismaPg({ connectionString: adapterUrl }));
  return runtime.SchemaEngine.new({ datamodels: schemaFiles }, () => undefined, adapter);
}

function isEmptyDiff(sql: string): boolean {
  const meaningful = sql
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('--'));
  return meaningful.length === 0;
}

const USAGE = 'usage: npm run db:diff [-- [--check] [--schema prisma/schema.prisma] [--migrations prisma/migrations]]';

function parseArgs(argv: string[]): { check: boolean; schemaPath: string; migrationsDir: string } {
  const out = { check: false, schemaPath: SCHEMA_PATH, migrationsDir: MIGRATIONS_DIR };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return resolve(v);
    };
    if (arg === '--check') out.check = true;
    else if (arg === '--schema') out.schemaPath = value();
    else if (arg === '--migrations') out.migrationsDir = value();
    else throw new Error(`unknown argument: ${arg}`);
  }
  return out;
}

async function main(): Promise<number> {
  let options: ReturnType<typeof parseArgs>;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  const { check, schemaPath, migrationsDir } = options;

  const schema = await readFile(schemaPath, 'utf8');
  const files = [{ path: schemaPath, content: schema }];
  const scratch = `webshop_auth_diff_${randomBytes(6).toString('hex')}`;
  await withAdmin((admin) => admin.query(`CREATE DATABASE "${scratch}"`));
  let engine: SchemaEngine | undefined;
  try {
    const applied = await migrate(urlFor(scratch), { info: () => undefined, warn: (m) => console.error(`warning: ${m}`) }, migrationsDir);
    engine = await loadEngine(urlFor(scratch), [[schemaPath, schema]]);
    const params: DiffParams = {
      // The datasource of the schema file, reached through the adapter: the scratch database.
      from: { tag: 'schemaDatasource', files, configDir: ROOT },
      to: { tag: 'schemaDatamodel', files },
      script: true,
      exitCode: true, // the engine then reports a non-empty diff as exitCode 2
      filters: NO_FILTERS,
    };
    const result = await engine.diff(params);
    const sql = result.stdout ?? '';
    const drift = result.exitCode === 2;
    if (drift === isEmptyDiff(sql)) throw new Error(`engine exit code ${result.exitCode} disagrees with its script:\n${sql}`);
    const label = `${applied.applied.length} migration(s) (${applied.applied.join(', ') || 'none'}) vs ${relative(process.cwd(), schemaPath)}`;
    if (check) {
      console.log(drift ? `drift: ${label} differ; run npm run db:diff to see the SQL` : `-- no changes: ${label}`);
      return drift ? 1 : 0;
    }
    if (!drift) {
      console.log('-- no changes');
      console.error(`(${label})`);
    } else {
      process.stdout.write(sql.endsWith('\n') ? sql : `${sql}\n`);
      console.error(`(${label})`);
    }
    return 0;
  } finally {
    engine?.free();
    await withAdmin((admin) => admin.query(`DROP DATABASE IF EXISTS "${scratch}" WITH (FORCE)`));
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    const registry = (globalThis as { PRISMA_WASM_PANIC_REGISTRY?: { message: string } }).PRISMA_WASM_PANIC_REGISTRY;
    console.error('db:diff failed:', err instanceof Error ? (err.stack ?? err.message) : err);
    if (registry?.message) console.error(registry.message);
    process.exit(2);
  },
);
