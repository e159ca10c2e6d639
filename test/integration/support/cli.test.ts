import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import t from 'tap';
import { generateKey, parseKeyring } from '../../../src/lib/secret-box.js';
import { buildTestApp } from '../../helpers/app.js';
import { cli, cliEnv, cliInTurn } from '../../helpers/cli.js';
import { ADMIN_URL, createTestDatabase, urlFor } from '../../helpers/database.js';
import { api } from '../../helpers/http.js';

t.test('create-support-user prints a working activation link; create-organization too', async (t) => {
  const { app, databaseUrl } = await buildTestApp(t);
  const env = cliEnv(databaseUrl);
  const request = api(app);

  const created = await cli(['create-support-user', '--email', 'Ops@Shop.test', '--name', 'Olga Ops', '--language', 'de'], env);
  t.equal(created.code, 0, created.stderr);
  const link = created.stdout.trim();
  t.match(link, /^https:\/\/shop\.example\.test\/activate\?token=[A-Za-z0-9_-]{43}$/, 'stdout is exactly the link');
  const user = await app.ctx.db.user.findUniqueOrThrow({ where: { email: 'ops@shop.test' } });
  t.match(user, { status: 'INVITED', roles: ['SUPPORT'], organizationId: null, passwordHash: null, language: 'de' });
  t.match(
    await app.ctx.db.mailOutbox.findMany({ where: { toAddress: 'Ops@Shop.test', template: 'activation' } }),
    [{ subject: 'Webshop: Ihr Konto aktivieren' }],
    'the mail is queued too, in the language given',
  );
  t.match((await app.ctx.db.auditEvent.findFirstOrThrow({ where: { type: 'user.invited', subjectUserId: user.id } })).details, { via: 'cli', roles: ['SUPPORT'] });

  const token = new URL(link).searchParams.get('token')!;
  const activated = await request({ method: 'POST', url: '/v1/activation', body: { token, password: 'a long and unusual passphrase 42' } });
  t.equal(activated.status, 200, 'the printed link activates the account');
  t.equal(activated.body.next, 'mfa_enrollment');

  const org = await cli(
    // An organisation may be named after its domain, as on POST /v1/support/organizations (a person may not).
    ['create-organization', '--customer-number', 'K-100', '--name', 'delta-shop.de AG', '--admin-email', 'chef@delta.test', '--admin-name', 'Dora Delta', '--language', 'de'],
    env,
  );
  t.equal(org.code, 0, org.stderr);
  t.match(org.stdout.trim(), /^https:\/\/shop\.example\.test\/activate\?token=/);
  const delta = await app.ctx.db.organization.findUniqueOrThrow({ where: { customerNumber: 'K-100' }, include: { users: true } });
  t.equal(delta.language, 'de');
  t.equal(delta.name, 'delta-shop.de AG');
  t.match(delta.users, [{ email: 'chef@delta.test', roles: ['USER', 'CUSTOMER_ADMIN'], status: 'INVITED', language: 'de' }]);
  t.equal(await app.ctx.db.auditEvent.count({ where: { type: 'organization.created', organizationId: delta.id } }), 1);

  const dupEmail = await cli(['create-support-user', '--email', 'OPS@shop.test', '--name', 'Again'], env);
  t.equal(dupEmail.code, 1);
  t.match(dupEmail.stderr, 'email_taken');
  t.equal(dupEmail.stdout, '');
  const dupOrg = await cli(
    ['create-organization', '--customer-number', 'K-100', '--name', 'X', '--admin-email', 'x@x.test', '--admin-name', 'X'],
    env,
  );
  t.equal(dupOrg.code, 1);
  t.match(dupOrg.stderr, 'customer_number_taken');
  t.equal(await app.ctx.db.user.count({ where: { email: 'x@x.test' } }), 0);
});

t.test('usage errors exit 2, bad configuration 78', async (t) => {
  const env = { DATABASE_URL: 'postgresql://nobody@127.0.0.1:1/none', ENCRYPTION_KEYS: `cli-1:${generateKey()}` };
  const missing = await cli(['create-support-user', '--email', 'a@b.test'], env);
  t.equal(missing.code, 2);
  t.match(missing.stderr, '--name is required');
  t.match(missing.stderr, 'usage: npm run cli -- create-support-user --email <e-mail> --name <full name>');
  const invalid = await cli(['create-support-user', '--email', 'not-an-email', '--name', 'X'], env);
  t.equal(invalid.code, 2);
  t.match(invalid.stderr, '--email');
  const badLanguage = await cli(['create-support-user', '--email', 'a@b.test', '--name', 'X', '--language', 'fr'], env);
  t.equal(badLanguage.code, 2);
  t.match(badLanguage.stderr, '--language');
  const orgMissing = await cli(['create-organization', '--name', 'X'], env);
  t.equal(orgMissing.code, 2);
  t.match(orgMissing.stderr, '--customer-number is required');
  const help = await cli(['help'], env);
  t.equal(help.code, 0);
  t.match(help.stdout, 'create-support-user --email <e-mail> --name <full name>');
  t.match(help.stdout, 'create-organization');
  // The README's "Command line" names every command the help lists (it had left one out).
  const commands = [...help.stdout.matchAll(/^  ([a-z][a-z-]+) /gm)].map((m) => m[1]!);
  t.ok(commands.length >= 15, `the help lists the commands (${commands.length})`);
  const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
  t.same(commands.filter((command) => !readme.includes(`\`${command}\``)), [], 'README names each command');
  // A command's own help: what it does and its options, exit 0, nothing touched (the database in
  // this environment need not even be reachable: the help is answered before anything runs).
  const own = await cli(['create-support-user', '--help'], { ...env, DATABASE_URL: 'postgresql://nobody@127.0.0.1:1/none' });
  t.equal(own.code, 0, own.stderr);
  t.match(own.stdout, 'usage: npm run cli -- create-support-user --email <e-mail> --name <full name>');
  t.match(own.stdout, '--reason <text>');
  const badConfig = await cli(['create-support-user', '--email', 'a@b.test', '--name', 'A'], { ...env, DATABASE_URL: 'mysql://x' });
  t.equal(badConfig.code, 78);
  t.match(badConfig.stderr, 'DATABASE_URL');
  // A malformed keyring is a configuration error too, told before any database is touched (this one does not exist).
  const badKeys = await cli(['migrate'], { ...env, ENCRYPTION_KEYS: 'k1:not-a-32-byte-key' });
  t.equal(badKeys.code, 78);
  t.match(badKeys.stderr, 'ENCRYPTION_KEYS');
});

t.test('a command on a database this version has not migrated: exit 78 naming `migrate`, not a missing-table error; after migrate it runs', async (t) => {
  const name = `webshop_auth_unmigrated_${randomBytes(4).toString('hex')}`;
  const admin = async (sql: string) => {
    const c = new pg.Client({ connectionString: ADMIN_URL });
    await c.connect();
    await c.query(sql).finally(() => c.end());
  };
  await admin(`CREATE DATABASE "${name}"`);
  t.teardown(() => admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
  const env = cliEnv(urlFor(name));
  const args = ['create-support-user', '--email', 'first@shop.test', '--name', 'First Support'];

  const early = await cli(args, env);
  t.equal(early.code, 78, early.stderr);
  t.match(early.stderr, /not migrated for this version \(\d+ pending, the first 20261128040000_init\): run `npm run cli -- migrate`/);
  t.notMatch(early.stderr, /does not exist/);
  const migrated = await cli(['migrate'], env);
  t.equal(migrated.code, 0, migrated.stderr);
  t.match(migrated.stderr, /the schema is current: [1-9]\d* migration\(s\) applied now, 0 before/);
  const again = await cli(['migrate'], env);
  t.match(again.stderr, /the schema is current: 0 migration\(s\) applied now, [1-9]\d* before/, 'says so when nothing was pending');
  const later = await cli(args, env);
  t.equal(later.code, 0, later.stderr);
  t.match(later.stdout, /\/activate\?token=/);
});

t.test('option mistakes are usage errors (exit 2) before anything runs: a value on a flag, an unknown or repeated option, a key id ENCRYPTION_KEYS would refuse', async (t) => {
  // The database does not exist: a command that went on past its options would fail otherwise (exit 1 or 78).
  const env = { DATABASE_URL: 'postgresql://nobody@127.0.0.1:1/none', ENCRYPTION_KEYS: `cli-1:${generateKey()}` };
  const refused: [string[], string][] = [
    // The leaked-key runbook's command: a value must not turn it into the staged rotation.
    [['rotate-signing-key', '--immediate', 'yes'], '--immediate takes no value'],
    [['migrate', '--dry-run'], 'unknown option --dry-run'],
    [['rotate-encryption-key', '--dry-run'], 'unknown option --dry-run'],
    [['generate-encryption-key', '--idd', 'k1'], 'unknown option --idd'],
    [['generate-encryption-key', '--id', 'bad id,x'], '--id: a key id is 1-64 of A-Z a-z 0-9 . _ -'],
    [['block-support-user', '--email', 's1@shop.test', '--email', 's2@shop.test'], '--email is given twice'],
  ];
  const runs = await cliInTurn(refused.map(([args]) => () => cli(args, env)));
  for (const [i, [args, message]] of refused.entries()) {
    t.equal(runs[i]!.code, 2, args.join(' '));
    t.match(runs[i]!.stderr, message, args.join(' '));
    t.equal(runs[i]!.stdout, '', `${args.join(' ')}: prints no key or report`);
  }
});

t.test('generate-encryption-key: two default keys of one day make a keyring the service accepts; --id is kept', async (t) => {
  const [a, b, named] = await cliInTurn([
    () => cli(['generate-encryption-key'], {}),
    () => cli(['generate-encryption-key'], {}),
    () => cli(['generate-encryption-key', '--id', 'ops.2026-11_a'], {}),
  ]);
  for (const run of [a, b, named]) t.equal(run.code, 0, run.stderr);
  const keyring = parseKeyring([a, b, named].map((run) => run.stdout.trim()).join(','));
  t.equal(keyring.keys.size, 3);
  t.match([...keyring.keys.keys()], [/^k\d{8}-[0-9a-f]{6}$/, /^k\d{8}-[0-9a-f]{6}$/, 'ops.2026-11_a']);
});

t.test('no command is a usage error (exit 2), the usage on stdout; an unknown command too (mutation review, session 21)', async (t) => {
  const env = { DATABASE_URL: 'postgresql://nobody@127.0.0.1:1/none', ENCRYPTION_KEYS: `cli-1:${generateKey()}` };
  const [none, unknown] = await cliInTurn([() => cli([], env), () => cli(['rotate-keys'], env)]);
  t.equal(none.code, 2, 'a script that lost its command name does not see success');
  t.match(none.stdout, 'usage: npm run cli -- <command> [options]');
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, 'unknown command "rotate-keys"');
});

t.test('one migration short (the newest failed and was rolled back): a command still refuses, naming it (mutation review, session 21)', async (t) => {
  const { url } = await createTestDatabase(t);
  const owner = new pg.Client({ connectionString: url });
  await owner.connect();
  // As a failed run of this service leaves the newest migration: rolled back, never finished.
  const { rows } = await owner.query<{ migration_name: string }>(
    `UPDATE "_prisma_migrations" SET finished_at = NULL, rolled_back_at = now()
      WHERE migration_name = (SELECT max(migration_name) FROM "_prisma_migrations") RETURNING migration_name`,
  );
  await owner.end();
  const newest = rows[0]!.migration_name;
  const refused = await cli(['create-support-user', '--email', 'first@shop.test', '--name', 'First Support'], cliEnv(url));
  t.equal(refused.code, 78, refused.stderr);
  t.match(refused.stderr, `not migrated for this version (1 pending, the first ${newest})`);
});
