import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { loadConfig } from '../../src/config.js';

/**
 * .env.example is loaded the two ways it names: sourced by a shell (`set -a; . ./.env; set +a`) and
 * passed to `docker run --env-file`, which takes every `KEY=VALUE` line literally. Found by
 * session 13's operator review: an unquoted `MAIL_FROM=Webshop <…>` stopped bash at that line
 * without failing (every later variable silently unset), and the live `NODE_ENV=development` and
 * `HOST=127.0.0.1` overrode the image's production settings.
 */
const root = new URL('../..', import.meta.url).pathname;
const text = readFileSync(`${root}.env.example`, 'utf8');
const assigned = [...text.matchAll(/^([A-Z][A-Z0-9_]*)=(.*)$/gm)].map(([, name, value]) => [name!, value!] as const);

t.test('every variable src/config.ts reads is in .env.example (set, or commented out at its default)', async (t) => {
  const source = readFileSync(`${root}src/config.ts`, 'utf8');
  const schema = source.slice(source.indexOf('const envSchema'));
  const read = [...schema.slice(0, schema.indexOf('});')).matchAll(/^ {2}([A-Z][A-Z0-9_]*):/gm)].map(([, name]) => name!);
  t.ok(read.length > 40, `${read.length} variables`);
  const mentioned = new Set([...text.matchAll(/^#? ?([A-Z][A-Z0-9_]*)=/gm)].map(([, name]) => name!));
  t.same(read.filter((name) => !mentioned.has(name)), [], 'none missing');
});

t.test('a shell sources the whole file: every variable it sets arrives', async (t) => {
  const expected = Object.fromEntries(assigned.filter(([, value]) => value !== ''));
  for (const shell of ['bash', 'sh']) {
    const out = execFileSync(shell, ['-c', `set -a; . ./.env.example; set +a; "${process.execPath}" -e 'process.stdout.write(JSON.stringify(process.env))'`], {
      cwd: root,
      env: { PATH: process.env.PATH },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const env = JSON.parse(out) as Record<string, string>;
    const lost = Object.keys(expected).filter((name) => env[name] !== expected[name]);
    t.same(lost, [], `${shell}: no variable lost or changed`);
  }
});

t.test('docker --env-file: the values as written give a valid configuration, and leave NODE_ENV and HOST to the image', async (t) => {
  const names = assigned.map(([name]) => name);
  for (const name of ['NODE_ENV', 'HOST', 'DATA_DIR']) t.notOk(names.includes(name), `${name} is not set by the file`);
  const env = Object.fromEntries(assigned);
  t.doesNotThrow(() => loadConfig(env), 'development (no DATABASE_URL): valid as written');
  // The image's `ENV HOST=0.0.0.0`, then the file's lines on top, as docker applies them.
  t.equal(loadConfig({ HOST: '0.0.0.0', ...env }).host, '0.0.0.0', "the image's HOST stands");
});
